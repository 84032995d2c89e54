"""The Vinefile parser: each construct of LANGUAGE.md §1 and §2, with exact RuleSpec fields."""

from __future__ import annotations

import pytest

from vinemake.common.spec import Category, FileRef, Location, Resources
from vinemake.language.parser import grammar_text, parse_file, parse_text


def parse(text: str, environ: dict[str, str] | None = None):
    return parse_text(text, "Vinefile", environ=environ or {})


def rule(text: str, environ: dict[str, str] | None = None, index: int = -1):
    return parse(text, environ).rules[index]


def refs(*names: str) -> tuple[FileRef, ...]:
    return tuple(FileRef(*n.split(">")) if ">" in n else FileRef(n, n) for n in names)


# ---- lines -----------------------------------------------------------------------------

def test_simple_rule_fields():
    r = rule("out.txt: in.txt\n\tcat in.txt > out.txt\n")
    assert r.id == 0
    assert r.targets == refs("out.txt")
    assert r.sources == refs("in.txt")
    assert r.command == "cat in.txt > out.txt"
    assert r.location == Location("Vinefile", 1, 1)
    assert r.command_location == Location("Vinefile", 2, 2)
    assert r.env == (("CATEGORY", "default"),)
    assert r.category == "default"
    assert r.resources == Resources()
    assert (r.local, r.subworkflow, r.temp, r.cache_forever) == (False, False, False, False)


def test_rules_keep_file_order_and_ids():
    wf = parse("a:\n\ttouch a\nb: a\n\ttouch b\nc: b\n\ttouch c\n")
    assert [(r.id, r.targets[0].path) for r in wf.rules] == [(0, "a"), (1, "b"), (2, "c")]


def test_comments_blank_lines_and_space_indented_commands():
    wf = parse("# top\n\n   \nout: in # why\n# between\n    echo hi # not the shell's\n\n")
    assert wf.rules[0].sources == refs("in")
    assert wf.rules[0].command == "echo hi"


def test_hash_inside_quotes_is_not_a_comment():
    r = rule("out: \"a#b\"\n\techo '#1' \"#2\" > out # comment\n")
    assert r.sources == refs("a#b")
    assert r.command == "echo '#1' \"#2\" > out"


def test_backslash_continuation_in_command_and_file_list():
    r = rule("out: a \\\n     b\n\tcat a \\\n\t  b > out\n")
    assert r.sources == refs("a", "b")
    assert r.command == "cat a b > out"
    assert r.command_location == Location("Vinefile", 3, 2)


def test_either_side_may_be_empty():
    wf = parse("out:\n\ttouch out\n: out\n\ttest -s out\n")
    assert wf.rules[0].sources == ()
    assert wf.rules[1].targets == ()
    assert wf.rules[1].location == Location("Vinefile", 3, 1)


def test_file_without_final_newline_and_crlf():
    assert rule("out: in\r\n\tcat in > out").command == "cat in > out"


def test_empty_file_is_an_empty_workflow():
    wf = parse("")
    assert wf.rules == () and wf.path == "Vinefile"


# ---- file lists ------------------------------------------------------------------------

@pytest.mark.parametrize("header", ["out: in->remote.txt", "out: in -> remote.txt",
                                    "out: in ->remote.txt", "out: in-> remote.txt"])
def test_sandbox_names_with_optional_spaces(header):
    assert rule(header + "\n\tx\n").sources == refs("in>remote.txt")


def test_sandbox_name_on_target_side_and_dash_in_names():
    r = rule("my-out.txt->o.txt: my-file.txt a-b->c\n\tx\n")
    assert r.targets == refs("my-out.txt>o.txt")
    assert r.sources == refs("my-file.txt", "a-b>c")


def test_quoted_file_names_lose_their_quotes():
    r = rule("\"C D\" 'e f': \"x y\"->z a\\ b\n\tcp \"x y\" z\n")
    assert r.targets == refs("C D", "e f")
    assert r.sources == refs("x y>z", "a b")
    assert r.command == "cp \"x y\" z"


