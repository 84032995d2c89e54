"""LOCAL rules run in the workflow directory with real processes, behind the Executor API."""

import os
import time

from vinemake.common.hashing import hash_file
from vinemake.common.spec import Resources
from vinemake.common.task import Task, TaskFile
from vinemake.core.localrun import LocalRunner


def task(tid, command, outputs=(), root="", env=()):
    return Task(id=tid, rule_key=f"rule-{tid}", name=f"r{tid}", command=command,
                outputs=tuple(TaskFile(f"out-{o}", o, os.path.join(root, o)) for o in outputs),
                env=env, failed_dir=os.path.join(root, ".vinemake", "failed", f"r{tid}"))


def wait_all(runner, n):
    got = []
    deadline = time.monotonic() + 20
    while len(got) < n and time.monotonic() < deadline:
        got += runner.wait(0.5)
    return {r.task_id: r for r in got}


def test_runs_in_the_workflow_directory_with_env(tmp_path):
    runner = LocalRunner(str(tmp_path), 2)
    runner.submit(task(1, 'echo "$GREETING" > x', ["x"], str(tmp_path), (("GREETING", "hi"),)))
    result = wait_all(runner, 1)[1]
    runner.close()
    assert result.ok and result.outputs == (("out-x", 3, hash_file(str(tmp_path / "x"))[1]),)
    assert (tmp_path / "x").read_text() == "hi\n"


def test_failure_moves_outputs_aside_and_keeps_stderr(tmp_path):
    runner = LocalRunner(str(tmp_path), 2)
    runner.submit(task(1, "echo half > x; echo bad >&2; exit 4", ["x"], str(tmp_path)))
    runner.submit(task(2, "true", ["y"], str(tmp_path)))
    results = wait_all(runner, 2)
    runner.close()
    assert (results[1].status, results[1].exit_code, results[1].reason,
            results[1].stderr_tail) == ("failed", 4, "exit code 4", "bad\n")
    assert not (tmp_path / "x").exists()
    assert (tmp_path / ".vinemake" / "failed" / "r1" / "x").read_text() == "half\n"
    assert results[2].status == "missing_output"
    assert results[2].reason == "missing output: y"


def test_cancel_all_kills_running_commands(tmp_path):
    runner = LocalRunner(str(tmp_path), 1)
    runner.submit(task(1, "sleep 30", [], str(tmp_path)))
    deadline = time.monotonic() + 20
    while not runner.procs and time.monotonic() < deadline:
        time.sleep(0.01)  # until the command is running: a wait, not a timing assertion
    runner.cancel_all()
    result = wait_all(runner, 1)[1]
    runner.close()
    assert (result.status, result.exit_code, result.reason) == \
        ("signaled", -15, "killed by signal 15")


def test_withdrawn_tasks_that_have_not_started_come_back_without_running(tmp_path):
    runner = LocalRunner(str(tmp_path), 1)
    gate = tmp_path / "gate"
    runner.submit(task(1, f"touch one; while [ ! -e {gate} ]; do sleep 0.01; done", (),
                       str(tmp_path)))
    runner.submit(task(2, "touch two", (), str(tmp_path)))  # waits for the only slot
    deadline = time.monotonic() + 20
    while not (tmp_path / "one").exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # readiness: the first has started
    runner.withdraw()
    gate.touch()
    results = wait_all(runner, 2)
    runner.close()
    assert (results[1].status, results[2].status) == ("ok", "withdrawn")
    assert (tmp_path / "one").exists() and not (tmp_path / "two").exists()


def test_a_local_rule_gets_thread_variables_for_its_cores(tmp_path):
    runner = LocalRunner(str(tmp_path), 2)
    runner.submit(Task(id=1, rule_key="rule-1", name="r1", resources=Resources(cores=2),
                       command="echo $CORES $OMP_NUM_THREADS $MKL_NUM_THREADS > x",
                       outputs=(TaskFile("out-x", "x", str(tmp_path / "x")),)))
    result = wait_all(runner, 1)[1]
    runner.close()
    assert result.ok
    assert (tmp_path / "x").read_text() == "2 2 2\n"


def test_a_subworkflow_that_would_run_a_file_of_its_chain_is_not_started(tmp_path,
                                                                         monkeypatch):
    (tmp_path / "sub.vf").write_text("x:\n\ttouch x\n")
    monkeypatch.setenv("VINEMAKE_WORKFLOW_CHAIN", str(tmp_path / "sub.vf"))
    runner = LocalRunner(str(tmp_path), 2, workflow_file="Vinefile")
    runner.submit_subworkflow(task(1, "sub.vf", ["x"], str(tmp_path)))
    runner.submit_subworkflow(task(2, "./Vinefile", [], str(tmp_path)))
    results = wait_all(runner, 2)
    runner.close()
    # by task id: the two run on two threads, and either may end first
    assert [(r.status, r.exit_code, r.stderr_tail) for _, r in sorted(results.items())] == [
        ("failed", 2, "vinemake: sub-workflow loop: sub.vf runs Vinefile runs sub.vf: "
                      "not started\n"),
        ("failed", 2, "vinemake: sub-workflow loop: Vinefile runs Vinefile: not started\n")]
    assert not (tmp_path / "x").exists()


def test_a_command_started_as_the_run_is_cancelled_is_stopped_too(tmp_path):
    # cancel_all() between a task's "cancelled?" check and its command's registration must
    # not leave that command running for nobody.
    runner = LocalRunner(str(tmp_path))
    try:
        runner.cancelled = False
        proc, _ = runner._start(task(1, "sleep 30", [], str(tmp_path)), ["sleep", "30"],
                                str(tmp_path))
        runner.cancel_all()
        assert proc.wait(timeout=10) == -15
        with runner.lock:  # as cancel_all() left it, a later start sees it at once
            runner.procs.clear()
        late, _ = runner._start(task(2, "sleep 30", [], str(tmp_path)), ["sleep", "30"],
                                str(tmp_path))
        assert late.wait(timeout=10) == -15
    finally:
        runner.close()


def test_a_shadow_whose_pid_now_names_another_process_is_swept(tmp_path):
    """A killed vinemake's pid may be reused by the time the next run starts: the shadow
    names the process by its pid and its start tick, so another process's pid is no alibi."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    me = LocalRunner(str(tmp_path), scratch=str(tmp_path / "other"))  # a live run's token
    try:
        live = scratch / f"{me.token}.t1.1"
        reused = scratch / f"{os.getpid()}-1-{time.time_ns()}.t2.1"  # our pid, not our start
        old_style = scratch / f"{os.getpid()}-{time.time_ns()}.t3.1"
        for shadow in (live, reused, old_style):
            shadow.mkdir()
        LocalRunner(str(tmp_path), scratch=str(scratch)).close()
        assert [p.name for p in scratch.iterdir()] == [live.name]
    finally:
        me.close()
