"""Merkle keys: unambiguous, provenance-only, stable under reordering."""

import re

import pytest

from vinemake.common.errors import InputError
from vinemake.common.spec import FileRef, Location, Resources, RuleSpec
from vinemake.core.keys import compute_keys, encode, output_key, rule_key, source_key, tree_key


def rule(rid, targets, sources, command, **kw):
    return RuleSpec(id=rid, targets=tuple(FileRef(t, t) for t in targets),
                    sources=tuple(FileRef(s, s) for s in sources), command=command,
                    location=Location("Vinefile", rid + 1, 1), **kw)


SRC = {"a.txt": source_key("aa"), "b.txt": source_key("bb")}


def test_key_names_carry_kind_and_algorithm():
    rk = rule_key(rule(0, ["x"], ["a.txt"], "cat a.txt > x"), SRC)
    assert re.fullmatch(r"rule-xxh3_128-[0-9a-f]{32}", rk.key)
    assert re.fullmatch(r"out-xxh3_128-[0-9a-f]{32}", rk.outputs[0][2])
    assert source_key("ab12") == "file-xxh3_128-ab12"


def test_encoding_is_length_prefixed():
    assert encode("ab", "c") != encode("a", "bc")
    assert encode(("a",), "b") != encode("a", ("b",))
    assert encode(1) != encode("1")


def test_rule_key_changes_with_command_input_env_and_cores_only():
    base = rule(0, ["x"], ["a.txt"], "cat a.txt > x", env=(("MEMORY", "100"),))
    k = rule_key(base, SRC).key
    assert rule_key(rule(0, ["x"], ["a.txt"], "cat a.txt >x"), SRC).key != k
    other = dict(SRC, **{"a.txt": source_key("cc")})
    assert rule_key(base, other).key != k
    more_mem = rule(0, ["x"], ["a.txt"], "cat a.txt > x", env=(("MEMORY", "900"),),
                    resources=Resources(memory_mb=900, wall_time_s=5))
    assert rule_key(more_mem, SRC).key == k
    cores = rule(0, ["x"], ["a.txt"], "cat a.txt > x", resources=Resources(cores=4))
    assert rule_key(cores, SRC).key != k
    exported = rule(0, ["x"], ["a.txt"], "cat a.txt > x", env=(("LANG", "C"),))
    assert rule_key(exported, SRC).key != k


def test_rule_id_and_location_do_not_matter():
    a = rule(0, ["x"], ["a.txt", "b.txt"], "c")
    b = RuleSpec(id=7, targets=a.targets, sources=tuple(reversed(a.sources)), command="c",
                 location=Location("Vinefile", 40, 3))
    assert rule_key(a, SRC) == rule_key(b, SRC)


def test_output_key_is_rule_key_plus_name():
    rk = rule_key(rule(0, ["x", "y"], [], "c"), {})
    assert [o[2] for o in rk.outputs] == [output_key(rk.key, "x"), output_key(rk.key, "y")]
    assert rk.outputs[0][2] != rk.outputs[1][2]


def test_tree_key_is_order_independent_and_content_sensitive():
    assert tree_key([("a", "k1"), ("b", "k2")]) == tree_key([("b", "k2"), ("a", "k1")])
    assert tree_key([("a", "k1")]) != tree_key([("a", "k2")])
    assert tree_key([("a", "k1")]) != tree_key([("b", "k1")])


def test_compute_keys_propagates_changes_downstream_only():
    rules = [rule(0, ["x"], ["a.txt"], "c1"), rule(1, ["y"], ["x"], "c2"),
             rule(2, ["z"], ["b.txt"], "c3")]
    k1 = compute_keys(rules, SRC)
    k2 = compute_keys(rules, dict(SRC, **{"a.txt": source_key("new")}))
    assert k1.rules[0].key != k2.rules[0].key
    assert k1.rules[1].key != k2.rules[1].key
    assert k1.rules[2].key == k2.rules[2].key
    assert k1.files["y"] == k1.rules[1].outputs[0][2]


def test_library_key_is_part_of_each_call():
    lib = rule(0, [], ["model.py"], "python3 -m vinemake.library model.py", library="ml")
    call = rule(1, ["s"], [], "score s", call="ml")
    k1 = compute_keys([call, lib], {"model.py": source_key("m1")})
    k2 = compute_keys([call, lib], {"model.py": source_key("m2")})
    assert k1.rules[1].key != k2.rules[1].key


def test_unknown_library_and_unknown_input_are_input_errors():
    with pytest.raises(InputError, match=r"^Vinefile:2:1: rule 's' calls library 'nope', "
                                         r"which no rule defines$"):
        compute_keys([rule(1, ["s"], [], "f", call="nope")], {})
    with pytest.raises(InputError, match="rule 'x' reads 'q', which is neither a source"):
        compute_keys([rule(0, ["x"], ["q"], "c")], {})


