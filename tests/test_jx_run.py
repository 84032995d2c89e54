"""JX workflows end to end through the real `vinemake`: built, then a second run doing nothing.

The workflows are the shapes cctools' JX tutorial walks through (hello world, a define, many
simulations from one rule, a gather, categories, a nested workflow), written anew here.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HELLO = '{"rules": [{"command": "/bin/echo hello world > output.txt", "outputs": ["output.txt"],'\
        ' "inputs": []}]}'

GATHER = """\
# Run a simulation per parameter, then gather the results.
{
    "define" : {
        "RANGE"    : range(1, 4),
        "FILELIST" : [ "output." + N + ".txt" for N in RANGE ],
    },
    "categories" : {
        "simulate" : { "resources" : { "cores" : 1, "memory" : 64, "disk" : 64 } },
        "collect"  : { "resources" : { "cores" : 1, "memory" : 32, "disk" : 64 } },
    },
    "rules" : [
        {
            "command"  : "python3 simulate.py --parameter " + N + " > output." + N + ".txt",
            "inputs"   : [ "simulate.py" ],
            "outputs"  : [ "output." + N + ".txt" ],
            "category" : "simulate",
        } for N in RANGE,
        {
            "command"  : "/bin/cat " + join(FILELIST, " ") + " > output.all.txt",
            "inputs"   : FILELIST,
            "outputs"  : [ "output.all.txt" ],
            "category" : "collect",
        },
    ],
}
"""

SIMULATE = "import sys\nprint('simulated', sys.argv[2])\n"


def vinemake(root, *args, check=True):
    proc = subprocess.run([sys.executable, "-m", "vinemake", *args], cwd=root,
                          capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def started(proc) -> list[str]:
    return sorted(line.split()[-1] for line in proc.stderr.splitlines() if " start " in line)


def test_hello_world(tmp_path):
    (tmp_path / "hello-world.jx").write_text(HELLO)
    vinemake(tmp_path, "--jx", "hello-world.jx")
    assert (tmp_path / "output.txt").read_text() == "hello world\n"
    assert vinemake(tmp_path, "--jx", "hello-world.jx").stderr == \
        "vinemake: nothing to do, 1 rule up to date\n"


def test_gather_builds_then_does_nothing_then_cleans(tmp_path):
    (tmp_path / "gather.jx").write_text(GATHER)
    (tmp_path / "simulate.py").write_text(SIMULATE)
    first = vinemake(tmp_path, "gather.jx")
    assert started(first) == ["output.1.txt", "output.2.txt", "output.3.txt", "output.all.txt"]
    assert (tmp_path / "output.all.txt").read_text() == \
        "simulated 1\nsimulated 2\nsimulated 3\n"
    assert vinemake(tmp_path, "gather.jx").stderr == \
        "vinemake: nothing to do, 4 rules up to date\n"
    # Only the rule whose input changed, and what needs it, run again.
    (tmp_path / "simulate.py").write_text(SIMULATE.replace("simulated", "ran"))
    assert len(started(vinemake(tmp_path, "gather.jx"))) == 4
    vinemake(tmp_path, "--clean=all", "gather.jx")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == \
        ["gather.jx", "simulate.py"]


def test_dry_run_and_graph_read_jx(tmp_path):
    (tmp_path / "gather.jx").write_text(GATHER)
    (tmp_path / "simulate.py").write_text(SIMULATE)
    dry = vinemake(tmp_path, "-n", "gather.jx")
    assert "python3 simulate.py --parameter 2 > output.2.txt" in dry.stdout
    graph = json.loads(vinemake(tmp_path, "--graph", "json", "gather.jx").stdout)
    assert sum(node["kind"] == "rule" for node in graph["nodes"]) == 4
    check = vinemake(tmp_path, "--check", "gather.jx")
    assert check.returncode == 0
    assert not (tmp_path / "output.1.txt").exists()


def test_the_command_line_overrides_a_define(tmp_path):
    (tmp_path / "gather.jx").write_text(GATHER)
    (tmp_path / "simulate.py").write_text(SIMULATE)
    first = vinemake(tmp_path, "gather.jx", "--jx-define", "RANGE=[7, 8]")
    assert started(first) == ["output.7.txt", "output.8.txt", "output.all.txt"]
    assert (tmp_path / "output.all.txt").read_text() == "simulated 7\nsimulated 8\n"
    # The same definitions from a file: nothing to do; other ones: the gather runs again.
    (tmp_path / "args.jx").write_text('{"RANGE": [7] + [8]}')
    assert vinemake(tmp_path, "gather.jx", "--jx-args", "args.jx").stderr == \
        "vinemake: nothing to do, 3 rules up to date\n"
    (tmp_path / "args.jx").write_text('{"RANGE": range(7, 10)}')
    assert started(vinemake(tmp_path, "gather.jx", "--jx-args", "args.jx")) == \
        ["output.9.txt", "output.all.txt"]


def test_a_define_uses_another_and_the_command_line_sets_one(tmp_path):
    (tmp_path / "wf.jx").write_text("""{
        "define": {"NAME": "world", "MESSAGE": "hello " + NAME},
        "rules": [{"command": "echo " + MESSAGE + " > out.txt", "outputs": ["out.txt"]}]
    }""")
    vinemake(tmp_path, "wf.jx")
    assert (tmp_path / "out.txt").read_text() == "hello world\n"
    vinemake(tmp_path, "wf.jx", "--jx-define", 'NAME="you"')
    assert (tmp_path / "out.txt").read_text() == "hello you\n"


def test_an_older_style_workflow_with_let_comments_and_a_context_file(tmp_path):
    # The shape of cctools' makeflow/example: let() bindings, "comment" keys, names from a
    # --jx-args context file.
    (tmp_path / "context.jx").write_text('{"TOOL": "/bin/echo", "ANGLES": range(90, 361, 90),}')
    (tmp_path / "example.jx").write_text("""let({"SOURCE": "picture.txt"}, {
        "comment": ["Make a picture, four turns of it, then one montage."],
        "environment": {"SHOW": "/bin/cat"},
        "rules": [
            {"command": "$SHOW " + join([format("turn.%d.txt", a) for a in ANGLES])
                        + " > montage.txt",
             "outputs": ["montage.txt"],
             "inputs": [format("turn.%d.txt", a) for a in ANGLES]},
            {"command": format("%s turned %d > turn.%d.txt", TOOL, a, a),
             "outputs": [format("turn.%d.txt", a)], "inputs": [SOURCE]} for a in ANGLES,
            let({"WORDS": "a picture"}, {
                "command": TOOL + " " + WORDS + " > " + SOURCE,
                "outputs": [SOURCE],
                "comment": "local_job runs it on this machine",
                "local_job": true})
        ]
    })""")
    first = vinemake(tmp_path, "--jx", "example.jx", "--jx-args", "context.jx")
    assert len(started(first)) == 6
    assert (tmp_path / "montage.txt").read_text() == \
        "turned 90\nturned 180\nturned 270\nturned 360\n"
    assert vinemake(tmp_path, "--jx", "example.jx", "--jx-args", "context.jx").stderr == \
        "vinemake: nothing to do, 6 rules up to date\n"


def test_plain_json_by_name_and_by_flag(tmp_path):
    (tmp_path / "wf.json").write_text(HELLO)
    vinemake(tmp_path, "wf.json")
    assert (tmp_path / "output.txt").read_text() == "hello world\n"
    (tmp_path / "Makeflow.data").write_text(HELLO.replace("output.txt", "other.txt"))
    vinemake(tmp_path, "--json", "Makeflow.data")
    assert (tmp_path / "other.txt").exists()
    (tmp_path / "expr.json").write_text('{"rules": [{"command": "echo " + 1}]}')
    proc = vinemake(tmp_path, "expr.json", check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("expr.json:1:24: a --json workflow is plain JSON")


def test_environment_resources_local_jobs_and_sandbox_names(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "numbers.txt").write_text("3\n1\n2\n")
    (tmp_path / "wf.jx").write_text("""{
        "environment": {"GREETING": "hello", "FROM_OUTSIDE": null},
        "categories": {"sort": {"resources": {"cores": 1, "memory": "64MB"},
                                "environment": {"ORDER": "-n"}}},
        "rules": [
            {"command": "sort $ORDER in.txt > out.txt; printenv CORES MEMORY >> out.txt",
             "inputs": [{"dag_name": "data/numbers.txt", "task_name": "in.txt"}],
             "outputs": [{"dag_name": "sorted.txt", "task_name": "out.txt"}],
             "category": "sort"},
            {"command": "echo $GREETING $FROM_OUTSIDE $CATEGORY > greeting.txt",
             "outputs": ["greeting.txt"], "local_job": true}
        ]
    }""")
    proc = subprocess.run([sys.executable, "-m", "vinemake", "wf.jx"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "FROM_OUTSIDE": "outside"})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "sorted.txt").read_text() == "1\n2\n3\n1\n64\n"
    assert (tmp_path / "greeting.txt").read_text() == "hello outside default\n"


def test_a_nested_workflow_gets_its_args(tmp_path):
    (tmp_path / "main.jx").write_text("""{
        "rules": [
            {"command": "echo hello world > common.txt", "outputs": ["common.txt"]},
            {"workflow": "nested.jx", "args": {"my_var": N},
             "inputs": ["common.txt"], "outputs": ["output." + N]} for N in range(2)
        ]
    }""")
    (tmp_path / "nested.jx").write_text("""{
        "rules": [{"command": format("cat common.txt > output.%d", my_var),
                   "inputs": ["common.txt"], "outputs": ["output." + my_var]}]
    }""")
    first = vinemake(tmp_path, "main.jx")
    assert started(first) == ["common.txt", "output.0", "output.1"]
    assert (tmp_path / "output.1").read_text() == "hello world\n"
    assert vinemake(tmp_path, "main.jx").stderr == "vinemake: nothing to do, 3 rules up to date\n"


def test_listdir_sees_a_new_file_on_the_next_run(tmp_path):
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "a.txt").write_text("a\n")
    (tmp_path / "wf.jx").write_text("""{
        "rules": [{"command": "wc -c < inputs/" + f + " > counts/" + f,
                   "inputs": ["inputs/" + f], "outputs": ["counts/" + f]}
                  for f in listdir("inputs")]
    }""")
    assert started(vinemake(tmp_path, "wf.jx")) == ["counts/a.txt"]
    (tmp_path / "inputs" / "b.txt").write_text("bb\n")
    assert started(vinemake(tmp_path, "wf.jx")) == ["counts/b.txt"]
    assert (tmp_path / "counts" / "b.txt").read_text().strip() == "3"


@pytest.mark.parametrize("order", ["vinefile first", "jx first"])
def test_a_workflow_built_in_one_language_is_up_to_date_in_the_other(tmp_path, order):
    (tmp_path / "in.txt").write_text("x\n")
    (tmp_path / "Vinefile").write_text("a.txt: in.txt\n\tcat in.txt in.txt > a.txt\n"
                                       "b.txt: a.txt\n\twc -l < a.txt > b.txt\n")
    (tmp_path / "wf.jx").write_text(
        '{"rules": [{"command": "cat in.txt in.txt > a.txt", "inputs": ["in.txt"], '
        '"outputs": ["a.txt"]}, {"command": "wc -l < a.txt > b.txt", "inputs": ["a.txt"], '
        '"outputs": ["b.txt"]}]}')
    first, second = ("Vinefile", "wf.jx") if order == "vinefile first" else ("wf.jx", "Vinefile")
    assert started(vinemake(tmp_path, first)) == ["a.txt", "b.txt"]
    assert started(vinemake(tmp_path, second)) == []


def test_conflicting_language_flags_are_refused_with_exit_2(tmp_path):
    (tmp_path / "wf.jx").write_text(HELLO)
    both = vinemake(tmp_path, "--jx", "--json", "wf.jx", check=False)
    assert (both.returncode, both.stderr) == (
        2, "vinemake: --jx and --json cannot be combined (--jx reads JSON too)\n")
    args = vinemake(tmp_path, "--json", "--jx-args", "a.jx", "wf.jx", check=False)
    assert (args.returncode, args.stderr) == (
        2, "vinemake: --jx-args and --jx-define need --jx (a --json workflow is plain JSON)\n")
    define = vinemake(tmp_path, "wf.jx", "--jx-define", "N", check=False)
    assert (define.returncode, define.stderr) == (
        2, "vinemake: --jx-define N: expected NAME=EXPRESSION\n")
    assert not (tmp_path / "output.txt").exists()


def test_environments_reach_a_rule_without_outputs(tmp_path):
    # The shape of cctools' makeflow/test/jx/env.jx: a last rule that only checks.
    (tmp_path / "env.jx").write_text("""{
        "environment": {"A": "a", "B": "b"},
        "rules": [
            {"command": "echo $A > A", "outputs": ["A"]},
            {"command": "echo $B > B", "outputs": ["B"], "environment": {"B": "x"}},
            {"inputs": ["A", "B"], "command": "[ \\"$A\\" = $(cat A) ] && [ x = $(cat B) ]"}
        ]
    }""")
    vinemake(tmp_path, "--jx", "env.jx")
    assert (tmp_path / "B").read_text() == "x\n"
    (tmp_path / "bad.jx").write_text((tmp_path / "env.jx").read_text().replace('"x"', '"y"'))
    assert vinemake(tmp_path, "--jx", "bad.jx", check=False).returncode == 1


def test_files_in_the_older_path_and_execution_path_form(tmp_path):
    (tmp_path / "files.jx").write_text("""{"rules": [
        {"command": "echo A > A", "outputs": ["A"]},
        {"command": "cat in > out && echo B >> out", "inputs": [{"path": "A",
         "execution_path": "in"}], "outputs": [{"path": "B", "execution_path": "out"}]}
    ]}""")
    vinemake(tmp_path, "files.jx")
    assert (tmp_path / "B").read_text() == "A\nB\n"


def test_ten_nested_workflows_then_clean(tmp_path):
    # The shape of cctools' TR_makeflow_050_sub_workflow_jx_for.sh.
    (tmp_path / "nested.jx").write_text("""{"rules": [
        {"workflow": "nested2.jx", "args": {"nested_var": n}, "outputs": ["output." + n]}
        for n in range(10)]}""")
    (tmp_path / "nested2.jx").write_text("""{"rules": [
        {"command": format("echo %d > output.%d", nested_var, nested_var),
         "outputs": ["output." + nested_var]}]}""")
    vinemake(tmp_path, "--jx", "nested.jx")
    assert (tmp_path / "output.9").read_text() == "9\n"
    vinemake(tmp_path, "--jx", "nested.jx", "--clean=all")
    assert not any((tmp_path / f"output.{n}").exists() for n in range(10))
