"""The parsed-rules cache: a hit equals a fresh parse; anything the parse depended on misses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vinemake.common.errors import VinefileError
from vinemake.common.spec import Location, RuleSpec, Workflow
from vinemake.language import rulecache
from vinemake.language.parser import parse_bytes, parse_file, parse_text
from vinemake.language.rulecache import CACHE_FILE, Entry, read_workflow, stale

CASES = sorted(p for p in (Path(__file__).parent / "cases").iterdir() if p.is_dir())
ROOT = Path(__file__).resolve().parent.parent


def same(a: Workflow, b: Workflow) -> None:
    # repr too: == alone takes 1 for 1.0 and True for 1
    assert a == b
    assert repr(a) == repr(b)


@pytest.fixture
def wf(tmp_path, monkeypatch):
    """A workflow directory (the current one) and a function writing its Vinefile."""
    monkeypatch.chdir(tmp_path)

    def write(text: str) -> str:
        Path("Vinefile").write_text(text)
        return "Vinefile"

    return write


def read(environ=None, write=True):
    return read_workflow("Vinefile", ".vinemake", {} if environ is None else environ, write)


# --- a hit is the same workflow as a fresh parse --------------------------------------------


@pytest.mark.parametrize("folder", CASES, ids=[c.name for c in CASES])
def test_a_hit_equals_a_fresh_parse_for_every_case(folder, tmp_path, monkeypatch):
    expected = json.loads((folder / "expected.json").read_text())
    environ = expected.get("environ", {})
    monkeypatch.chdir(folder)  # locations name "Vinefile", as in test_cases
    state = str(tmp_path / "state")
    if "error" in expected:  # the same error every time, and nothing cached
        for _ in range(2):
            with pytest.raises(VinefileError) as e:
                read_workflow("Vinefile", state, environ)
            assert str(e.value) == expected["error"]
        assert not os.path.exists(os.path.join(state, CACHE_FILE))
        return
    first = read_workflow("Vinefile", state, environ)
    second = read_workflow("Vinefile", state, environ)
    assert (first.cached, second.cached) == (False, True)
    same(second.workflow, parse_file("Vinefile", environ))
    same(first.workflow, second.workflow)


_TARGET = st.sampled_from(["a", "b.txt", "out/c", "d e", "x->y", "'q r'"])
_SOURCE = st.sampled_from(["", "a", "in.txt", "in.txt other", "$(SRC)", "z->w"])
_COMMAND = st.sampled_from(["touch a", "cat in.txt > a", "LOCAL echo $(SRC)", "echo ${HOME_DIR}",
                            "MAKEFLOW sub.vine", "echo 'a  b' # note", "echo \\$HOME"])
_TOP = st.sampled_from([
    "X = 1", "X += two", "SRC = in.txt", "CATEGORY = big", "CATEGORY = default", "CORES = 2",
    "MEMORY = 1.5GB", "DISK = 3", "WALL_TIME = 90", "export X", "export Y=$(X)",
    ".MAKEFLOW CORES 4", ".MAKEFLOW MODE FIXED", ".SIZE in.txt 2GB", "BATCH_LOCAL = 1",
    "BATCH_LOCAL =", "BATCH_OPTIONS = -q long", "MAKEFLOW_INPUTS = in.txt",
    "MAKEFLOW_OUTPUTS = a", "GPUS = 1", "CORES = 0.5"])
_LOCAL = st.sampled_from(["X = local", "@CORES = 3", "CATEGORY = small", ".MAKEFLOW MEMORY 512",
                          "BATCH_OPTIONS = -l x"])
_NOTE = st.sampled_from(["@temp", "@retries 2", "@cache forever", "@resources cores=2.5",
                         "@resources memory=2GB wall_time=5m"])


@st.composite
def vinefiles(draw) -> str:
    lines = ["SRC = in.txt", "X = 0"] if draw(st.booleans()) else []
    for n in range(draw(st.integers(1, 8))):
        lines += draw(st.lists(_TOP, max_size=3))
        lines += draw(st.lists(_NOTE, max_size=2, unique=True))
        lines.append(f"{draw(_TARGET)}{n}: {draw(_SOURCE)}")
        lines += draw(st.lists(_LOCAL, max_size=2))
        lines.append("\t" + draw(_COMMAND))
        lines.append("")
    return "\n".join(lines)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=vinefiles(), home=st.sampled_from(["/h", "/i", None]))
def test_a_hit_equals_a_fresh_parse_for_generated_vinefiles(tmp_path_factory, text, home):
    root = tmp_path_factory.mktemp("gen")
    (root / "Vinefile").write_text(text)
    path, state = str(root / "Vinefile"), str(root / ".vinemake")
    environ = {"HOME_DIR": home} if home else {}
    try:
        fresh = parse_file(path, environ)
    except VinefileError:
        with pytest.raises(VinefileError):
            read_workflow(path, state, environ)
        assert not os.path.exists(os.path.join(state, CACHE_FILE))
        return
    assert not read_workflow(path, state, environ).cached
    hit = read_workflow(path, state, environ)
    assert hit.cached
    same(hit.workflow, fresh)


def test_a_big_plain_workflow_round_trips(wf):
    wf("".join(f"out.{i}: in.{i % 7}\n\tcat in.{i % 7} > out.{i}\n" for i in range(3000)))
    assert not read().cached
    hit = read()
    assert hit.cached and hit.note == "parsed rules from cache"
    same(hit.workflow, parse_file("Vinefile", {}))
    # files named twice are one object, as the parser makes them
    rules = hit.workflow.rules
    assert rules[0].sources[0] is rules[7].sources[0]


# --- what must miss ---------------------------------------------------------------------------


def test_editing_the_vinefile_misses(wf):
    wf("a:\n\ttouch a\n")
    read()
    wf("a:\n\ttouch  a\n")
    again = read()
    assert not again.cached
    assert again.note == "parsed the Vinefile (the Vinefile changed)"
    assert again.workflow.rules[0].command == "touch  a"
    assert read().cached


def test_a_variable_it_read_changing_misses(wf):
    wf("a:\n\techo $(WHO) > a\n")
    read({"WHO": "me"})
    assert read({"WHO": "me", "OTHER": "x"}).cached  # not read: no matter
    again = read({"WHO": "you"})
    assert not again.cached
    assert again.note == "parsed the Vinefile ($WHO changed (was 'me', now 'you'))"
    assert again.workflow.rules[0].command == "echo you > a"


def test_a_variable_it_found_unset_becoming_set_misses(wf):
    wf("WHO += there\na:\n\techo $(WHO) > a\n")  # += reads the old value, if any
    assert read({}).workflow.rules[0].command == "echo there > a"
    assert read({}).cached
    again = read({"WHO": "me"})
    assert not again.cached
    assert again.note == "parsed the Vinefile ($WHO changed (was unset, now 'me'))"
    assert again.workflow.rules[0].command == "echo me there > a"


def test_variables_read_without_a_dollar_are_in_the_key_too(wf):
    # BATCH_LOCAL is looked up for every rule, exported names for their value
    wf("export TOKEN\na:\n\ttouch a\n")
    read({})
    assert read({}).cached
    assert not read({"BATCH_LOCAL": "1"}).cached
    assert read({"BATCH_LOCAL": "1"}).workflow.rules[0].local
    again = read({"BATCH_LOCAL": "1", "TOKEN": "t"})
    assert not again.cached
    assert again.workflow.rules[0].env == (("CATEGORY", "default"), ("TOKEN", "t"))


def test_a_variable_set_in_the_file_is_not_read_from_the_environment(wf):
    wf("WHO = me\na:\n\techo $(WHO) > a\n")
    read({"WHO": "env"})
    assert read({"WHO": "other"}).cached


def test_the_path_it_was_named_by_is_in_the_key(wf):
    wf("a:\n\ttouch a\n")
    read()
    other = read_workflow(os.path.abspath("Vinefile"), ".vinemake", {})
    assert not other.cached
    assert other.workflow.rules[0].location.path == os.path.abspath("Vinefile")


def test_stale_names_each_reason():
    now = Entry("code", "v1", "Vinefile", (("A", "1"), ("B", None)))
    assert stale(now, now) is None
    assert stale(None, now) == "no cached rules"
    assert stale(Entry("old", "v1", "Vinefile", now.environ), now) == \
        "vinemake changed since the rules were cached"
    assert stale(Entry("code", "v0", "Vinefile", now.environ), now) == "the Vinefile changed"
    assert stale(Entry("code", "v1", "Vinefile", (("A", "1"), ("B", "2"))), now) == \
        "$B changed (was '2', now unset)"


def test_the_code_digest_covers_every_module_the_parser_imports():
    code = ("import sys, vinemake.language.parser, vinemake.language.rulecache; "
            "print(' '.join(m for m in sys.modules if m.startswith('vinemake')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    package = ROOT / "vinemake"
    loaded = {m.removeprefix("vinemake").lstrip(".").replace(".", "/") for m in out.stdout.split()}
    loaded = {f"{m}/__init__" if m and (package / m).is_dir() else m or "__init__" for m in loaded}
    assert loaded <= set(rulecache.PARSING_MODULES)


def test_no_cache_when_its_own_source_cannot_be_read(wf):
    wf("a:\n\ttouch a\n")
    modules = rulecache.PARSING_MODULES
    rulecache.PARSING_MODULES = ("no-such-module",)
    rulecache.code_digest.cache_clear()
    try:
        first = read()
        assert first.note == ("parsed the Vinefile (no rules cache: vinemake's own source files "
                              "cannot be read)")
        assert not os.path.exists(".vinemake")
    finally:
        rulecache.PARSING_MODULES = modules
        rulecache.code_digest.cache_clear()
    read()
    assert read().cached


def test_an_entry_from_other_code_misses(wf):
    wf("a:\n\ttouch a\n")
    read()
    blob = Path(".vinemake", CACHE_FILE).read_bytes()
    code = rulecache.code_digest().encode()
    assert blob.count(code) == 1
    rewritten = blob.replace(code, b"0" * len(code))
    head, _, payload = rewritten.partition(b"\n")
    import xxhash  # a valid checksum: only the code differs

    Path(".vinemake", CACHE_FILE).write_bytes(
        b"vinemake-rules 1 " + xxhash.xxh3_128_hexdigest(payload).encode() + b"\n" + payload)
    again = read()
    assert not again.cached and "vinemake changed" in again.note
    assert read().cached


# --- errors are never cached ------------------------------------------------------------------


def test_a_vinefile_with_an_error_is_never_cached(wf):
    wf("a:\n\ttouch a\n")
    read()
    entry = Path(".vinemake", CACHE_FILE).read_bytes()
    wf("a:\n\ttouch a\nb: $(\n\ttouch b\n")
    for _ in range(2):
        with pytest.raises(VinefileError) as e:
            read()
        assert str(e.value).startswith("Vinefile:3:")
    assert Path(".vinemake", CACHE_FILE).read_bytes() == entry  # the good one, untouched


def test_a_bad_first_parse_writes_nothing(wf):
    wf("a: b\n")
    with pytest.raises(VinefileError):
        read()
    assert not Path(".vinemake").exists()


def test_an_unreadable_vinefile_is_the_parsers_error(tmp_path, monkeypatch):
    from vinemake.common.errors import InputError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="cannot read Vinefile"):
        read()


# --- a broken entry is ignored and overwritten ------------------------------------------------


@pytest.mark.parametrize("damage", [
    lambda b: b[: len(b) // 2],                       # truncated
    lambda b: b[:-10] + bytes(10),                    # payload changed: checksum fails
    lambda b: b.replace(b"vinemake-rules 1 ", b"vinemake-rules 0 ", 1),  # other format
    lambda b: b"",
    lambda b: b"\x00\xff garbage",
    lambda b: b.split(b"\n", 1)[0] + b"\n",           # header only
])
def test_a_broken_entry_is_a_miss_and_is_overwritten(wf, damage):
    wf("X = 1\na: in\n\techo $(X) > a\n")
    fresh = read().workflow
    cache = Path(".vinemake", CACHE_FILE)
    cache.write_bytes(damage(cache.read_bytes()))
    again = read()
    assert not again.cached
    same(again.workflow, fresh)
    assert read().cached


def test_a_payload_that_decodes_to_nonsense_is_a_miss(wf):
    import xxhash

    wf("a:\n\ttouch a\n")
    read()
    entry = rulecache._load(os.path.join(".vinemake", CACHE_FILE))[0]
    assert entry.path == "Vinefile" and entry.environ == (("BATCH_LOCAL", None),)
    payload = rulecache._frame((entry.code, entry.vinefile, entry.path, entry.environ)) + \
        rulecache._frame(("not", "tables"))
    Path(".vinemake", CACHE_FILE).write_bytes(
        b"vinemake-rules 1 " + xxhash.xxh3_128_hexdigest(payload).encode() + b"\n" + payload)
    again = read()
    assert not again.cached
    assert again.note == "parsed the Vinefile (the cached rules are unreadable)"
    assert read().cached


@pytest.mark.parametrize("head", [
    ("code", "digest", "Vinefile", ((1, None),)),
    ("code", "digest", "Vinefile", (("A", 2),)),
    ("code", "digest", "Vinefile", "AB"),
    (1, "digest", "Vinefile", ()),
    ("code", "digest", "Vinefile"),
])
def test_a_checksummed_entry_of_the_wrong_shape_is_a_miss(wf, head):
    import xxhash

    wf("a:\n\ttouch a\n")
    payload = rulecache._frame(head)
    Path(".vinemake").mkdir()
    Path(".vinemake", CACHE_FILE).write_bytes(
        b"vinemake-rules 1 " + xxhash.xxh3_128_hexdigest(payload).encode() + b"\n" + payload)
    assert read().note == "parsed the Vinefile (no cached rules)"
    assert read().cached


def test_writing_leaves_no_temporary_file(wf):
    wf("a:\n\ttouch a\n")
    read()
    wf("b:\n\ttouch b\n")
    read()
    assert os.listdir(".vinemake") == [CACHE_FILE]


def test_a_workflow_the_parser_would_not_make_is_not_cached(tmp_path):
    rule = RuleSpec(0, (), (), "true", Location("Vinefile", 1, 1), None)
    assert rulecache._encode(Workflow("Vinefile", (rule,))) is None
    elsewhere = RuleSpec(0, (), (), "true", Location("other", 1, 1), Location("other", 2, 2))
    assert rulecache._encode(Workflow("Vinefile", (elsewhere,))) is None


# --- where it may live ------------------------------------------------------------------------


def test_without_write_nothing_is_written(wf):
    wf("a:\n\ttouch a\n")
    assert not read(write=False).cached
    assert not os.path.exists(".vinemake")
    read()
    assert read(write=False).cached  # reading is fine


def test_no_cache_in_a_state_dir_others_can_write(wf):
    wf("a:\n\ttouch a\n")
    os.mkdir(".vinemake")
    os.chmod(".vinemake", 0o777)
    first = read()
    assert first.note == "parsed the Vinefile (no rules cache: others can write .vinemake)"
    assert not read().cached
    assert os.listdir(".vinemake") == []


def test_a_hit_never_imports_lark(wf):
    wf("a:\n\ttouch a\n")
    read()
    code = ("import sys; from vinemake.language.rulecache import read_workflow; "
            "p = read_workflow('Vinefile', '.vinemake', {}); "
            "print(p.cached, 'lark' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.split() == ["True", "False"]


# --- parse_bytes reads as text mode did ----------------------------------------------------------


@pytest.mark.parametrize("data", [b"a:\r\n\ttouch a\r\n", b"a:\r\ttouch a\r",
                                  b"\xef\xbb\xbfa:\n\tx\n"])
def test_parse_bytes_reads_line_endings_as_text_mode(tmp_path, data):
    path = tmp_path / "Vinefile"
    path.write_bytes(data)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        expected = parse_text(text, "Vinefile", {})
    except VinefileError as e:
        with pytest.raises(VinefileError, match=str(e).splitlines()[0]):
            parse_bytes(data, "Vinefile", {})
        return
    same(parse_bytes(data, "Vinefile", {}), expected)


def test_not_utf8_is_located(tmp_path):
    with pytest.raises(VinefileError, match=r"^Vinefile:1:1: not a text file: invalid start"):
        parse_bytes(b"a:\n\t\xff\n", "Vinefile", {})


# --- through the command line --------------------------------------------------------------------


def vinemake(root, *args, **env):
    """Run the CLI without $WHO in its environment unless given."""
    environ = {k: v for k, v in os.environ.items() if k != "WHO"}
    proc = subprocess.run([sys.executable, "-m", "vinemake", *args], cwd=root,
                          capture_output=True, text=True, timeout=60,
                          env={**environ, "PYTHONPATH": str(ROOT), **env})
    assert proc.returncode == 0, proc.stderr
    return proc


def test_a_rerun_after_touching_a_source_reads_the_rules_from_the_cache(tmp_path):
    (tmp_path / "in.txt").write_text("x\n")
    (tmp_path / "Vinefile").write_text("out.txt: in.txt\n\tLOCAL cat in.txt > out.txt\n")
    first = vinemake(tmp_path, "--explain")
    assert "vinemake explain: parsed the Vinefile (no cached rules)" in first.stderr
    os.utime(tmp_path / "in.txt", ns=(1, 1))  # the up-to-date snapshot no longer holds
    again = vinemake(tmp_path, "--explain")
    assert "vinemake explain: parsed rules from cache" in again.stderr.splitlines()
    assert "vinemake explain: skip out.txt: outputs current" in again.stderr.splitlines()


def test_later_leaves_the_write_to_its_save(wf):
    wf("a:\n\ttouch a\n")
    parsed = read_workflow("Vinefile", ".vinemake", {}, later=True)
    assert not os.path.exists(os.path.join(".vinemake", CACHE_FILE))
    parsed.save()
    assert read().cached
    assert read_workflow("Vinefile", ".vinemake", {}, later=True).save is None  # a hit


def test_a_first_build_writes_the_cache_after_its_run_and_a_rebuild_before(tmp_path):
    # seen.txt lists the state directory while the run goes on
    rule = f"seen.txt: in.txt\n\tLOCAL ls {tmp_path / '.vinemake'} > seen.txt\n"
    (tmp_path / "in.txt").write_text("x\n")
    (tmp_path / "Vinefile").write_text(rule)
    vinemake(tmp_path)
    assert CACHE_FILE not in (tmp_path / "seen.txt").read_text().split()
    assert (tmp_path / ".vinemake" / CACHE_FILE).exists()
    (tmp_path / "in.txt").write_text("y\n")
    (tmp_path / "Vinefile").write_text(rule + "\n")  # edited: parsed, cached before the run
    again = vinemake(tmp_path, "--explain")
    assert "vinemake explain: parsed the Vinefile (the Vinefile changed)" in again.stderr
    assert CACHE_FILE in (tmp_path / "seen.txt").read_text().split()


def test_check_and_dry_run_write_no_cache(tmp_path):
    (tmp_path / "Vinefile").write_text("out.txt:\n\tLOCAL touch out.txt\n")
    vinemake(tmp_path, "--check")
    vinemake(tmp_path, "-n")
    assert not (tmp_path / ".vinemake" / CACHE_FILE).exists()


def test_clean_all_removes_the_cache(tmp_path):
    (tmp_path / "Vinefile").write_text("out.txt:\n\tLOCAL touch out.txt\n")
    vinemake(tmp_path)
    assert (tmp_path / ".vinemake" / CACHE_FILE).exists()
    vinemake(tmp_path, "--clean")
    assert not (tmp_path / ".vinemake" / CACHE_FILE).exists()


def test_the_command_line_keys_on_the_process_environment(tmp_path):
    (tmp_path / "Vinefile").write_text("WHO += there\nout.txt:\n\tLOCAL echo $(WHO) > out.txt\n")
    vinemake(tmp_path)
    assert (tmp_path / "out.txt").read_text() == "there\n"
    proc = vinemake(tmp_path, "--explain", WHO="me")
    assert "vinemake explain: parsed the Vinefile ($WHO changed (was unset, now 'me'))" \
        in proc.stderr
    assert (tmp_path / "out.txt").read_text() == "me there\n"
