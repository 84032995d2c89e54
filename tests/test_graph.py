"""BuildGraph: resolution, validation errors (exact text), selection, order and export."""

from __future__ import annotations

import dataclasses
import json

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vinemake.common.errors import InputError, VinefileError
from vinemake.common.spec import FileRef, Location, RuleSpec, Workflow
from vinemake.core.graph import BuildGraph, norm
from vinemake.language.parser import parse_text


def ref(word: str) -> FileRef:
    local, _, remote = word.partition("->")
    return FileRef(local, remote or local)


def parse(text: str) -> Workflow:
    """A test-only reader of the simplest Vinefiles: headers, one command, @library/@call."""
    rules: list[RuleSpec] = []
    notes: dict[str, str] = {}
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if line.startswith("@"):
            word, name = line[1:].split()
            notes[word] = name
        elif line and not line[0].isspace() and ":" in line:
            left, right = line.split(":", 1)
            command = lines[number].strip() if number < len(lines) else ""
            rules.append(RuleSpec(
                id=len(rules), targets=tuple(ref(w) for w in left.split()),
                sources=tuple(ref(w) for w in right.split()), command=command,
                location=Location("Vinefile", number, 1),
                library=notes.pop("library", None), call=notes.pop("call", None)))
    return Workflow("Vinefile", tuple(rules))


def build(tmp_path, text: str, files: tuple[str, ...] = ()) -> BuildGraph:
    (tmp_path / "Vinefile").write_text(text)
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    return BuildGraph.build(parse(text), str(tmp_path))


def error(tmp_path, text: str, files: tuple[str, ...] = ()) -> str:
    with pytest.raises(VinefileError) as info:
        build(tmp_path, text, files)
    assert info.value.exit_code == 2
    return str(info.value)


PIPELINE = """\
a.txt: in.txt
\tcp in.txt a.txt
b.txt c.txt: a.txt
\tsplit a.txt
d.txt: b.txt c.txt
\tcat b.txt c.txt > d.txt
e.txt: in.txt
\tcp in.txt e.txt
"""


# --- resolution -----------------------------------------------------------------------------


def test_deps_dependents_producer_and_sources(tmp_path):
    g = build(tmp_path, PIPELINE, files=("in.txt",))
    assert g.rule_ids == (0, 1, 2, 3)
    assert g.deps == [(), (0,), (1,), ()]
    assert g.dependents == [(1,), (2,), (), ()]
    assert g.producer == {"a.txt": 0, "b.txt": 1, "c.txt": 1, "d.txt": 2, "e.txt": 3}
    assert g.sources == {"in.txt"}
    assert g.terminal_outputs() == ["d.txt", "e.txt"]
    assert g.outputs() == ["d.txt", "e.txt"]


def test_a_rule_reading_two_outputs_of_one_rule_depends_on_it_once(tmp_path):
    g = build(tmp_path, "a b:\n\tx\nc: a b\n\ty\n")
    assert g.deps[1] == (0,)


def test_paths_are_compared_in_one_spelling(tmp_path):
    g = build(tmp_path, "out/a.txt:\n\tx\nb: ./out//a.txt\n\ty\n")
    assert g.deps[1] == (0,)
    assert norm("./out//a.txt/") == "out/a.txt"


def test_a_directory_source_depends_on_everything_made_under_it(tmp_path):
    text = "mydir/1.txt:\n\tx\nmydir/sub/2.txt:\n\tx\nother:\n\tx\nall: mydir\n\tls mydir\n"
    g = build(tmp_path, text)
    assert g.deps[3] == (0, 1)
    assert g.sources == set()
    assert g.dir_members == {"mydir": ("mydir/1.txt", "mydir/sub/2.txt")}
    assert g.terminal_outputs() == ["other", "all"]


def test_a_file_inside_a_made_directory_depends_on_the_directory_rule(tmp_path):
    g = build(tmp_path, "mydir:\n\tmkdir mydir\nx: mydir/f.txt\n\tcat mydir/f.txt\n")
    assert g.deps[1] == (0,)
    assert g.terminal_outputs() == ["x"]


def test_a_directory_source_on_disk_is_a_plain_source(tmp_path):
    g = build(tmp_path, "x: data\n\tls data\n", files=("data/f",))
    assert g.sources == {"data"}
    assert g.deps == [()]


def test_sources_are_checked_relative_to_root(tmp_path):
    asked = []

    def exists(path):
        asked.append(path)
        return True

    (tmp_path / "Vinefile").write_text("x: in /abs/in\n\ty\n")
    BuildGraph.build(parse("x: in /abs/in->in2\n\ty\n"), str(tmp_path), exists)
    assert sorted(asked) == sorted([str(tmp_path / "in"), "/abs/in"])