def test_dot_names_are_files_not_directives():
    wf = parse(".hidden .A b: .B\n\tx\n.C : .D\n\ty\n")
    assert [r.targets for r in wf.rules] == [refs(".hidden", ".A", "b"), refs(".C")]


def test_directories_and_nested_targets():
    r = rule("mydir mydir/1.txt: indir/\n\tmkdir -p mydir && cp -r indir/. mydir\n")
    assert r.targets == refs("mydir", "mydir/1.txt")
    assert r.sources == refs("indir/")


def test_file_list_expansion_is_split_quote_aware():
    r = rule("FILES=a \"b c\" d->e\nout: $(FILES)\n\tx\n")
    assert r.sources == refs("a", "b c", "d>e")


def test_hundred_thousand_sources():
    names = [f"in{i}" for i in range(100_000)]
    r = rule("out: " + " ".join(names) + "\n\tcat * > out\n")
    assert len(r.sources) == 100_000 and r.sources[-1] == FileRef("in99999", "in99999")


# ---- variables -------------------------------------------------------------------------

@pytest.mark.parametrize("assign", ["A=x y", "A = x y", "A =x y", "A= x y", "A=x\nA+=y",
                                    "A = x\nA += y"])
def test_assignment_forms(assign):
    assert rule(assign + "\nout:\n\techo $(A)\n").command == "echo x y"


def test_three_reference_forms_and_eager_expansion():
    r = rule("A=1\nB=$(A)2\nA=9\nout:\n\techo $A ${B} $(A)\n")
    assert r.command == "echo 9 12 9"


def test_append_changes_the_global_value_even_inside_a_category():
    # As cctools makeflow 9.9 reads it (tests/makeflow_compat/syntax-category-append).
    wf = parse("A=x\nCATEGORY=c\nA+=y\nB=own\nB+=more\nb:\n\techo $(A) $(B)\n"
               "l:\n@B+=local\n\techo $(B)\nCATEGORY=default\nd:\n\techo $(A) $(B)\n")
    assert [r.command for r in wf.rules] == ["echo x y own", "echo more local",
                                              "echo x y more"]


def test_append_to_undefined_variable():
    assert rule("A+=x\nout:\n\techo $(A)\n").command == "echo x"


def test_values_keep_quotes_and_single_quotes_stop_expansion():
    r = rule("A=1\nB=\"$(A) 2\" '$(A)'\nout:\n\techo $(B) '$A' \"$A\"\n")
    assert r.command == "echo \"1 2\" '$(A)' '$A' \"1\""


def test_backslash_dollar_gives_the_shell_a_dollar():
    # As in cctools makeflow: the shell expands it, at run time, where the command runs.
    r = rule("X=\\$PWD\nout:\n\tfor f in *; do echo \\$f \"\\$HOME\" '\\$1' $(X); done\n")
    assert r.command == "for f in *; do echo $f \"$HOME\" '$1' $PWD; done"


# What cctools makeflow 9.9 submitted for each command (read from its log on this machine).
@pytest.mark.parametrize(("text", "command"), [
    ("out:\n\techo \\\\\\$ > a.txt\n", "echo \\$ > a.txt"),
    ("out:\n\techo \"\\'q\\'\" > b.txt\n", "echo \"'q'\" > b.txt"),
    ('out:\n\techo "{\\\\"k\\\\": 1}" > out.txt\n', 'echo "{\\"k\\": 1}" > out.txt'),
    ("out:\n\tprintf 'a\\nb\\n' | tr '\\n' ' ' > o\n", "printf 'anbn' | tr 'n' ' ' > o"),
    ("out:\n\tprintf '%s|' a\\ b \"a\\ b\" 'a\\ b' > o\n", "printf '%s|' a b \"a b\" 'a b' > o"),
    ('out:\n\tprintf "%s|" "a\\"b" x\\"y > o\n', 'printf "%s|" "a"b" x"y > o'),
    # Inside double quotes Makeflow's control escapes are the characters themselves.
    ("out:\n\tprintf '%s|' '\\t' \"\\t\" > o\n", "printf '%s|' 't' \"\t\" > o"),
    # A value: one backslash removed when it is read, another where it is used outside
    # quotes (Makeflow reads an inserted value again as command text), none inside quotes.
    ("A = a\\\\\\\\b\nout:\n\tprintf '%s|' $(A) \"$(A)\" > o\n",
     "printf '%s|' a\\b \"a\\\\b\" > o"),
    ("C = 'p\\\\q'\nout:\n\tprintf '%s|' $(C) \"$(C)\" > o\n",
     "printf '%s|' 'pq' \"'p\\q'\" > o"),
    ("B = x\\ty\nout:\n\tprintf '%s|' \"$(B)\" > o\n", "printf '%s|' \"x\ty\" > o"),
])
def test_backslashes_as_makeflow_reads_them(text, command):
    assert rule(text).command == command


