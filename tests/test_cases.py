"""Tiny numbered Vinefile projects: each folder's Vinefile must parse to its expected.json.

expected.json holds either {"error": full error text} or {"rules": [...]} with, per rule in
file order: line, targets and sources as [path, sandbox] pairs, command, env, category, the
resources that are set, and the flags that differ from a plain rule; plus "workflow" for
inputs, outputs, sizes and categories when the file sets them, and "environ" for the process
environment the case runs with. tests/test_workflows_run.py runs each of them for real.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path

import pytest

from vinemake.common.errors import VinefileError
from vinemake.common.spec import RuleSpec, Workflow
from vinemake.language.parser import parse_file

CASES = sorted(p for p in (Path(__file__).parent / "cases").iterdir() if p.is_dir())
_FLAGS = ("retries", "temp", "cache_forever", "library", "library_slots", "call", "local",
          "subworkflow", "batch_options")


def _set(obj) -> dict:
    return {k: v for k, v in asdict(obj).items() if v is not None}


def render_rule(rule: RuleSpec) -> dict:
    default = {f.name: f.default for f in fields(RuleSpec) if f.name in _FLAGS}
    return {
        "line": rule.location.line,
        "targets": [[f.path, f.sandbox] for f in rule.targets],
        "sources": [[f.path, f.sandbox] for f in rule.sources],
        "command": rule.command,
        "env": dict(rule.env),
        "category": rule.category,
        "resources": _set(rule.resources),
        "flags": {k: getattr(rule, k) for k in _FLAGS if getattr(rule, k) != default[k]},
    }


def render(workflow: Workflow) -> dict:
    out: dict = {"rules": [render_rule(r) for r in workflow.rules]}
    extra = {
        "inputs": list(workflow.inputs) if workflow.inputs is not None else None,
        "outputs": list(workflow.outputs) if workflow.outputs is not None else None,
        "sizes": [list(s) for s in workflow.sizes] or None,
        "categories": {c.name: {"resources": _set(c.resources), "mode": c.mode,
                                "batch_options": c.batch_options}
                       for c in workflow.categories
                       if c.name != "default" or c.mode or c.batch_options or _set(c.resources)}
        or None,
    }
    extra = {k: v for k, v in extra.items() if v is not None}
    if extra:
        out["workflow"] = extra
    return out


def run_case(folder: Path) -> dict:
    expected = json.loads((folder / "expected.json").read_text())
    try:
        return render(parse_file("Vinefile", environ=expected.get("environ", {})))
    except VinefileError as e:
        return {"error": str(e)}


def test_there_are_cases():
    assert len(CASES) >= 20


@pytest.mark.parametrize("folder", CASES, ids=[c.name for c in CASES])
def test_case(folder: Path, monkeypatch):
    monkeypatch.chdir(folder)  # errors and locations name "Vinefile", as a user would see
    expected = json.loads((folder / "expected.json").read_text())
    expected.pop("environ", None)
    assert run_case(folder) == expected
