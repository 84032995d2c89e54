"""run.run in-process with the real manager and local worker: when the manager starts and stops."""

from pathlib import Path

import pytest

from vinemake.core.graph import BuildGraph
from vinemake.face import run
from vinemake.face.options import RunOptions
from vinemake.language.parser import parse_file


@pytest.fixture
def calls(monkeypatch):
    """What run.run called, in order: "manager" (with the Manager it got) and "prepare"."""
    seen: list = []
    start, prepare = run._start_manager, run.prepare

    def start_manager(options, root, *rest):
        manager = start(options, root, *rest)
        seen.append(("manager", manager))
        return manager

    def recorded_prepare(*args, **kwargs):
        seen.append(("prepare", None))
        return prepare(*args, **kwargs)

    monkeypatch.setattr(run, "_start_manager", start_manager)
    monkeypatch.setattr(run, "prepare", recorded_prepare)
    return seen


def run_in(root, text: str) -> int:
    (root / "Vinefile").write_text(text)
    wf = parse_file(str(root / "Vinefile"))
    options = RunOptions(vinefile=str(root / "Vinefile"), root=str(root))
    return run.run(wf, BuildGraph.build(wf, str(root)), options)


def test_on_a_first_build_the_manager_starts_before_keys_and_plan(tmp_path, calls):
    # so that the worker's interpreter starts while this process hashes and plans
    assert run_in(tmp_path, "out.txt:\n\techo hi > out.txt\n") == 0
    assert [name for name, _ in calls] == ["manager", "prepare"]
    assert (tmp_path / "out.txt").read_text() == "hi\n"
    assert calls[0][1].provider.proc.poll() is not None  # the worker was stopped at the end


def test_a_rebuild_starts_the_manager_only_once_the_plan_runs_a_remote_rule(tmp_path,
                                                                              calls):
    vinefile = "out.txt: in.txt\n\tcat in.txt > out.txt\n"
    (tmp_path / "in.txt").write_text("one\n")
    assert run_in(tmp_path, vinefile) == 0
    # The full path again: keys, journal, plan. (No snapshot at all when in.txt was hashed
    # within a clock tick of being written, as it can be in this process: filestate.racy.)
    Path(run.snapshot_file(str(tmp_path))).unlink(missing_ok=True)
    calls.clear()
    assert run_in(tmp_path, vinefile) == 0
    # Nothing to run: no worker is started for nothing (starting it before keys and plan
    # was measured: ~0.1 s earlier on a build, +0.25 s CPU on such a rebuild).
    assert [name for name, _ in calls] == ["prepare"]
    (tmp_path / "in.txt").write_text("two\n")
    calls.clear()
    assert run_in(tmp_path, vinefile) == 0
    assert [name for name, _ in calls] == ["prepare", "manager"]
    assert (tmp_path / "out.txt").read_text() == "two\n"


def test_a_first_build_that_runs_no_remote_rule_stops_the_early_worker(tmp_path, calls):
    vinefile = "out.txt:\n\techo hi > out.txt\n\nlocal.txt:\n\tLOCAL echo lo > local.txt\n"
    (tmp_path / "Vinefile").write_text(vinefile)
    wf = parse_file(str(tmp_path / "Vinefile"))
    options = RunOptions(vinefile=str(tmp_path / "Vinefile"), root=str(tmp_path),
                         targets=("local.txt",))
    assert run.run(wf, BuildGraph.build(wf, str(tmp_path)), options) == 0
    assert [name for name, _ in calls] == ["manager", "prepare"]
    assert calls[0][1].provider.proc.poll() is not None
    assert (tmp_path / "local.txt").read_text() == "lo\n"
    assert not (tmp_path / "out.txt").exists()


def test_a_workflow_of_local_rules_only_starts_no_manager(tmp_path, calls):
    assert run_in(tmp_path, "out.txt:\n\tLOCAL echo hi > out.txt\n") == 0
    assert [name for name, _ in calls] == ["prepare"]
    assert (tmp_path / "out.txt").read_text() == "hi\n"
