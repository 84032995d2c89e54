"""The worker side: sandbox names, linking, running, the monitor, outputs into the cache."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time

import pytest

from vinemake.common.hashing import hash_file
from vinemake.common.paths import remove_path
from vinemake.common.spec import Resources
from vinemake.common.task import Task, TaskFile
from vinemake.wire.protocol import ProtocolError
from vinemake.worker import monitor as monitor_module
from vinemake.worker import runner as runner_module
from vinemake.worker.cachedir import CacheDir
from vinemake.worker.monitor import Monitor, Sample, exceeded
from vinemake.worker.runner import Fetch, FileSource, Runner, Slots
from vinemake.worker.sandbox import SandboxError, check_name, is_empty, link_in


@pytest.mark.parametrize("name, why", [
    ("../x", "climbs out with '..'"),
    ("a/../../x", "climbs out with '..'"),
    ("/etc/passwd", "absolute path"),
    ("a\0b", "empty or contains NUL"),
    ("", "empty or contains NUL"),
    (".", "names the sandbox itself"),
])
def test_unsafe_sandbox_names_are_refused(name, why):
    with pytest.raises(SandboxError) as e:
        check_name(name)
    assert str(e.value) == f"unsafe sandbox name {name!r}: {why}"


def test_safe_names_pass():
    assert check_name("sub/dir/file..txt") == "sub/dir/file..txt"


def test_inputs_are_hard_linked_with_subdirectories_and_directories_recursively(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "g").write_text("y")
    box = tmp_path / "box"
    box.mkdir()
    link_in(str(tmp_path / "f"), str(box), "in/deep/f")
    link_in(str(tmp_path / "d"), str(box), "data")
    assert os.stat(box / "in/deep/f").st_ino == os.stat(tmp_path / "f").st_ino
    assert os.stat(box / "data/e/g").st_ino == os.stat(tmp_path / "d/e/g").st_ino
    remove_path(str(box))
    assert not box.exists()
    assert (tmp_path / "d" / "e" / "g").read_text() == "y"


def test_exceeded_names_the_limit_broken():
    limits = Resources(memory_mb=100, disk_mb=10, wall_time_s=2)
    assert exceeded(limits, Sample(50, 5, 1)) is None
    assert exceeded(limits, Sample(150, 5, 1)) == "memory: used 150 MB, declared 100 MB"
    assert exceeded(limits, Sample(50, 12, 1)) == "disk: used 12 MB, declared 10 MB"
    assert exceeded(limits, Sample(50, 5, 2.5)) == "wall time: ran 2.5 s, declared 2 s"
    assert exceeded(Resources(), Sample(1e6, 1e6, 1e6)) is None


class Fetcher:
    """Serves keys from a dict of bytes; sources named 'bad' fail as a broken peer would."""

    def __init__(self, files):
        self.files = files
        self.calls = []

    def __call__(self, source, key, dest, expected):
        self.calls.append((source.label, key))
        if source.label == "bad":
            raise ProtocolError("corrupt transfer")
        with open(dest, "wb") as f:
            f.write(self.files[key])
        return hash_file(dest)


@pytest.fixture(params=["posix_spawn", "Popen"])
def runner(request, tmp_path, monkeypatch):
    # Every runner test runs twice: commands started by glibc's posix_spawn (ctypes), and by
    # subprocess.Popen, the fallback where glibc lacks posix_spawn_file_actions_addchdir_np.
    if request.param == "Popen":
        monkeypatch.setattr(runner_module, "_API", None)
    elif runner_module._API is None:
        pytest.skip("glibc's posix_spawn_file_actions_addchdir_np is not available here")
    monitor = Monitor(interval=0.05, delay=0.0)
    transfers = []
    r = Runner(CacheDir(str(tmp_path / "run"), str(tmp_path / "forever")), monitor,
               Fetcher({"file-in": b"hello\n"}), str(tmp_path / "run"), "w1",
               same_host=True, on_transfer=lambda *a: transfers.append(a))
    r.transfers = transfers
    yield r
    monitor.close()


def make_task(command, inputs=(), outputs=(), **kw):
    return Task(id=1, rule_key="r", name="t", command=command,
                inputs=tuple(TaskFile(*f) for f in inputs),
                outputs=tuple(TaskFile(*f) for f in outputs), **kw)


def test_a_command_runs_in_its_sandbox_and_outputs_move_into_the_cache(runner, tmp_path):
    (tmp_path / "src.txt").write_text("abc\n")
    t = make_task("cat in/src.txt > out.txt; echo \"$GREETING\" >> out.txt; echo oops >&2",
                  inputs=[("file-src", "in/src.txt", str(tmp_path / "src.txt"))],
                  outputs=[("out-1", "out.txt", None)], env=(("GREETING", "hi"),))
    o = runner.run(t)
    # a successful command's stderr is reported too: every rule's last stderr is kept
    assert (o.result.status, o.result.exit_code, o.result.stderr_tail) == ("ok", 0, "oops\n")
    (key, size, digest, path), = o.outputs
    assert (key, size) == ("out-1", 7)
    assert open(path).read() == "abc\nhi\n"
    # too quick to be sampled, and the kernel's figure for a vfork'd command is the worker's
    # own peak: not charged to the command (test_a_small_command_is_not_charged_...)
    assert o.result.measured.memory_mb < 50
    assert hash_file(path) == (7, digest)
    assert runner.cache.get("out-1").path == path
    for box in os.listdir(runner.sandbox_root):  # emptied, kept for the next task
        assert box.endswith(".err") or os.listdir(os.path.join(runner.sandbox_root, box)) == []


def test_a_missing_output_is_reported_by_name(runner):
    o = runner.run(make_task("touch a", outputs=[("out-a", "a", None), ("out-b", "b", None)]))
    assert (o.result.status, o.result.reason) == ("missing_output", "missing output: b")
    assert runner.cache.get("out-a") is None
    assert [name for name, _, _ in o.failed] == ["a"]


def test_an_output_under_what_the_command_made_a_file_is_missing(runner):
    # `echo > results` where results/out was meant: a plain missing output, not a worker error
    o = runner.run(make_task("touch a; rmdir d; echo hi > d",
                             outputs=[("out-a", "a", None), ("out-d", "d/x", None)]))
    assert (o.result.status, o.result.reason) == ("missing_output", "missing output: d/x")
    assert [name for name, _, _ in o.failed] == ["a"]


def test_an_output_that_is_a_link_to_nothing_is_an_error_not_a_missing_output(runner):
    o = runner.run(make_task("touch a; ln -s nowhere b",
                             outputs=[("out-a", "a", None), ("out-b", "b", None)]))
    assert o.result.status == "error"
    assert o.result.reason.startswith("cannot collect the outputs:") and "b" in o.result.reason
    assert runner.cache.get("out-a") is None and o.outputs == ()


def test_a_failed_commands_outputs_are_kept_for_the_failed_dir(runner):
    o = runner.run(make_task("echo partial > a; echo boom >&2; exit 3",
                             outputs=[("out-a", "a", None)]))
    r = o.result
    assert (r.status, r.exit_code, r.reason, r.stderr_tail) == ("failed", 3, "exit code 3",
                                                                "boom\n")
    (name, key, path), = o.failed
    assert (name, key, open(path).read()) == ("a", "failed.1.1.0", "partial\n")
    assert runner.cache.get("out-a") is None


def test_a_missing_output_reports_what_the_command_said(runner):
    o = runner.run(make_task("echo said >&2", outputs=[("out-a", "a", None)]))
    assert (o.result.status, o.result.reason, o.result.stderr_tail) == (
        "missing_output", "missing output: a", "said\n")


def test_the_stderr_of_a_task_is_its_own(runner):
    failing = make_task("echo first >&2; exit 1")
    assert runner.run(failing).result.stderr_tail == "first\n"
    assert runner.run(make_task("exit 1")).result.stderr_tail == ""  # same sandbox, emptied


def test_every_task_starts_in_an_empty_sandbox_whatever_the_one_before_left(runner):
    # One sandbox serves them in turn: after the first give-back it is kept open and read
    # for emptiness; what a task left behind (files, a tree) is removed before the next.
    listing = "ls -A > ../listing; echo x > out.txt"
    for leave in ("", "touch junk; mkdir -p d/e; touch d/e/f", "", "touch .hidden", ""):
        o = runner.run(make_task(f"{listing}; {leave}", outputs=[("out-l", "out.txt", None)]))
        assert o.result.status == "ok"
        boxes = [b for b in os.listdir(runner.sandbox_root) if b.isdigit()]
        assert len(boxes) == 1
        with open(os.path.join(runner.sandbox_root, "listing")) as f:
            assert f.read() == ""
    runner.close()  # its directories closed: a later give-back lists the sandbox by path
    o = runner.run(make_task("touch junk; echo x > out.txt", outputs=[("out-m", "out.txt", None)]))
    assert o.result.status == "ok"
    assert os.listdir(os.path.join(runner.sandbox_root, boxes[0])) == []


def test_an_open_directory_is_empty_only_when_it_lists_nothing(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert is_empty(fd)
        for name in ("f", ".f", "x" * 255):
            (d / name).write_text("")
            assert not is_empty(fd)
            (d / name).unlink()
            assert is_empty(fd)  # read again from the start
        (d / "sub").mkdir()
        assert not is_empty(fd)
        for i in range(100):  # more names than one read's buffer holds
            (d / f"n{i}").write_text("")
        assert not is_empty(fd)
        shutil.rmtree(d)
        assert not is_empty(fd)  # removed: it cannot tell, so the caller looks by path
    finally:
        os.close(fd)


def test_the_stderr_tail_is_the_last_2_kib(runner):
    o = runner.run(make_task("head -c 5000 /dev/zero | tr '\\0' a >&2; echo END >&2; exit 1"))
    assert len(o.result.stderr_tail) == 2048
    assert o.result.stderr_tail.endswith("aaaEND\n")


def test_a_signaled_command(runner):
    o = runner.run(make_task("kill -TERM $$"))
    assert (o.result.status, o.result.exit_code) == ("signaled", -15)


def test_names_from_the_manager_are_rechecked_on_the_worker(runner, tmp_path):
    o = runner.run(make_task("echo pwned > ../escape", outputs=[("out-x", "../escape", None)]))
    assert o.result.status == "error"
    assert o.result.reason == ("cannot set up the sandbox: unsafe sandbox name '../escape': "
                               "climbs out with '..'")
    o = runner.run(make_task(":", inputs=[("file-x", "/etc/passwd", "/etc/passwd")]))
    assert o.result.reason == ("cannot set up the sandbox: unsafe sandbox name '/etc/passwd': "
                               "absolute path")
    assert not (tmp_path / "run" / "escape").exists()


def test_the_monitor_kills_a_memory_hog(runner):
    hog = f"{sys.executable} -c \"x = bytearray(400_000_000); import time; time.sleep(60)\""
    o = runner.run(make_task(hog, resources=Resources(memory_mb=100)))
    assert o.result.status == "resource_exceeded"
    assert o.result.reason.startswith("memory: used ")
    assert o.result.reason.endswith(" MB, declared 100 MB")
    assert o.result.measured.memory_mb > 100


def test_the_monitor_kills_a_memory_hog_the_command_started(runner):
    # The hog is a grandchild: the shell, then a subshell, then Python; the sample adds up
    # the whole tree, found in one pass over /proc (proctree.py).
    hog = f"{sys.executable} -c \"x = bytearray(400_000_000); import time; time.sleep(60)\""
    o = runner.run(make_task(f"({hog}; true); true", resources=Resources(memory_mb=100)))
    assert o.result.status == "resource_exceeded"
    assert o.result.reason.startswith("memory: used ")
    assert o.result.reason.endswith(" MB, declared 100 MB")


def test_the_monitor_kills_a_wall_time_overrun(runner):
    o = runner.run(make_task("sleep 60", resources=Resources(wall_time_s=0.3)))
    assert o.result.status == "resource_exceeded"
    assert o.result.reason.startswith("wall time: ran ")
    assert o.result.reason.endswith(" s, declared 0.3 s")
    assert o.result.measured.wall_time_s < 30


def test_an_idle_monitor_sleeps_until_a_task_comes_and_still_holds_it_to_its_limits(
        runner, monkeypatch):
    monkeypatch.setattr(monitor_module, "SLEEP_AFTER_S", 0.0)
    wait_until(lambda: runner.monitor.asleep)  # blocked with no timeout: no wake-ups
    o = runner.run(make_task("sleep 60", resources=Resources(wall_time_s=0.3)))
    assert o.result.status == "resource_exceeded"
    assert o.result.reason.endswith(" s, declared 0.3 s")


def test_an_idle_monitor_loads_psutil_before_a_task_outlives_the_delay():
    # In a fresh interpreter (this one has psutil already): importing the monitor does not
    # load psutil, its falling asleep does, so no run pays for it at its first sample.
    script = ("import sys, time\n"
              "from vinemake.worker import monitor\n"
              "monitor.SLEEP_AFTER_S = 0.0\n"
              "print('psutil' in sys.modules)\n"
              "m = monitor.Monitor()\n"
              "while not (m.asleep and hasattr(sys.modules.get('psutil'), 'Process')):\n"
              "    time.sleep(0.01)\n"
              "m.close()\n"
              "print('loaded')\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert (out.stdout, out.stderr) == ("False\nloaded\n", "")


def test_a_runner_given_an_earlier_sessions_spare_sandboxes_makes_none(runner, tmp_path):
    assert runner.run(make_task(": > out", outputs=[("out-1", "out", None)])).result.status \
        == "ok"
    root = str(tmp_path / "run" / "sandbox")
    made = os.listdir(root)
    runner.close()
    later = Runner(runner.cache, runner.monitor, Fetcher({}), str(tmp_path / "run"), "w1",
                   same_host=True, spare=runner.spares())
    o = later.run(make_task("ls -A > out", outputs=[("out-2", "out", None)]))
    assert o.result.status == "ok"
    assert open(o.outputs[0][3]).read() == "out\n"  # an empty sandbox, the earlier one
    assert os.listdir(root) == made
    assert runner.spares() == []  # handed over once


def test_the_monitor_kills_a_disk_hog(runner):
    o = runner.run(make_task("truncate -s 30000000 big; sleep 60",  # one step: 30 MB at once
                             resources=Resources(disk_mb=10)))
    assert o.result.status == "resource_exceeded"
    assert o.result.reason == "disk: used 30 MB, declared 10 MB"


def test_a_failed_fetch_is_retried_from_the_next_source(runner):
    f = Fetch("file-in", "", (FileSource("h", 1, "bad"), FileSource("h", 2, "good")))
    o = runner.run(make_task("cat in > out", inputs=[("file-in", "in", None)],
                             outputs=[("out-1", "out", None)]), (f,))
    assert o.result.status == "ok"
    assert open(o.outputs[0][3]).read() == "hello\n"
    assert [(a[0], a[1], a[5]) for a in runner.transfers] == [("file-in", "bad", False),
                                                              ("file-in", "good", True)]
    assert runner._key_locks == {}  # a key's lock goes with its last fetch: no growth


def test_an_input_no_source_can_give_is_an_error(runner):
    f = Fetch("file-in", "", (FileSource("h", 1, "bad"),))
    o = runner.run(make_task(":", inputs=[("file-in", "in", None)]), (f,))
    assert o.result.status == "error"
    assert o.result.reason == ("cannot set up the sandbox: cannot fetch file-in: "
                               "bad: corrupt transfer")
    assert o.unfetched == (("file-in", ("bad",)),)  # the manager drops that copy, retries
    assert runner._key_locks == {}


def test_forever_entries_are_found_again_by_a_new_cache(tmp_path):
    (tmp_path / "x").write_text("keep")
    (tmp_path / "y").write_text("drop")
    c = CacheDir(str(tmp_path / "run1"), str(tmp_path / "forever"))
    c.insert(str(tmp_path / "x"), "out-keep", 4, "h1", forever=True)
    c.insert(str(tmp_path / "y"), "out-drop", 4, "h2")
    again = CacheDir(str(tmp_path / "run2"), str(tmp_path / "forever"))
    assert [(e.key, e.size, e.hash, e.forever) for e in again.entries()] == [
        ("out-keep", 4, "h1", True)]
    assert open(again.get("out-keep").path).read() == "keep"


def test_a_nested_outputs_directory_exists_before_the_command_runs(runner):
    o = runner.run(make_task("echo x > sub/dir/out", outputs=[("out-n", "sub/dir/out", None)]))
    assert o.result.status == "ok"
    assert open(o.outputs[0][3]).read() == "x\n"


def test_the_worker_command_reports_unusable_options_without_a_traceback(tmp_path):
    import subprocess

    bad = subprocess.run([sys.executable, "-m", "vinemake.worker.cli", "127.0.0.1", "1",
                          "--password", str(tmp_path / "missing"), "--workdir",
                          str(tmp_path / "w")], capture_output=True, text=True, timeout=60)
    assert (bad.returncode, bad.stderr) == (
        1, f"vinemake-worker: cannot read password file {tmp_path / 'missing'}: "
           "No such file or directory\n")


def test_a_second_runner_on_the_same_run_dir_can_take_sandboxes(runner, tmp_path):
    # A worker that reconnects builds a new Runner over the same run directory: the
    # sandboxes of its earlier session are still there and must not be reused by name.
    assert runner.run(make_task("echo 1 > out.txt", outputs=[("out-a", "out.txt", None)])).result.ok
    again = Runner(runner.cache, runner.monitor, Fetcher({}), str(tmp_path / "run"), "w1",
                   same_host=True)
    o = again.run(make_task("echo 2 > out.txt", outputs=[("out-b", "out.txt", None)]))
    assert (o.result.status, o.result.reason) == ("ok", "")


def test_commands_start_with_sigpipe_at_its_default(runner):
    # Python ignores SIGPIPE; a command that inherited that would see `yes` complain of a
    # broken pipe (and loop on some systems) instead of being stopped by the signal.
    # (it fails on purpose: only a failed command's stderr is reported)
    o = runner.run(make_task("yes | head -c 1 >/dev/null; kill -0 $$; exit 9"))
    assert (o.result.status, o.result.stderr_tail) == ("failed", "")


def _ignored_from_the_start() -> int:
    """The standard signals this test process ignores besides Python's own two: a suite
    started as a shell's background job ignores SIGINT and SIGQUIT, under nohup SIGHUP, and
    so do its commands."""
    import signal
    mask = 0
    for sig in range(1, 32):
        try:
            ignored = signal.getsignal(sig) is signal.SIG_IGN
        except ValueError:  # not a signal on this system
            continue
        if ignored and sig not in (signal.SIGPIPE, signal.SIGXFSZ):
            mask |= 1 << (sig - 1)
    return mask


def _ignored_signals(mask: int) -> tuple:
    return tuple(sig for sig in range(1, 32) if mask & 1 << (sig - 1))


@pytest.mark.parametrize("spawn", ["posix_spawn", "Popen"])
def test_a_command_ignores_what_the_worker_ignores_and_nothing_else(spawn, tmp_path,
                                                                    monkeypatch):
    # Popen's dispositions: a signal the worker ignores (here SIGHUP, as under nohup) stays
    # ignored, every other is at its default (SIGPIPE and SIGXFSZ, which Python ignores, and
    # SIGUSR1, which has a handler here). posix_spawn is told to default each of those.
    if spawn == "Popen":
        monkeypatch.setattr(runner_module, "_API", None)
    elif runner_module._API is None:
        pytest.skip("glibc's posix_spawn_file_actions_addchdir_np is not available here")
    import signal

    old = {sig: signal.signal(sig, handler) for sig, handler in (
        (signal.SIGHUP, signal.SIG_IGN), (signal.SIGUSR1, lambda *a: None))}
    monitor = Monitor(interval=0.05, delay=0.0)
    try:
        r = Runner(CacheDir(str(tmp_path / "run"), str(tmp_path / "forever")), monitor,
                   Fetcher({}), str(tmp_path / "run"), "w1", same_host=True)
        o = r.run(make_task("grep SigIgn /proc/self/status > s",
                            outputs=[("out-s", "s", None)]))
    finally:
        monitor.close()
        for sig, handler in old.items():
            signal.signal(sig, handler)
    assert o.result.ok
    # (the standard signals: glibc's posix_spawn ignores two real-time ones it uses itself)
    mask = int(open(r.cache.get("out-s").path).read().split()[1], 16) & (1 << 31) - 1
    assert mask == 1 << (signal.SIGHUP - 1) | _ignored_from_the_start()
    if runner_module._API is not None:  # the next session's commands: SIGHUP at its default
        runner_module._API.note_signals()
        api = runner_module._API
        assert [ignored for ignored, attr in api._attrs.items()
                if attr is api.attr] == [_ignored_signals(_ignored_from_the_start())]


def test_a_command_leads_its_own_process_group_in_its_sandbox(runner):
    o = runner.run(make_task("ps -o pgid= $$ > g; echo $$ >> g; pwd > d",
                             outputs=[("out-g", "g", None), ("out-d", "d", None)]))
    assert o.result.ok
    pgid, pid = open(runner.cache.get("out-g").path).read().split()
    assert pgid == pid
    assert open(runner.cache.get("out-d").path).read().startswith(runner.sandbox_root)


def test_on_the_managers_host_an_output_is_renamed_to_its_path(runner, tmp_path):
    target = tmp_path / "placed.txt"
    o = runner.run(make_task("echo hi > o", outputs=[("out-p", "o", str(target))]))
    assert o.outputs == (("out-p", 3, hash_file(str(target))[1], str(target)),)
    assert (target.read_text(), runner.cache.get("out-p")) == ("hi\n", None)
    # where one rename cannot do it (here: no such directory), it goes to the cache as before
    far = tmp_path / "missing" / "dir" / "o.txt"
    o = runner.run(make_task("echo hi > o", outputs=[("out-q", "o", str(far))]))
    (_, _, _, path), = o.outputs
    assert (path, far.exists()) == (runner.cache.get("out-q").path, False)


def test_a_remote_worker_keeps_outputs_in_its_cache(tmp_path):
    monitor = Monitor(interval=0.05, delay=0.0)
    r = Runner(CacheDir(str(tmp_path / "run"), str(tmp_path / "forever")), monitor,
               Fetcher({}), str(tmp_path / "run"), "w1", same_host=False)
    target = tmp_path / "placed.txt"
    o = r.run(make_task("echo hi > o", outputs=[("out-p", "o", str(target))]))
    empty = r.run(make_task(": > e", outputs=[("out-e", "e", str(tmp_path / "e"))]))
    monitor.close()
    (_, _, _, path), = o.outputs
    assert (path, target.exists(), o.inline) == (r.cache.get("out-p").path, False,
                                                (("out-p", b"hi\n"),))
    assert empty.inline == (("out-e", b""),) and empty.outputs[0][1] == 0


def spawn_true(monitor, events, name):
    """Start `sh -c true`, watched by `monitor`; its gone/exit go into `events`."""
    proc = subprocess.Popen(["/bin/sh", "-c", "true"])
    w = monitor.watch(proc.pid, Resources(), "/nonexistent")
    proc.returncode = 0  # reaped by the monitor, never by Popen
    monitor.reap(w, lambda code, usage: events.append(("exit", name, time.monotonic())),
                 lambda: events.append(("gone", name, time.monotonic())))
    return w


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_while_tasks_queue_the_monitor_finishes_reaped_tasks_together(monkeypatch):
    monkeypatch.setattr(monitor_module, "DEFER_S", 30.0)  # only the count lets them go
    monkeypatch.setattr(monitor_module, "DEFER_MAX", 3)
    queueing = [True]
    monitor = Monitor(interval=0.05, delay=10.0, defer=lambda: queueing[0])
    events = []
    try:
        for name in ("a", "b"):
            spawn_true(monitor, events, name)
        wait_until(lambda: len(events) == 2)
        # both slots were given back at once; their outputs wait for company
        assert sorted((kind, name) for kind, name, _ in events) == [("gone", "a"),
                                                                     ("gone", "b")]
        spawn_true(monitor, events, "c")
        wait_until(lambda: len(events) == 6)
        assert sorted(name for kind, name, _ in events if kind == "exit") == ["a", "b", "c"]
        # nothing queues any more: each is finished as soon as it is reaped
        queueing[0] = False
        spawn_true(monitor, events, "d")
        wait_until(lambda: len(events) == 8)
        assert [kind for kind, name, _ in events if name == "d"] == ["gone", "exit"]
    finally:
        monitor.close()


def test_a_task_finished_later_measures_the_time_its_command_ran(tmp_path, monkeypatch):
    # Finished two seconds late, for a command that takes milliseconds: the margins on both
    # sides are wide enough that no scheduling delay can move the result across them.
    monkeypatch.setattr(monitor_module, "DEFER_S", 2.0)
    monitor = Monitor(interval=0.05, delay=10.0, defer=lambda: True)
    r = Runner(CacheDir(str(tmp_path / "run"), str(tmp_path / "forever")), monitor,
               Fetcher({}), str(tmp_path / "run"), "w1", same_host=True)
    try:
        start = time.monotonic()
        o = r.run(make_task("true"))
        assert time.monotonic() - start >= 2.0  # it did wait to be finished
        assert o.result.status == "ok" and o.result.measured.wall_time_s < 1.0
    finally:
        monitor.close()


def test_a_command_reaped_but_not_yet_finished_is_never_signalled(monkeypatch):
    # Its pid may already name another process: a cancel that comes meanwhile is a no-op.
    monkeypatch.setattr(monitor_module, "DEFER_S", 30.0)
    monitor = Monitor(interval=0.05, delay=10.0, defer=lambda: True)
    events = []
    killed = []
    monkeypatch.setattr(monitor_module.os, "killpg", lambda pid, sig: killed.append(pid))
    try:
        w = spawn_true(monitor, events, "a")
        wait_until(lambda: events)
        assert w.reaped
        monitor.kill(w, "cancelled by the manager")
        assert (killed, w.reason) == ([], None)
    finally:
        monitor.close()


def test_without_pidfds_a_thread_waits_for_each_command(monkeypatch):
    # Linux before 5.3: the same gone-then-exit order, and a reaped watch is never signalled.
    def no_pidfds(pid):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(monitor_module.os, "pidfd_open", no_pidfds)
    monitor = Monitor(interval=0.05, delay=10.0)
    events = []
    try:
        w = spawn_true(monitor, events, "a")
        wait_until(lambda: len(events) == 2)
        assert [kind for kind, _, _ in events] == ["gone", "exit"] and w.reaped
        killed = []
        monkeypatch.setattr(monitor_module.os, "killpg", lambda pid, sig: killed.append(pid))
        monitor.kill(w, "cancelled by the manager")
        assert killed == []
    finally:
        monitor.close()


def slot_task(i, **resources):
    return Task(id=i, rule_key="r", name=f"t{i}", command=":",
                resources=Resources(**resources))


def test_slots_start_tasks_in_order_within_the_workers_resources():
    s = Slots(Resources(cores=2, memory_mb=1000, disk_mb=0, gpus=0))
    a, b, c, d = (slot_task(1), slot_task(2, memory_mb=900), slot_task(3, memory_mb=200),
                  slot_task(4))
    assert [s.offer(t) for t in (a, b, c, d)] == [True, True, False, False]
    # d would fit a core, but waits behind c: first come, first started
    assert s.release(a) == []  # c needs 200 MB, 100 are free
    assert s.release(b) == [(c, None), (d, None)]


def test_slots_start_the_head_whatever_it_asks_when_nothing_runs():
    s = Slots(Resources(cores=1, memory_mb=100, disk_mb=0, gpus=0))
    big = slot_task(2, cores=4)
    assert (s.offer(slot_task(1)), s.offer(big, "payload")) == (True, False)
    assert s.release(slot_task(1)) == [(big, "payload")]


def test_slots_cancel_and_clear_waiting_tasks():
    s = Slots(Resources(cores=1, memory_mb=0, disk_mb=0, gpus=0))
    tasks = [slot_task(i) for i in range(4)]
    assert [s.offer(t, i) for i, t in enumerate(tasks)] == [True, False, False, False]
    assert (s.cancel(2), s.cancel(2)) == ((tasks[2], 2), None)
    assert s.clear() == [(tasks[1], 1), (tasks[3], 3)]
    assert s.release(tasks[0]) == []


def test_a_command_inherits_no_descriptor_of_the_worker(runner, tmp_path):
    # Popen(close_fds=True) closed them; posix_spawn closes them with addclosefrom_np.
    if runner_module._API is not None and runner_module._API.closefrom is None:
        pytest.skip("glibc before 2.34: no posix_spawn_file_actions_addclosefrom_np")
    fd = os.open(tmp_path / "leak", os.O_RDONLY | os.O_CREAT)
    # The lowest free descriptor from 200 up: dup2 onto a fixed number would close whatever
    # another thread of this test process holds there.
    leak = fcntl.fcntl(fd, fcntl.F_DUPFD, 200)
    os.set_inheritable(leak, True)
    try:
        o = runner.run(make_task("ls /proc/$$/fd > fds", outputs=[("out-f", "fds", None)]))
    finally:
        os.close(leak)
        os.close(fd)
    assert o.result.ok
    fds = set(open(runner.cache.get("out-f").path).read().split())
    assert {"0", "1", "2"} <= fds and str(leak) not in fds


def test_a_small_command_is_not_charged_the_workers_own_memory(runner):
    # A vfork'd command's ru_maxrss starts at its parent's peak: this test process holds far
    # more than `true` ever will, and that must not be reported as the command's.
    import resource

    own_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000
    ballast = bytearray(200_000_000)  # the worker's peak, well above any small command's
    small = runner.run(make_task("true"))
    del ballast
    assert small.result.ok and small.result.measured.memory_mb < min(own_mb, 100) / 2


def test_a_command_bigger_than_the_worker_is_charged_its_own_peak(runner):
    # The worker here is this test process, whose peak grows with the tests run before: the
    # command must be bigger than that peak, or its rusage is rightly not trusted.
    import resource

    own_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000
    size = max(400, int(own_mb) + 200) * 1_000_000
    big = runner.run(make_task(f"{sys.executable} -c 'x = bytearray({size}); x[::4096] = "
                               f"b\"1\" * len(x[::4096])'"))
    assert big.result.ok and big.result.measured.memory_mb > size / 1e6 * 0.9


def test_a_reaped_commands_pidfd_still_open_elsewhere_never_reaps_the_next_command():
    # A command spawned by another thread holds a copy of every descriptor until it execs;
    # here a dup stands in for that copy of the first command's pidfd.
    monitor = Monitor(interval=0.05, delay=10.0)
    events = []

    def start(stdin):
        proc = subprocess.Popen(["/bin/sh", "-c", "read x"], stdin=stdin)
        w = monitor.watch(proc.pid, Resources(), "/nonexistent")
        proc.returncode = 0  # reaped by the monitor, never by Popen
        monitor.reap(w, lambda code, usage: events.append(proc.pid))
        return proc, w

    first, w1 = start(subprocess.PIPE)
    held = os.dup(w1._fd)
    later = None
    try:
        first.stdin.close()  # it exits; the monitor reaps it and closes its pidfd
        wait_until(lambda: events == [first.pid])
        later, w2 = start(subprocess.PIPE)
        assert w2._fd == w1._fd  # the number the first command's pidfd had
        third = []
        spawn_true(monitor, third, "third")  # the monitor polls again meanwhile
        wait_until(lambda: [kind for kind, _, _ in third] == ["gone", "exit"])
        assert not w2.reaped  # it still runs, still watched
        later.stdin.close()
        wait_until(lambda: later.pid in events)
    finally:
        os.close(held)
        if later is not None and not later.stdin.closed:
            later.stdin.close()
        monitor.close()
