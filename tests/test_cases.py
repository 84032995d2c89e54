"""Tiny numbered Vinefile projects: each folder's Vinefile must parse to its expected.json.

expected.json holds either {"error": full error text} or {"rules": [...]} with, per rule in
file order: line, targets and sources as [path, sandbox] pairs, command, env, category, the
resources that are set, and the flags that differ from a plain rule; plus "workflow" for
inputs, outputs, sizes and categories when the file sets them, and "environ" for the process
environment the case runs with.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
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


# ---- examples/: they parse, and their commands really work -----------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CHECKS = {
    "hello": ("both.txt", "Hello, vinemake and world!\nHELLO, VINEMAKE AND WORLD!\n"),
    "pipeline": ("summary.txt", None),
    "library": ("total.txt", "9\n"),
}


def _run_rule(rule: RuleSpec, work: Path, box: Path, library) -> None:
    """Run one rule as a worker would: inputs under their sandbox names, outputs moved back."""
    box.mkdir()
    for f in rule.sources:
        src = work / f.path
        (shutil.copytree if src.is_dir() else shutil.copy)(src, box / f.sandbox)
    if rule.call:
        function, *args = shlex.split(rule.command)
        here = os.getcwd()
        os.chdir(box)
        try:
            getattr(library, function)(*args)
        finally:
            os.chdir(here)
    else:
        done = subprocess.run(["/bin/sh", "-c", rule.command], cwd=box, capture_output=True,
                              text=True, env={**os.environ, **dict(rule.env)}, timeout=60)
        assert done.returncode == 0, (rule.command, done.stderr)
    for f in rule.targets:
        shutil.move(box / f.sandbox, work / f.path)


def _load_library(path: Path):
    spec = importlib.util.spec_from_file_location("example_library", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_example_runs(name, tmp_path):
    work = tmp_path / name
    shutil.copytree(EXAMPLES / name, work)
    workflow = parse_file(str(work / "Vinefile"))
    library = None
    for rule in workflow.rules:  # the examples list their rules in dependency order
        if rule.library:
            library = _load_library(work / rule.command.split()[-1])
            continue
        _run_rule(rule, work, tmp_path / f"sandbox-{rule.id}", library)
    output, expected = CHECKS[name]
    text = (work / output).read_text()
    if expected is None:  # pipeline: the merged counts add up to the words of the input
        words = len((work / "words.txt").read_text().split())
        assert text.splitlines()[0] == f"words: {words}"
        assert len(text.splitlines()) == 11
    else:
        assert text == expected