def test_backslash_dollar_in_file_list_is_a_plain_dollar():
    assert rule("a\\$b:\n\tx\n").targets == refs("a$b")


def test_dollar_not_followed_by_a_name_is_left_for_the_shell():
    assert rule("out:\n\ttest $? -eq 0 && echo $1 $\n").command == "test $? -eq 0 && echo $1 $"


def test_lookup_order_local_category_global_environ():
    text = ("G=global\nC=global\nL=global\nCATEGORY=cat\nC=category\nL=category\n"
            "out:\nL=local\n\techo $(L) $(C) $(G) $(E)\n")
    r = rule(text, {"E": "environ", "G": "env-G"})
    assert r.command == "echo local category global environ"


def test_rule_local_assignment_applies_to_that_rule_only():
    wf = parse("A=top\nx:\n@A=mine\nB=$(A)!\n\techo $(A) $(B)\ny:\n\techo $(A)\n")
    assert wf.rules[0].command == "echo mine mine!"
    assert wf.rules[1].command == "echo top"


def test_rule_local_append_starts_from_the_value_in_force():
    assert rule("A=1\nout:\nA+=2\n\techo $(A)\n").command == "echo 1 2"


def test_environ_defaults_to_the_process_environment(monkeypatch):
    monkeypatch.setenv("VINEMAKE_TEST_VAR", "from-env")
    assert parse_text("out:\n\techo $(VINEMAKE_TEST_VAR)\n").rules[0].command == \
        "echo from-env"


# ---- export, categories, resources ------------------------------------------------------

def test_export_forms_and_value_in_force_at_each_rule():
    text = ("A=1\nexport A\nexport B=2\nexport HOME\na:\n\tx\nA=3\nb:\n@B=local\n\tx\n")
    wf = parse(text, {"HOME": "/home/u"})
    assert wf.rules[0].env == (("A", "1"), ("B", "2"), ("CATEGORY", "default"),
                               ("HOME", "/home/u"))
    assert wf.rules[1].env == (("A", "3"), ("B", "local"), ("CATEGORY", "default"),
                               ("HOME", "/home/u"))


# As cctools makeflow 9.9 reads them (the environment its commands saw, on this machine).
@pytest.mark.parametrize(("line", "env"), [
    ("export HELLO=hello makeflow", {"HELLO": "hello makeflow"}),
    ("export E = e1 e2", {"E": "e1 e2"}),
    ("export G= g1 \"g 2\" H=h", {"G": 'g1 "g 2" H=h'}),
    ("F=f0\nexport F+=f1", {"F": "f0 f1"}),
    ("B=b\nexport B C", {"B": "b", "C": "c-from-env"}),
    ("export Q = \\$HOME a\\\\b", {"Q": "$HOME a\\b"}),
])
def test_export_forms_as_makeflow_reads_them(line, env):
    r = rule(line + "\nout:\n\tx\n", {"C": "c-from-env"})
    assert dict(r.env) == {**env, "CATEGORY": "default"}


def test_export_of_a_name_set_nowhere_is_left_out():
    assert rule("export NOWHERE\nout:\n\tx\n").env == (("CATEGORY", "default"),)