def test_a_call_waits_for_the_rules_making_its_librarys_inputs(tmp_path):
    text = ("weights.bin: raw\n\ttrain\n@library ml\n: model.py weights.bin\n\tserve\n"
            "other:\n\tx\n@call ml\nscore: other\n\tevaluate\n")
    g = build(tmp_path, text, files=("raw", "model.py"))
    assert g.deps[3] == (0, 2)
    assert g.select(["score"]).rule_ids == (0, 2, 3)


def test_order_is_topological_and_keeps_file_order_among_ready_rules(tmp_path):
    g = build(tmp_path, "final: mid\n\tx\nother:\n\tx\nmid:\n\tx\nlast: final other\n\tx\n")
    assert g.order() == [1, 2, 0, 3]


# --- validation errors ----------------------------------------------------------------------


def test_two_producers_name_both_lines(tmp_path):
    text = "x:\n\ttrue\nout.txt:\n\techo 1 > out.txt\nz:\n\ttrue\nb.txt out.txt: x\n\techo 2\n"
    assert error(tmp_path, text) == (
        "Vinefile:7:7: out.txt is made by two rules: line 3 and line 7\n"
        "b.txt out.txt: x\n"
        "      ^")


def test_cycle_names_the_rules_on_it(tmp_path):
    text = "start:\n\tx\na: c\n\tx\nb: a start\n\tx\nc: b\n\tx\nafter: c\n\tx\n"
    assert error(tmp_path, text) == (
        "Vinefile:3:1: dependency cycle: a (line 3) needs c (line 7) needs b (line 5) needs "
        "a (line 3)\n"
        "a: c\n"
        "^")


def test_a_rule_reading_its_own_target_is_a_cycle(tmp_path):
    assert error(tmp_path, "x:\n\ttrue\nlog: in log\n\tx\n", files=("in",)) == (
        "Vinefile:3:1: 'log' is both a target and a source of this rule\n"
        "log: in log\n"
        "^")


def test_missing_source_suggests_a_near_name_on_disk(tmp_path):
    assert error(tmp_path, "out: inptu.txt\n\tcat inptu.txt\n", files=("input.txt",)) == (
        "Vinefile:1:6: source 'inptu.txt' does not exist and no rule makes it "
        "(did you mean 'input.txt'?)\n"
        "out: inptu.txt\n"
        "     ^")


def test_missing_source_suggests_a_near_made_file(tmp_path):
    text = "result.dat:\n\tx\nfinal: reslut.dat\n\tx\n"
    assert error(tmp_path, text) == (
        "Vinefile:3:8: source 'reslut.dat' does not exist and no rule makes it "
        "(did you mean 'result.dat'?)\n"
        "final: reslut.dat\n"
        "       ^")


def test_missing_source_without_a_near_name(tmp_path):
    assert error(tmp_path, "out: a b zzz\n\tx\n", files=("a", "b")) == (
        "Vinefile:1:10: source 'zzz' does not exist and no rule makes it\n"
        "out: a b zzz\n"
        "         ^")


def test_every_missing_source_is_reported_where_it_is_first_read(tmp_path):
    text = "out: inptu.txt b\n\tx\nx: out b c\n\tx\n"
    assert error(tmp_path, text, files=("input.txt",)) == (
        "Vinefile:1:6: source 'inptu.txt' does not exist and no rule makes it "
        "(did you mean 'input.txt'?)\n"
        "out: inptu.txt b\n"
        "     ^\n"
        "Vinefile:1:16: source 'b' does not exist and no rule makes it\n"
        "out: inptu.txt b\n"
        "               ^\n"
        "Vinefile:3:10: source 'c' does not exist and no rule makes it\n"
        "x: out b c\n"
        "         ^")


def test_missing_sources_past_twenty_are_counted_not_listed(tmp_path):
    text = "".join(f"o{i}: m{i}\n\tx\n" for i in range(25))
    lines = error(tmp_path, text).splitlines()
    assert [line for line in lines if line.startswith("Vinefile:")] == [
        f"Vinefile:{2 * i + 1}:{5 if i < 10 else 6}: source 'm{i}' does not exist and no rule "
        f"makes it" for i in range(20)]  # never "did you mean" the rule's own target
    assert lines[-1] == "... and 5 more missing sources"


def test_call_without_library(tmp_path):
    text = "@library model\n: model.py\n\tpython3 -m vinemake.library model.py\n" \
           "@call modle\nscore: \n\tevaluate\n"
    assert error(tmp_path, text, files=("model.py",)) == (
        "Vinefile:5:1: @call modle: no rule defines @library modle (did you mean 'model'?)\n"
        "score: \n"
        "^")