def test_a_directory_output_hash_and_a_source_directory_key_are_one_digest(tmp_path):
    # One way to hash a tree: what a worker reports for a directory output is the digest
    # that names the same directory as a source.
    from vinemake.common.hashing import hash_tree
    from vinemake.core.filestate import FileState

    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.txt").write_text("a\n")
    (tmp_path / "d" / "sub" / "b.txt").write_text("bb\n")
    size, digest = hash_tree(str(tmp_path / "d"))
    assert size == 5 and digest.startswith("dir-")
    assert FileState(None).key(str(tmp_path / "d")) == "file-xxh3_128-" + digest[4:]


def test_an_empty_file_hashes_as_read_whatever_leads_to_it(tmp_path):
    # hash_tree knows an empty file's hash without opening it: the same as reading it gives,
    # through a link too; a path with nothing there is still not found.
    from vinemake.common.hashing import hash_file, hash_tree

    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "full").write_bytes(b"x" * 70_000)
    (tmp_path / "link").symlink_to("empty")
    (tmp_path / "dangling").symlink_to("nowhere")
    assert hash_tree(str(tmp_path / "empty")) == hash_file(str(tmp_path / "empty")) == \
        (0, "99aa06d3014798d86001c324468d497f")
    assert hash_tree(str(tmp_path / "link")) == (0, "99aa06d3014798d86001c324468d497f")
    assert hash_tree(str(tmp_path / "full")) == hash_file(str(tmp_path / "full"))
    assert hash_tree(str(tmp_path / "full"))[0] == 70_000
    for missing in ("dangling", "absent"):
        with pytest.raises(FileNotFoundError):
            hash_tree(str(tmp_path / missing))


@pytest.mark.parametrize("respaced", ["cp  a   b", "cp\ta b", "  cp a b ", "cp a b\t"])
def test_re_spacing_a_command_between_its_words_keeps_its_key(respaced):
    assert key_of_command(respaced) == key_of_command("cp a b")


@pytest.mark.parametrize("command, other", [
    ('echo "a  b"', 'echo "a b"'),           # inside double quotes, spaces are data
    ("echo 'a  b'", "echo 'a b'"),           # and inside single quotes
    ("echo a\\  b", "echo a\\ b"),           # an escaped blank is a character of the word
    ("true\n  false", "true false"),         # a newline separates commands
])
def test_spaces_the_shell_keeps_are_part_of_the_key(command, other):
    assert key_of_command(command) != key_of_command(other)


def key_of_command(command: str) -> str:
    spec = RuleSpec(id=0, targets=(FileRef("o", "o"),), sources=(), command=command,
                    location=Location("Vinefile", 1, 1))
    return rule_key(spec, {}).key


def test_lazy_keys_are_made_when_asked_for_and_are_the_same_keys():
    rules = [rule(0, ["x"], ["a.txt"], "c1"), rule(1, ["y"], ["x"], "c2"),
             rule(2, ["z"], ["b.txt"], "c3"), rule(3, ["w"], ["y", "z"], "c4")]
    eager = compute_keys(rules, SRC)
    lazy = compute_keys(rules, SRC, lazy=True)
    assert lazy._state.count(0) == 4  # nothing keyed yet
    assert lazy.key_of(1) == eager.key_of(1)  # keys rules 0 and 1, in order
    assert list(lazy._state) == [1, 1, 0, 0]
    assert lazy.files["w"] == eager.files["w"]
    assert dict(lazy.rules) == dict(eager.rules) and dict(lazy.files) == dict(eager.files)
    with pytest.raises(KeyError):
        lazy.key_of(4)


def test_a_rules_record_from_keys_is_the_one_rule_key_makes_from_scratch():
    # Keys.rules reuses the key and outputs made while keying (only parts and inputs are
    # made again): every shape of rule must come out as rule_key() makes it whole.
    lib = rule(0, [], ["a.txt"], "python3 -m vinemake.library m.py", library="ml")
    rules = [rule(1, ["x", "d/x2"], ["b.txt", "a.txt"], "cat  a.txt b.txt > x"),
             rule(2, ["y"], ["x"], "c2", env=(("X", "1"),), resources=Resources(cores=2)),
             rule(3, ["z"], [], "c3"), rule(4, ["w"], ["y", "d/x2", "z"], "c4"),
             rule(5, ["s"], ["x"], "score s", call="ml"), lib]
    keys = compute_keys(rules, SRC)
    for r in rules[:-1]:
        lib_key = keys.key_of(0) if r.call else None
        assert keys.rules[r.id] == rule_key(r, keys.files, lib_key, r.resources)