def test_categories_scope_assignments_and_resources():
    text = ("CORES=1\nA=global\nCATEGORY=big\nCORES=4\nA=big\nbig1:\n\techo $(A)\n"
            ".MAKEFLOW CATEGORY small\nsmall1:\n\techo $(A)\n")
    wf = parse(text)
    big, small = wf.rules
    assert (big.category, big.command, big.resources.cores) == ("big", "echo big", 4)
    assert (small.category, small.command, small.resources.cores) == ("small", "echo global", 1)
    assert big.env == (("CATEGORY", "big"), ("CORES", "4"))


def test_last_resource_value_wins_for_the_whole_category():
    wf = parse("CATEGORY=c\nMEMORY=100\na:\n\tx\nMEMORY=4G\nb:\n\tx\n")
    assert [r.resources.memory_mb for r in wf.rules] == [4000, 4000]
    assert wf.categories == (Category("default"),
                             Category("c", Resources(memory_mb=4000)))


def test_rule_local_resources_override_and_annotation_overrides_both():
    text = ("CORES=2\nDISK=100\na:\nCORES=3\n\tx\n@resources cores=8 memory=1.5GiB "
            "disk=10GB gpus=1 wall_time=30m\nb:\nCORES=3\n\tx\n")
    a, b = parse(text).rules
    assert a.resources == Resources(cores=3, disk_mb=100)
    assert b.resources == Resources(cores=8, memory_mb=1611, disk_mb=10000, gpus=1,
                                    wall_time_s=1800.0)
    assert b.env == (("CATEGORY", "default"), ("CORES", "8"), ("DISK", "10000"),
                     ("GPUS", "1"), ("MEMORY", "1611"), ("WALL_TIME", "1800"))


def test_makeflow_directives():
    text = (".MAKEFLOW CATEGORY sim\n.MAKEFLOW CORES 2\n.MAKEFLOW MEMORY 4G\n"
            ".MAKEFLOW DISK 1G\n.MAKEFLOW WALL_TIME 3600\n.MAKEFLOW MPI_PROCESSES 4\n"
            ".MAKEFLOW MODE MIN_WASTE\n.SIZE input.dat 2GB\nout: input.dat\n\tx\n")
    wf = parse(text)
    assert wf.rules[0].category == "sim"
    assert wf.rules[0].resources == Resources(cores=2, memory_mb=4000, disk_mb=1000,
                                              wall_time_s=3600.0, mpi_processes=4)
    assert wf.categories[-1] == Category("sim", wf.rules[0].resources, "MIN_WASTE")
    assert wf.sizes == (("input.dat", 2000),)


def test_counts_in_directives_take_makeflows_metric_suffixes():
    wf = parse(".MAKEFLOW CATEGORY big\n.MAKEFLOW CORES 2k\n.MAKEFLOW MPI_PROCESSES 1K\n"
               "a:\n\tx\nb:\nCORES=0.5\n\tx\n@resources cores=1k gpus=2\nc:\n\tx\n")
    assert [(r.resources.cores, r.resources.mpi_processes) for r in wf.rules] == [
        (2000, 1000), (0.5, 1000), (1000, 1000)]
    assert wf.rules[2].resources.gpus == 2


@pytest.mark.parametrize("line, column, message", [
    (".MAKEFLOW MPI_PROCESSES 1.5", 25, "bad MPI_PROCESSES value '1.5': expected a whole number"),
    (".MAKEFLOW CORES 4X", 17, "bad CORES value '4X': expected a number of cores"),
    (".MAKEFLOW CORES -1", 17, "bad CORES value '-1': expected a number of cores"),
])
def test_a_count_with_a_bad_suffix_is_a_located_error(line, column, message):
    from vinemake.common.errors import VinefileError

    with pytest.raises(VinefileError) as e:
        parse(f".MAKEFLOW CATEGORY x\n{line}\na:\n\tx\n")
    assert f"Vinefile:2:{column}: {message}" in str(e.value)