def test_library_defined_twice(tmp_path):
    text = "@library ml\n:\n\tserve\n@library ml\n:\n\tserve\n"
    assert error(tmp_path, text) == (
        "Vinefile:5:1: library 'ml' is defined twice: line 2 and line 5\n"
        ":\n"
        "^")


def test_absolute_target(tmp_path):
    assert error(tmp_path, "/tmp/out:\n\tx\n") == (
        "Vinefile:1:1: target '/tmp/out' is absolute: a rule's outputs must be inside the "
        "workflow directory\n"
        "/tmp/out:\n"
        "^")


def test_target_with_dotdot(tmp_path):
    assert error(tmp_path, "ok ../out:\n\tx\n") == (
        "Vinefile:1:4: target '../out' contains a '..' component: a rule's outputs must be "
        "inside the workflow directory\n"
        "ok ../out:\n"
        "   ^")


def test_absolute_and_dotdot_sources_are_read_as_written(tmp_path):
    # Issue 14 item 4: refused before ("sandbox name '/etc/hostname' is absolute"); Makeflow
    # runs them, and so does vinemake (core/outside.py).
    from vinemake.language.parser import parse_text

    (tmp_path / "wf").mkdir()
    (tmp_path / "shared.txt").write_text("")
    wf = parse_text("out: /etc/hostname ../shared.txt\n\tx\n", "Vinefile")
    graph = BuildGraph.build(wf, str(tmp_path / "wf"))
    assert graph.sources == {"/etc/hostname", "../shared.txt"}


def test_an_absolute_source_renamed_into_the_sandbox_is_still_checked(tmp_path):
    assert error(tmp_path, "out: /etc/hosts->/hosts\n\tx\n") == (
        "Vinefile:1:6: sandbox name '/hosts' is absolute: give the file a plain name "
        "inside the task, e.g. '/etc/hosts->hosts'\n"
        "out: /etc/hosts->/hosts\n"
        "     ^")


def test_sandbox_name_with_dotdot(tmp_path):
    assert error(tmp_path, "out: data->../x\n\tx\n", files=("data",)) == (
        "Vinefile:1:6: sandbox name '../x' contains a '..' component: give the file a plain "
        "name inside the task, e.g. 'data->x'\n"
        "out: data->../x\n"
        "     ^")


def test_sandbox_name_with_nul(tmp_path):
    wf = Workflow("Vinefile", (RuleSpec(0, (FileRef("o", "o\0x"),), (), "x",
                                        Location("Vinefile", 1, 1)),))
    with pytest.raises(VinefileError) as info:
        BuildGraph.build(wf, str(tmp_path))
    assert str(info.value) == ("Vinefile:1:1: sandbox name 'o\\x00x' contains a NUL "
                               "character: give the file a plain name inside the task, "
                               "e.g. 'o->ox'")


def test_a_bad_source_name_is_told_before_a_call_to_no_library(tmp_path):
    # Sources are checked while they are resolved (the targets were all plain): the first
    # error is still the one the rules' names give, before any about libraries.
    text = "a: in\n\tx\n@call nope\nb: a\n\tf\nc: a in->../x\n\tx\n"
    assert error(tmp_path, text, files=("in",)) == (
        "Vinefile:6:6: sandbox name '../x' contains a '..' component: give the file a plain "
        "name inside the task, e.g. 'in->x'\n"
        "c: a in->../x\n"
        "     ^")


def test_a_source_with_a_nul_in_its_name_is_checked_among_plain_ones(tmp_path):
    rules = (RuleSpec(0, (FileRef("a", "a"),), (), "x", Location("Vinefile", 1, 1)),
             RuleSpec(1, (FileRef("b", "b"),), (FileRef("a", "a"), FileRef("i\0", "i\0")),
                      "x", Location("Vinefile", 2, 1)))
    with pytest.raises(VinefileError) as info:
        BuildGraph.build(Workflow("Vinefile", rules), str(tmp_path))
    assert str(info.value) == ("Vinefile:2:1: sandbox name 'i\\x00' contains a NUL "
                               "character: give the file a plain name inside the task, "
                               "e.g. 'i\x00->i'")


def test_two_files_with_one_sandbox_name(tmp_path):
    assert error(tmp_path, "out: a->x b->x\n\tx\n", files=("a", "b")) == (
        "Vinefile:1:11: 'a' and 'b' would both be 'x' inside the task\n"
        "out: a->x b->x\n"
        "          ^")
    assert error(tmp_path, "x: in->x\n\tx\n", files=("in",)) == (
        "Vinefile:1:4: 'x' and 'in' would both be 'x' inside the task\n"
        "x: in->x\n"
        "   ^")


