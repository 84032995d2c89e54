"""Classic Makeflow workflows give vinemake's outputs what the real makeflow gave.

Each folder of tests/makeflow_compat holds a Makeflow (the features cctools' own regression
tests exercise: directories as targets, variable scopes, export, backslashes, quoting,
sub-workflows, remote names, directives), its inputs (in/), and makeflow.json: what
cctools makeflow 9.9 did with it on a Debian machine (record.py wrote it). vinemake must make
the same files with the same contents and exit 0 when makeflow succeeded, then do nothing on
a second run; where makeflow stopped on the workflow, vinemake must refuse it too (exit 2,
nothing made). vinemake.json, where present, says how and why vinemake differs on purpose
(docs/language.md lists the differences).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "makeflow_compat"
CASES = sorted(p for p in HERE.iterdir() if (p / "Makeflow").is_file())


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text(errors="replace")
            for p in sorted(root.rglob("*"))
            if p.is_file() and ".vinemake" not in p.relative_to(root).parts}


def _vinemake(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vinemake"], cwd=root, capture_output=True,
                          text=True, timeout=120)


def test_there_are_workflows_of_each_kind():
    assert len(CASES) >= 50


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_vinemake_makes_what_makeflow_made(case, tmp_path):
    expected = json.loads((case / "makeflow.json").read_text())
    if (case / "vinemake.json").is_file():
        expected = {**expected, **json.loads((case / "vinemake.json").read_text())}
    work = tmp_path / "wf"
    work.mkdir()
    shutil.copy(case / "Makeflow", work / "Makeflow")
    if (case / "in").is_dir():
        shutil.copytree(case / "in", work, dirs_exist_ok=True)
    before = _files(work)
    first = _vinemake(work)
    made = {k: v for k, v in _files(work).items() if k not in before}
    if expected["exit"] != 0:  # makeflow stopped on the workflow: so does vinemake, sooner
        assert (first.returncode, made) == (2, {}), first.stderr
        return
    assert first.returncode == 0, first.stderr
    assert made == expected["files"]
    second = _vinemake(work)
    assert second.returncode == 0, second.stderr
    assert second.stderr.splitlines()[-1].startswith("vinemake: nothing to do"), second.stderr