def test_mpi_processes_is_a_resource_per_category_and_rule():
    wf = parse("MPI_PROCESSES=8\na:\n\tx\nb:\nMPI_PROCESSES=2\n\tx\n"
               "CATEGORY=c\n.MAKEFLOW MPI_PROCESSES 16\nc:\n\tx\n")
    assert [r.resources.mpi_processes for r in wf.rules] == [8, 2, 16]
    assert ("MPI_PROCESSES", "2") in wf.rules[1].env
    assert wf.categories[0] == Category("default", Resources(mpi_processes=8))


def test_rule_local_category_and_directive():
    r = rule("CATEGORY=x\nCORES=5\nCATEGORY=y\nout:\nCATEGORY=x\n.MAKEFLOW MEMORY 10\n\tx\n")
    assert (r.category, r.resources) == ("x", Resources(cores=5, memory_mb=10))


def test_inputs_outputs_and_batch_options():
    text = ("MAKEFLOW_INPUTS=a \"b c\"\nMAKEFLOW_OUTPUTS=out\nBATCH_OPTIONS=-q long\n"
            "CATEGORY=gpu\nBATCH_OPTIONS=--gres=gpu:1\nout: a\n\tx\nother:\n@BATCH_OPTIONS=-p x\n"
            "\tx\n")
    wf = parse(text)
    assert (wf.inputs, wf.outputs) == (("a", "b c"), ("out",))
    assert [r.batch_options for r in wf.rules] == ["--gres=gpu:1", "-p x"]
    assert [c.batch_options for c in wf.categories] == ["-q long", "--gres=gpu:1"]


def test_inputs_outputs_default_to_none():
    wf = parse("out:\n\tx\n")
    assert (wf.inputs, wf.outputs, wf.sizes) == (None, None, ())


# ---- command prefixes and annotations ---------------------------------------------------

def test_local_and_makeflow_prefixes_and_batch_local():
    wf = parse("a:\n\tLOCAL echo hi > a\nb: sub.vf\n\tMAKEFLOW sub.vf -j 2\n"
               "c:\nBATCH_LOCAL=1\n\ttouch c\n")
    a, b, c = wf.rules
    assert (a.local, a.command) == (True, "echo hi > a")
    assert (b.subworkflow, b.local, b.command) == (True, False, "sub.vf -j 2")
    assert (c.local, c.command) == (True, "touch c")


# Makeflow's string_istrue: "true" and "yes" in any case, or a number above 0.
@pytest.mark.parametrize(("value", "local"), [
    ("1", True), ("TRUE", True), ("yes", True), ("Yes", True), ("2x", True), (" 3", True),
    ("0", False), ("FALSE", False), ("no", False), ("on", False), ("-1", False), ("x", False),
    ('""', False),
])
def test_batch_local_is_true_as_makeflow_reads_it(value, local):
    top = parse(f"BATCH_LOCAL={value}\nout:\n\ttouch out\n").rules[0]
    own = parse(f"out:\n@BATCH_LOCAL={value}\n\ttouch out\n").rules[0]
    assert (top.local, own.local) == (local, local)


def test_sub_workflow_file_is_a_source_even_when_not_listed():
    wf = parse("a.out: in\n\tMAKEFLOW sub.vf subdir\nb.out: sub.vf\n\tMAKEFLOW sub.vf\n")
    assert wf.rules[0].sources == refs("in", "sub.vf")
    assert wf.rules[1].sources == refs("sub.vf")


def test_prefixes_may_combine_and_come_from_a_variable():
    r = rule("HOW=LOCAL\nout: sub.vf\n\t$(HOW) MAKEFLOW sub.vf\n")
    assert (r.local, r.subworkflow, r.command) == (True, True, "sub.vf")


def test_annotations_stack_above_a_rule():
    r = rule("@retries 3\n@temp\n# a comment between\n@cache forever\nsim.out: sim.in\n\tx\n")
    assert (r.retries, r.temp, r.cache_forever) == (3, True, True)


def test_annotation_is_not_an_assignment():
    r = rule("@NAME=value\n@temp\nout:\n\techo $(NAME)\n")
    assert (r.temp, r.command) == (True, "echo value")