def test_one_file_listed_twice_under_its_own_name_is_fine(tmp_path):
    g = build(tmp_path, "out: a->x a->x\n\tx\n", files=("a",))
    assert g.sources == {"a"}


def test_dotted_names_that_are_not_dotdot_are_fine(tmp_path):
    g = build(tmp_path, "a..b .hidden: x..y->.y\n\tx\n", files=("x..y",))
    assert set(g.producer) == {"a..b", ".hidden"}


# --- selection ------------------------------------------------------------------------------


def test_select_keeps_what_the_targets_need(tmp_path):
    g = build(tmp_path, PIPELINE, files=("in.txt",)).select(["d.txt"])
    assert g.rule_ids == (0, 1, 2)
    assert g.order() == [0, 1, 2]
    assert g.dependents[2] == ()
    assert g.deps[3] == ()
    assert "e.txt" not in g.producer
    assert g.sources == {"in.txt"}
    assert g.terminal_outputs() == ["d.txt"]


def test_select_a_directory_of_outputs(tmp_path):
    g = build(tmp_path, "d/1:\n\tx\nd/2:\n\tx\nz:\n\tx\n").select(["d"])
    assert g.rule_ids == (0, 1)


def test_select_a_source_needs_nothing(tmp_path):
    g = build(tmp_path, PIPELINE, files=("in.txt",)).select(["in.txt"])
    assert g.rule_ids == ()
    assert g.order() == []


def test_select_unknown_target_suggests(tmp_path):
    g = build(tmp_path, PIPELINE, files=("in.txt",))
    with pytest.raises(InputError) as info:
        g.select(["d.tx"])
    assert str(info.value) == "unknown target 'd.tx' (did you mean 'd.txt'?)"
    with pytest.raises(InputError) as info:
        g.select(["nothing-like-it"])
    assert str(info.value) == "unknown target 'nothing-like-it'"


# --- export ---------------------------------------------------------------------------------


def test_export_json(tmp_path):
    g = build(tmp_path, "a: in\n\tcp in a\nb: a\n\tcp a b\n", files=("in",))
    data = json.loads(g.export("json"))
    assert {n["id"] for n in data["nodes"]} == {"rule:0", "rule:1", "file:in", "file:a",
                                                  "file:b"}
    assert {(e["from"], e["to"]) for e in data["edges"]} == {
        ("file:in", "rule:0"), ("rule:0", "file:a"), ("file:a", "rule:1"),
        ("rule:1", "file:b")}
    rule1 = next(n for n in data["nodes"] if n["id"] == "rule:1")
    assert rule1 == {"id": "rule:1", "kind": "rule", "rule": 1, "line": 3,
                     "command": "cp a b", "category": "default"}
    file_a = next(n for n in data["nodes"] if n["id"] == "file:a")
    assert file_a == {"id": "file:a", "kind": "file", "path": "a", "producer": 0}


def test_export_dot(tmp_path):
    g = build(tmp_path, "a: in\n\tcp in a\n", files=("in",))
    dot = g.export("dot")
    assert dot.startswith("digraph vinemake {\n")
    assert '  "file:in" -> "rule0";\n' in dot
    assert '  "rule0" -> "file:a";\n' in dot
    assert '"rule0" [shape=box, label="line 1: cp in a"];' in dot


def test_export_dot_quotes_labels(tmp_path):
    g = build(tmp_path, 'café: in\n\techo "hi" > café\n', files=("in",))
    assert '"rule0" [shape=box, label="line 1: echo \\"hi\\" > café"];' in g.export("dot")
    assert '"rule0" -> "file:café";' in g.export("dot")


def test_export_mermaid(tmp_path):
    g = build(tmp_path, "a: in\n\tsort < in > a\n", files=("in",))
    assert g.export("mermaid").splitlines() == [
        "flowchart LR", '  r0["line 1: sort #lt; in #gt; a"]', '  f0(["a"])', '  f1(["in"])',
        "  r0 --> f0", "  f1 --> r0"]


def test_export_unknown_format(tmp_path):
    with pytest.raises(InputError, match="unknown graph format 'svg' "):
        build(tmp_path, "a:\n\tx\n").export("svg")


def test_networkx_graph_has_file_and_rule_nodes(tmp_path):
    g = build(tmp_path, "d/1:\n\tx\nall: d\n\tx\n").to_networkx()
    assert nx.is_directed_acyclic_graph(g)
    assert list(nx.topological_sort(g)) == [("rule", 0), ("file", "d/1"), ("file", "d"),
                                            ("rule", 1), ("file", "all")]


