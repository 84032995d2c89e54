"""One vinemake per workflow directory: the flock, its message, sub-workflows, kill -9."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from vinemake.core.lock import HELD_ENV, Busy, workflow_lock


def test_a_second_holder_is_refused_with_the_first_one_s_pid(tmp_path):
    state = str(tmp_path / ".vinemake")
    with workflow_lock(state, {}):
        with pytest.raises(Busy) as err:
            with workflow_lock(state, {}):
                pass
    assert str(err.value) == (f"another vinemake (pid {os.getpid()}) is running in {tmp_path}; "
                              "wait for it to finish or stop it (its lock goes with it, even "
                              "after kill -9)")
    assert err.value.exit_code == 1
    with workflow_lock(state, {}):  # released when the first block ended
        pass


def test_a_sub_workflow_runs_under_its_parent_s_lock(tmp_path):
    state = str(tmp_path / ".vinemake")
    env: dict[str, str] = {}
    with workflow_lock(state, env):
        assert env[HELD_ENV] == str(tmp_path)
        child_env = dict(env)  # what a MAKEFLOW rule's vinemake inherits
        with workflow_lock(state, child_env):
            pass
    assert HELD_ENV not in env


def test_the_lock_goes_with_a_killed_holder(tmp_path):
    state = str(tmp_path / ".vinemake")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom vinemake.core.lock import workflow_lock\n"
         f"with workflow_lock({state!r}, {{}}):\n    print('held', flush=True)\n"
         "    time.sleep(60)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(Busy, match=rf"\(pid {holder.pid}\)"):
            with workflow_lock(state, {}):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with workflow_lock(state, {}):
        pass


def test_a_child_forked_by_the_holder_does_not_keep_the_lock(tmp_path):
    # The local worker is forked from vinemake: were the lock's open file shared with it, the
    # lock would outlive vinemake (kill -9 included) until the worker too had gone.
    state = str(tmp_path / ".vinemake")
    started_r, started_w = os.pipe()
    stop_r, stop_w = os.pipe()
    with workflow_lock(state, {}):
        pid = os.fork()
        if pid == 0:  # says it runs (its fork handlers have run), waits to be told to leave
            os.write(started_w, b"x")
            os.read(stop_r, 1)
            os._exit(0)
        assert os.read(started_r, 1) == b"x"
    try:
        with workflow_lock(state, {}):  # the holder is done; its child still runs
            assert os.waitpid(pid, os.WNOHANG) == (0, 0)
    finally:
        os.write(stop_w, b"x")
        os.waitpid(pid, 0)
        for fd in (started_r, started_w, stop_r, stop_w):
            os.close(fd)


def test_a_second_run_and_a_clean_during_a_run_are_refused_and_the_run_completes(tmp_path):
    stop = tmp_path / "stop"  # absolute: the command runs in a sandbox, not in tmp_path
    (tmp_path / "Vinefile").write_text(f"slow.txt: go\n\twhile [ ! -e {stop} ]; do sleep 0.05;"
                                       " done; echo done > slow.txt\n")
    (tmp_path / "go").write_text("")
    cmd = [sys.executable, "-m", "vinemake"]
    first = subprocess.Popen(cmd, cwd=tmp_path, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(tmp_path / ".vinemake" / "lock") or \
                not (tmp_path / ".vinemake" / "lock").read_text():
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.05)
        for args in ([], ["--clean"]):
            second = subprocess.run(cmd + args, cwd=tmp_path, capture_output=True, text=True,
                                    timeout=60)
            assert second.returncode == 1
            assert second.stderr.startswith(f"vinemake: another vinemake (pid {first.pid}) is "
                                            f"running in {tmp_path}; wait for it")
        stop.write_text("")
        assert first.wait(timeout=60) == 0
    finally:
        if first.poll() is None:
            first.kill()
    assert (tmp_path / "slow.txt").read_text() == "done\n"


def test_deleting_the_state_directory_leaves_the_lock_held(tmp_path):
    state = tmp_path / ".vinemake"
    with workflow_lock(str(state), {}):
        shutil.rmtree(state)
        with pytest.raises(Busy) as err:
            with workflow_lock(str(state), {}):
                pass
        assert str(err.value).startswith(f"another vinemake (pid {os.getpid()}) is running in "
                                         f"{tmp_path}; ")
    with workflow_lock(str(state), {}):
        pass