def test_library_and_call():
    text = ("@library ml slots=4\n@resources cores=2 memory=4GB\n: model.py weights.bin\n"
            "\tpython3 -m vinemake.library model.py\nN=1\n@call ml\nscore.$(N): trained.$(N)\n"
            "\tevaluate trained.$(N) score.$(N)\n")
    lib, call = parse(text).rules
    assert (lib.library, lib.library_slots, lib.targets) == ("ml", 4, ())
    assert lib.resources == Resources(cores=2, memory_mb=4000)
    assert lib.name == "library:ml"
    assert (call.call, call.command) == ("ml", "evaluate trained.1 score.1")


# ---- files and the grammar itself ------------------------------------------------------

def test_parse_file_reads_and_locates(tmp_path):
    path = tmp_path / "Vinefile"
    path.write_text("out:\n\ttouch out\n")
    wf = parse_file(str(path), environ={})
    assert wf.path == str(path) and wf.rules[0].location.path == str(path)


def test_grammar_names_the_reserved_words():
    # keywords.py is the single source of truth; the grammar documents the same words.
    from vinemake.language import keywords
    text = grammar_text()
    for word in (*keywords.MAKEFLOW_DIRECTIVES, *keywords.DOT_DIRECTIVES,
                 *keywords.COMMAND_PREFIXES, *("@" + a for a in keywords.ANNOTATIONS)):
        assert word in text, word


def test_public_surface():
    from vinemake.language import parser
    assert parser.__all__ == ["parse_file", "parse_bytes", "parse_text", "grammar_text"]


# ---- plain rules: the parser's fast path means what the general one means ---------------

PLAIN = [
    "out.txt: in.txt\n\tcat in.txt > out.txt\n",
    "a b  c:d\te \n    touch a b c  \t\n",
    "out:\n\ttouch out\n",
    ": out\n\ttest -s out\n",
    "out: a->b c -> d\n\tcat b d > out\n",
    "x->y z: in\n\ttouch y z\n",
    "out: in\n\tLOCAL cp in out\n",
    "out: in\n\tMAKEFLOW sub.vine\n",
    "export A\nA=1\nBATCH_LOCAL=1\nout: in\n\ttouch out\n",
    "CATEGORY=big\nCORES=2\nout: in\n\ttouch out\nCATEGORY=default\nb: out\n\ttouch b\n",
    "a: \n\ttouch a\nb: a\n\ttouch b\nc: a b\n\ttouch c\n",
]


def general_form(text: str) -> str:
    """The same Vinefile with a comment ending every line: the parser's general path."""
    return "".join(line + " # c\n" for line in text.splitlines())


def statement_types(text: str) -> set[str]:
    from vinemake.language.parser import _lark
    return {type(s).__name__ for s in _lark().parse(text)}


@pytest.mark.parametrize("text", PLAIN)
def test_plain_rule_means_what_the_general_form_means(text):
    assert "PlainRule" in statement_types(text)
    assert "PlainRule" not in statement_types(general_form(text))
    assert parse(text, {"A": "x"}) == parse(general_form(text), {"A": "x"})


@pytest.mark.parametrize("between", ["  \n", "\n", "\t# c\n", " \n\n"])
def test_blank_lines_between_header_and_command(between):
    r = rule(f"out: in\n{between}\tcmd\n")
    line = 2 + between.count("\n")
    assert (r.command, r.command_location) == ("cmd", Location("Vinefile", line, 2))


def test_annotations_above_a_plain_rule():
    text = "@retries 2\n@resources cores=2\nout: in\n\ttouch out\n"
    r = rule(text)
    assert (r.retries, r.resources, r.command) == (2, Resources(cores=2), "touch out")
    assert parse(text) == parse(general_form(text))


@pytest.mark.parametrize("text", ["out: in\n\tLOCAL\n", "out: a->\n\ttouch out\n",
                                  "out: in\n\tMAKEFLOW\n", "a: b\n\ttouch a\nb: a\n\ttouch b\n"])
