"""The same workflow written as a Vinefile and as JX gives the same DAG and the same keys."""

from __future__ import annotations

import json
import os

import pytest

from vinemake.core.graph import BuildGraph
from vinemake.face.run import prepare
from vinemake.language.jxworkflow import parse_jx_workflow
from vinemake.language.parser import parse_text

T = "\t"

PAIRS = {
    "a chain with a source": (
        f"words.txt: input.txt\n{T}tr a-z A-Z < input.txt > words.txt\n"
        f"count.txt: words.txt\n{T}wc -l < words.txt > count.txt\n",
        """{"rules": [
            {"command": "tr a-z A-Z < input.txt > words.txt",
             "inputs": ["input.txt"], "outputs": ["words.txt"]},
            {"command": "wc -l < words.txt > count.txt",
             "inputs": ["words.txt"], "outputs": ["count.txt"]}
        ]}""",
    ),
    "a comprehension and a gather": (
        "".join(f"out.{n}.txt: input.txt\n{T}echo {n} | cat - input.txt > out.{n}.txt\n"
                for n in range(1, 4))
        + f"all.txt: out.1.txt out.2.txt out.3.txt\n{T}cat out.1.txt out.2.txt out.3.txt"
          " > all.txt\n",
        """{
            "define": {"N": range(1, 4), "FILES": ["out." + n + ".txt" for n in N]},
            "rules": [
                {"command": format("echo %d | cat - input.txt > out.%d.txt", n, n),
                 "inputs": ["input.txt"], "outputs": ["out." + n + ".txt"]} for n in N,
                {"command": "cat " + join(FILES) + " > all.txt",
                 "inputs": FILES, "outputs": ["all.txt"]}
            ]
        }""",
    ),
    "categories and their resources": (
        "MEMORY=100\n"
        f"small.txt:\n{T}echo small > small.txt\n"
        "CATEGORY=big\nCORES=2\nMEMORY=2000\nDISK=500\nGPUS=1\nWALL_TIME=60\nMPI_PROCESSES=2\n"
        f"big.1:\n{T}echo 1 > big.1\nbig.2:\n{T}echo 2 > big.2\n",
        """{
            "categories": {
                "default": {"resources": {"memory": 100}},
                "big": {"resources": {"cores": 2, "memory": 2000, "disk": 500, "gpus": 1,
                                      "wall-time": 60, "mpi-processes": 2}}
            },
            "rules": [
                {"command": "echo small > small.txt", "outputs": ["small.txt"]},
                {"command": "echo " + i + " > big." + i, "outputs": ["big." + i],
                 "category": "big"} for i in range(1, 3)
            ]
        }""",
    ),
    "a default category named by the workflow": (
        f"CATEGORY=align\nCORES=4\nMEMORY=1GB\na.bam: input.txt\n{T}cp input.txt a.bam\n"
        f"b.bam: input.txt\n{T}cp input.txt b.bam\n",
        """{
            "default_category": "align",
            "categories": {"align": {"resources": {"cores": 4, "memory": "1GB"}}},
            "rules": [{"command": "cp input.txt " + s + ".bam", "inputs": ["input.txt"],
                       "outputs": [s + ".bam"]} for s in ["a", "b"]]
        }""",
    ),
    "a rule's own resources": (
        f"a:\n{T}touch a\n@resources cores=3 memory=2GB\nb: a\n{T}cp a b\n",
        """{"rules": [
            {"command": "touch a", "outputs": ["a"]},
            {"command": "cp a b", "inputs": ["a"], "outputs": ["b"],
             "resources": {"cores": 3, "memory": "2GB"}}
        ]}""",
    ),
    "a local job": (
        f"stamp:\n{T}LOCAL date > stamp\nwork: stamp\n{T}cat stamp > work\n",
        """{"rules": [
            {"command": "date > stamp", "outputs": ["stamp"], "local_job": true},
            {"command": "cat stamp > work", "inputs": ["stamp"], "outputs": ["work"],
             "local_job": false}
        ]}""",
    ),
    "environments: the workflow's, a category's and a rule's": (
        "export GREETING=hello\nexport WHO\nWHO=world\nexport LEVEL\n"
        f"one:\n{T}printenv GREETING WHO > one\n"
        f"two:\nWHO=you\n{T}printenv GREETING WHO > two\n"
        "CATEGORY=loud\nLEVEL=11\n"
        f"three:\n{T}printenv LEVEL > three\n",
        """{
            "environment": {"GREETING": "hello", "WHO": "world"},
            "categories": {"loud": {"environment": {"LEVEL": "11"}}},
            "rules": [
                {"command": "printenv GREETING WHO > one", "outputs": ["one"]},
                {"command": "printenv GREETING WHO > two", "outputs": ["two"],
                 "environment": {"WHO": "you"}},
                {"command": "printenv LEVEL > three", "outputs": ["three"], "category": "loud"}
            ]
        }""",
    ),
    "sandbox names on both sides": (
        f"result.txt->out.txt: data/input.txt->in.txt\n{T}sort in.txt > out.txt\n",
        """{"rules": [
            {"command": "sort in.txt > out.txt",
             "inputs": [{"dag_name": "data/input.txt", "task_name": "in.txt"}],
             "outputs": [{"dag_name": "result.txt", "task_name": "out.txt"}]}
        ]}""",
    ),
    "nested comprehensions with a condition": (
        "".join(f"p.{i}.{j}:\n{T}echo {i} {j} > p.{i}.{j}\n"
                for i in range(3) for j in range(3) if (i + j) % 2 == 0),
        """{"rules": [
            {"command": template("echo {i} {j} > p.{i}.{j}"), "outputs": ["p." + i + "." + j]}
            for i in range(3) for j in range(3) if (i + j) % 2 == 0
        ]}""",
    ),
    # The shape of cctools' makeflow/benchmark/master.jx: define after the rules, templates,
    # two for clauses in one comprehension, a comprehension in the inputs.
    "define after the rules, templates and two for clauses": (
        "".join(f"perf{p}-{x}.dat: input.txt\n{T}echo scale={x} > perf{p}-{x}.dat\n"
                for x in (10, 100) for p in ("", "_r"))
        + "".join(f"perf{p}.dat: perf{p}-10.dat perf{p}-100.dat\n"
                  f"{T}cat perf{p}-10.dat perf{p}-100.dat > perf{p}.dat\n" for p in ("", "_r")),
        """{
            "rules": [
                {"command": template("echo scale={x} > perf{p}-{x}.dat"),
                 "inputs": ["input.txt"], "outputs": [template("perf{p}-{x}.dat")]}
                for x in SCALES for p in modes,
                {"command": "cat " + join([template("perf{p}-{x}.dat") for x in SCALES])
                            + template(" > perf{p}.dat"),
                 "inputs": [template("perf{p}-{x}.dat") for x in SCALES],
                 "outputs": [template("perf{p}.dat")]} for p in modes
            ],
            "define": {"SCALES": [10, 100], "modes": ["", "_r"]}
        }""",
    ),
}


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "input.txt").write_text("a b c\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "input.txt").write_text("3\n1\n2\n")
    return tmp_path


def _shape(workflow, root):
    """What the engine sees: each rule in order with its files, command, environment,
    category, resources and kind; the graph; and every key."""
    graph = BuildGraph.build(workflow, root)
    prep = prepare(workflow, graph, root, save=False)
    rules = [(r.id, r.targets, r.sources, r.command, r.env, r.category, r.resources, r.local,
              r.subworkflow) for r in workflow.rules]
    exported = json.loads(graph.export("json"))
    for node in exported["nodes"]:
        node.pop("line", None)
    keys = {rid: key.key for rid, key in prep.keys.rules.items()}
    outputs = {rid: key.outputs for rid, key in prep.keys.rules.items()}
    return rules, exported, keys, outputs


@pytest.mark.parametrize("name", PAIRS)
def test_vinefile_and_jx_make_the_same_dag_and_keys(name, project):
    vinefile, jx = PAIRS[name]
    environ = {"PATH": os.environ.get("PATH", "")}
    from_vinefile = parse_text(vinefile, "Vinefile", environ)
    from_jx = parse_jx_workflow(jx, "workflow.jx", environ=environ)
    assert len(from_jx.rules) == len(from_vinefile.rules) > 0
    assert _shape(from_jx, str(project)) == _shape(from_vinefile, str(project))


def test_the_same_keys_mean_a_workflow_built_one_way_is_current_the_other_way(project):
    # Keys are the proof: the rule keys of both readings are equal strings, so what one
    # built the other finds up to date (the end-to-end tests run it).
    vinefile, jx = PAIRS["a comprehension and a gather"]
    a = _shape(parse_text(vinefile, "Vinefile", {}), str(project))[2]
    b = _shape(parse_jx_workflow(jx, "w.jx", environ={}), str(project))[2]
    assert a == b and len(set(a.values())) == 4
