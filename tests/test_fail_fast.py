"""Issue 15 item 16: without -k, nothing starts once a failure is known (the README's promise),
with real `vinemake` runs, real workers and real commands. Ten independent rules that all
fail, under -j 2: exactly the two that started first ran; -k runs all ten."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def failing_workflow(directory: Path, local: bool) -> None:
    prefix = "LOCAL " if local else ""
    directory.joinpath("Vinefile").write_text("".join(
        f"o{i}:\n\t{prefix}touch {directory}/ran.o{i}; exit 1\n\n" for i in range(10)))


def vinemake(directory: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vinemake", *args], cwd=directory,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("local", [False, True], ids=["worker", "LOCAL"])
@pytest.mark.parametrize("trial", range(3))
def test_after_a_failure_without_k_nothing_more_starts(tmp_path, local, trial):
    failing_workflow(tmp_path, local)
    r = vinemake(tmp_path, "-j", "2")
    assert r.returncode == 1
    ran = sorted(p.name for p in tmp_path.glob("ran.*"))
    assert len(ran) == 2, ran
    assert sorted((tmp_path / ".vinemake" / "failed").iterdir()) == sorted(
        tmp_path / ".vinemake" / "failed" / name.removeprefix("ran.") for name in ran)
    summary = r.stderr.splitlines()[-1]
    assert summary.startswith("vinemake: ran 0, restored 0, up to date 0, failed 2 (")
    assert summary.endswith("), not run 8" + summary[summary.rindex(" in "):])


def test_with_k_every_failing_rule_runs(tmp_path):
    failing_workflow(tmp_path, local=False)
    r = vinemake(tmp_path, "-j", "2", "-k")
    assert r.returncode == 1
    assert len(list(tmp_path.glob("ran.*"))) == 10
    assert "failed 10 (" in r.stderr.splitlines()[-1]