def test_plain_rule_errors_are_the_general_form_errors(text):
    from vinemake.common.errors import VinefileError
    from vinemake.core.graph import BuildGraph
    errors = []
    for form in (text, general_form(text)):
        with pytest.raises(VinefileError) as e:
            BuildGraph.build(parse(form), ".")
        errors.append((e.value.location, e.value.message))
    assert errors[0] == errors[1]


def test_fast_rulespec_equals_one_made_by_its_constructor():
    from dataclasses import fields

    from vinemake.common.spec import RuleSpec, new_rulespec
    values = {"id": 3, "targets": refs("a"), "sources": refs("b"), "command": "cp b a",
              "location": Location("V", 1, 1), "command_location": Location("V", 2, 2),
              "env": (("A", "1"),), "category": "big",
              "resources": Resources(cores=2), "retries": 4, "temp": True,
              "cache_forever": True, "library": "ml", "library_slots": 2, "call": "f",
              "local": True, "subworkflow": True, "batch_options": "-q x", "mini": True,
              "environment": "env.tar.gz"}
    assert set(values) == {f.name for f in fields(RuleSpec)}
    few = {k: values[k] for k in ("id", "targets", "sources", "command", "location")}
    for given in (values, few):
        made, expected = new_rulespec(dict(given)), RuleSpec(**given)
        assert made == expected and hash(made) == hash(expected)
        assert repr(made) == repr(expected)
        assert all(getattr(made, f.name) == getattr(expected, f.name) for f in fields(RuleSpec))


def test_fast_location_equals_one_made_by_its_constructor():
    from vinemake.common.spec import new_location
    made = new_location("V", 3, 4)
    assert made == Location("V", 3, 4) and hash(made) == hash(Location("V", 3, 4))
    assert (str(made), repr(made)) == ("V:3:4", "Location(path='V', line=3, col=4)")


def test_fast_fileref_equals_one_made_by_its_constructor():
    from vinemake.common.spec import new_fileref
    made = new_fileref("a/b.txt")
    assert made == FileRef("a/b.txt", "a/b.txt") and hash(made) == hash(FileRef("a/b.txt",
                                                                                 "a/b.txt"))
    assert repr(made) == "FileRef(path='a/b.txt', sandbox='a/b.txt')"


# ---- where Lark keeps the grammar's analysis --------------------------------------------

def test_grammar_cache_is_in_the_users_own_cache_directory(tmp_path):
    from vinemake.language.parser import grammar_cache
    path = grammar_cache({"XDG_CACHE_HOME": str(tmp_path)})
    assert path == str(tmp_path / "vinemake" / "grammar.lark-cache")
    assert (tmp_path / "vinemake").stat().st_mode & 0o777 == 0o700
    assert grammar_cache({"HOME": str(tmp_path)}) == str(
        tmp_path / ".cache" / "vinemake" / "grammar.lark-cache")


@pytest.mark.parametrize("environ", [{}, {"HOME": ""}, {"XDG_CACHE_HOME": "relative/dir"}])
def test_no_grammar_cache_without_a_home(environ):
    from vinemake.language.parser import grammar_cache
    assert grammar_cache(environ) is None


def test_no_grammar_cache_in_a_directory_others_can_write(tmp_path):
    from vinemake.language.parser import grammar_cache
    (tmp_path / "vinemake").mkdir(mode=0o700)
    (tmp_path / "vinemake").chmod(0o777)
    assert grammar_cache({"XDG_CACHE_HOME": str(tmp_path)}) is None
    (tmp_path / "vinemake").chmod(0o700)
    (tmp_path / "file").write_text("")
    assert grammar_cache({"XDG_CACHE_HOME": str(tmp_path / "file")}) is None


def test_a_parser_loaded_from_the_grammar_cache_reads_the_same(tmp_path):
    from vinemake.language.parser import _new_lark
    text = "A=1\n@retries 2\nout: in\n\tcat in > $A\nx: out\nCORES=2\n\techo\n"
    cache = tmp_path / "grammar.lark-cache"
    built = _new_lark(str(cache)).parse(text)
    assert cache.stat().st_size > 0
    assert _new_lark(str(cache)).parse(text) == built == _new_lark(None).parse(text)