def test_a_wide_fan_in_builds(tmp_path):
    n = 20_000
    rules = [RuleSpec(i, (FileRef(f"p{i}", f"p{i}"),), (), "x", Location("V", i + 1, 1))
             for i in range(n)]
    rules.append(RuleSpec(n, (FileRef("all", "all"),),
                          tuple(FileRef(f"p{i}", f"p{i}") for i in range(n)), "cat",
                          Location("V", n + 1, 1)))
    g = BuildGraph.build(Workflow("V", tuple(rules)), str(tmp_path))
    assert g.deps[n] == tuple(range(n))
    assert g.order()[-1] == n
    assert g.dependents[5] == (n,)


def test_dry_run_text_shows_every_resource_a_rule_asks_for():
    from vinemake.face.listing import dry_run_text
    from vinemake.language.parser import parse_text
    wf = parse_text("CORES=2\n.MAKEFLOW MPI_PROCESSES 8\nout:\nWALL_TIME=1m\n\ttouch out\n",
                    "Vinefile", environ={})
    text = dry_run_text(BuildGraph.build(wf, "."))
    assert "cores=2 wall=60s mpi_processes=8" in text


def test_a_target_listed_twice_in_one_rule_is_reported_at_the_second(tmp_path):
    assert error(tmp_path, "o o:\n\ttouch o\n") == (
        "Vinefile:1:3: 'o' is a target of this rule twice\n"
        "o o:\n"
        "  ^")
    assert error(tmp_path, "a o ./o: \n\ttouch a o\n") == (
        "Vinefile:1:5: 'o' is a target of this rule twice\n"
        "a o ./o: \n"
        "    ^")


@pytest.mark.parametrize("target", [".vinemake/journal", ".vinemake", "./.vinemake/x/y"])
def test_a_target_inside_the_state_directory_is_refused(tmp_path, target):
    text = f"ok: \n\ttrue\nout {target}:\n\tdate > {target}\n"
    assert error(tmp_path, text) == (
        f"Vinefile:3:5: target '{target}' is inside .vinemake/, where vinemake keeps its own "
        "state: a rule's outputs must be elsewhere\n"
        f"out {target}:\n"
        "    ^")


# --- the parser's links ---------------------------------------------------------------------

LINKED_RULES = ["o1: s\n\tc\n", "o2: o1 s\n\tc\n", "o3: o1 o2\n\tc\n", "o4: o9\n\tc\n",
                "o9: o1\n\tc\n", "o5: o5\n\tc\n", "o6 o6: s\n\tc\n", "o7: ./o1\n\tc\n",
                "d/o8: s\n\tc\n", "d: s\n\tc\n", "o15: d\n\tc\n", ".v: s\n\tc\n",
                "o10: o1 o1\n\tc\n", "o11 o12: o2 o3 s\n\tc\n", ": o1\n\tc\n", "X=1\n",
                "@temp\no13: o1\n\tc\n", "o14: o2 -> x\n\tc\n", "o16: o3\n\tLOCAL c\n",
                "export X\n", "o17: o2 o1 o3\n\tc\n"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(LINKED_RULES), max_size=12).map("".join))
def test_the_parsers_links_make_the_graph_it_would_work_out_itself(text):
    try:
        workflow = parse_text(text, "Vinefile", environ={})
    except VinefileError:
        return
    try:
        unlinked = BuildGraph.build(dataclasses.replace(workflow, links=None), "/",
                                    exists=lambda path: True)
    except VinefileError:
        assert workflow.links is None  # a duplicate, a cycle...: no links, the same error
        return
    linked = BuildGraph.build(workflow, "/", exists=lambda path: True)

    def view(g: BuildGraph):
        return (g.rule_ids, g.deps, g.producer, g.sources, g.dir_members, g.order(),
                g.dependents)

    assert view(linked) == view(unlinked)


def test_a_workflow_of_plain_rules_comes_with_its_links():
    workflow = parse_text("a: s t\n\tc\nb: a s\n\tc\n: b a\n\tc\n", "Vinefile", environ={})
    assert workflow.links is not None and workflow.links.rules is workflow.rules
    assert (workflow.links.producer, workflow.links.deps, workflow.links.sources) == (
        {"a": 0, "b": 1}, [(), (0,), (0, 1)], {"s", "t"})
    graph = BuildGraph.build(workflow, "/", exists=lambda path: True)
    assert (graph.deps, graph.dependents, graph.sources) == ([(), (0,), (0, 1)],
                                                            [(1, 2), (2,), ()], {"s", "t"})
