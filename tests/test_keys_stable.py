"""Provenance keys stay byte-identical across changes to how they are computed.

A changed key reruns every user's workflow, so the keys of the workflows in tests/cases and
of seeded random DAGs were recorded (as digests of every rule and file key, and a few keys in
full) from the code before keys.py was made faster; any change to them fails here.
"""

import os
import random

import pytest

from vinemake.common.hashing import digest, source_key
from vinemake.core.graph import BuildGraph
from vinemake.core.keys import compute_keys
from vinemake.language.parser import parse_text

CASES = os.path.join(os.path.dirname(__file__), "cases")


def keys_digest(text: str) -> str:
    """One digest over every rule key (with its parts, inputs, outputs) and file key."""
    wf = parse_text(text, "Vinefile", environ={})
    graph = BuildGraph.build(wf, ".", exists=lambda p: True, listdir=lambda p: [])
    sources = {p: source_key(digest(p.encode())) for p in graph.sources}
    order = [wf.rules[rid] for rid in graph.order()]
    libs = [r for r in wf.rules if r.library and r.id not in set(graph.rule_ids)]
    keys = compute_keys(order + libs, sources, dir_members=graph.dir_members)
    lines = [repr((rid, rk.key, rk.parts, rk.inputs, tuple(rk.outputs)))
             for rid, rk in sorted(keys.rules.items())]
    lines += [repr(item) for item in sorted(keys.files.items())]
    return digest("\n".join(lines).encode())


def random_dag(n: int, seed: int) -> str:
    """n rules, each reading two earlier outputs; some with env, cores, sandbox names, LOCAL."""
    rng = random.Random(seed)

    def name(j: int) -> str:
        return f"d/o{j}" if j % 3 == 0 else f"o{j}"

    out = ["CORES=1\n"]
    for i in range(n):
        a, b = ("s0", "s1") if i < 2 else (name(rng.randrange(i)), name(rng.randrange(i)))
        if i % 7 == 3:
            out.append(f".MAKEFLOW CATEGORY c{i % 3}\nCORES={1 + i % 4}\nexport X{i % 5}=v{i}\n")
        spaced = "  " if i % 11 == 0 else " "
        local = "LOCAL " if i % 13 == 0 else ""
        if i % 5 == 0:
            out.append(f"{name(i)}->t{i} u{i}: {a}->x {b}\n\t{local}cat x{spaced}{b} > t{i}\n")
        else:
            out.append(f"{name(i)}: {a} {b}\n\t{local}cat {a}{spaced}{b} > {name(i)}\n")
    return "".join(out)


RECORDED_CASES = {  # the cases that parse without an environment
    "01-hello": "68b45ea34ef0a688823710a11d22bc63",
    "02-command-lines": "e5c720ce0707f8ed8bafc0c930757bcf",
    "03-continuation": "b0e2dd49b7489cad437c6edb2aeafce6",
    "04-empty-sides": "2023e92aab4c32f160849909aa69b83c",
    "05-rule-local": "cd102dc1be3dea2e1c628fe8c99e71ac",
    "06-sandbox-names": "0dd79c9201e9e11fe5d37e4e7af0b952",
    "07-quoted-files": "c6ac4a3fa67e5c06fa40f3b209b3be6c",
    "08-directories": "2df0a431e132a895ac98cc30b0a4e5f7",
    "09-prefixes": "b8a812a1bb00f950fc3e98a226b3994e",
    "10-assignments": "80d5fa8a269c8db2973bf9a0bce0493b",
    "11-expansion": "0338ad46b21ffcbe04f7e1808cbec2e6",
    "13-quoting": "9979701358d5fcd6f4402b81deb55eab",
    "14-export": "b505bb83e42927ee3f78f857f0258dd7",
    "15-categories": "a68b73c182dbbc52c9eff48245907afc",
    "16-resources": "1bba73c21e0ac8b3fd0da6eb0dceca35",
    "17-inputs-outputs": "1fe0e28897c83609a58718ad929a0f19",
    "18-directives": "8a4d7220714355b7b6fe3f184b921d2a",
    "19-annotations": "c772ba685c23e077864cbb4b6c0c59fe",
    "20-library": "1ffece052680711f2791a265bab32d9f",
}

RECORDED_DAGS = {
    1: "8e124a569eab73c5858ab24d1823306e",
    2: "1f565eb4994c69da94c7485dfc3a9bf6",
    3: "5dd9b302dee14b20c9ff47d875296292",
}


@pytest.mark.parametrize("case", sorted(RECORDED_CASES))
def test_case_keys_are_unchanged(case):
    with open(os.path.join(CASES, case, "Vinefile"), encoding="utf-8") as f:
        assert keys_digest(f.read()) == RECORDED_CASES[case]


@pytest.mark.parametrize("seed", sorted(RECORDED_DAGS))
def test_random_dag_keys_are_unchanged(seed):
    assert keys_digest(random_dag(300, seed)) == RECORDED_DAGS[seed]
