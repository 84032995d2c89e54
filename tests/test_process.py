"""Naming a process by pid and start tick: a reused pid is not the process that left state."""

import os
import subprocess
import sys

from vinemake.common.process import identity, start_tick, still_running
from vinemake.worker.memlimit import MemoryLimits
from vinemake.worker.worker import _remove_stale_runs


def a_reused_pid() -> str:
    """The identity a process that has died would have had, its pid now taken by this one."""
    return f"{os.getpid()}-{int(start_tick(os.getpid())) - 1}"


def dead_identity() -> str:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    ident = identity(p.pid)
    p.wait()
    return ident


def test_this_process_is_running():
    assert still_running(identity())


def test_a_live_pid_with_another_start_tick_is_a_process_that_has_gone():
    assert not still_running(a_reused_pid())


def test_a_process_that_exited_is_not_running():
    assert not still_running(dead_identity())


def test_a_bare_live_pid_counts_as_running_and_garbage_does_not():
    assert still_running(str(os.getpid()))  # written before ticks: cannot be told apart
    assert not still_running("999999999")
    assert not still_running("")
    assert not still_running("-")
    assert not still_running("abc-12")


def test_a_worker_removes_run_dirs_of_dead_workers_even_when_the_pid_was_reused(tmp_path):
    gone, reused, live = (tmp_path / f"run-{n}" for n in (dead_identity(), a_reused_pid(),
                                                         identity()))
    for d in (gone, reused, live):
        (d / "cache").mkdir(parents=True)
    (tmp_path / "forever").mkdir()
    _remove_stale_runs(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["forever", live.name])


def test_a_cgroup_of_a_dead_worker_whose_pid_was_reused_is_removed(tmp_path):
    (tmp_path / "cgroup").write_text("4:memory:/job\n")
    job = tmp_path / "memory" / "job"
    stale = job / f"vinemake-worker-{a_reused_pid()}"
    (stale / "t3").mkdir(parents=True)
    m = MemoryLimits("auto", str(tmp_path / "memory"), str(tmp_path / "cgroup"), environ={})
    assert [p.name for p in job.iterdir()] == [f"vinemake-worker-{identity()}"]
    assert m.base == str(job / f"vinemake-worker-{identity()}")
