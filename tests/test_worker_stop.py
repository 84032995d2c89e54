"""vinemake-worker stopped by SIGTERM or SIGINT, from every state it can be in: it leaves
through its cleanup (commands' process groups killed, run directory removed) with 128 + the
signal's number, and never hangs. Real worker processes, a real manager over TCP."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from test_manager import Cluster, task, wait_for

from vinemake.common.process import identity
from vinemake.common.spec import Resources
from vinemake.wire.protocol import (
    Connection,
    Run,
    encode,
    server_handshake,
    task_to_wire,
    welcome_for,
)

# Generous: a worker that leaves through its cleanup does so well within a second; one that
# hangs (the old failure) never does. The local backend itself waits 10 s before kill -9.
EXIT_S = 8.0


@pytest.fixture
def cluster(tmp_path):
    made = []

    def make(**config):
        made.append(Cluster(tmp_path, **config))
        return made[-1]

    yield make
    for c in made:
        c.close()


def run_dir(tmp: Path, name: str, proc: subprocess.Popen) -> Path:
    return tmp / f"w-{name}" / f"run-{identity(proc.pid)}"


def group_members(pgid: int) -> list[str]:
    """The names of the live processes in group `pgid` (a zombie awaiting its reaper is dead).

    A process may end between being listed and being asked its group: it is not a member."""
    names = []
    for p in psutil.process_iter(["name", "status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                names.append(p.info["name"])
        except (ProcessLookupError, psutil.Error):
            pass
    return names


def group_gone(pgid: int) -> bool:
    return not group_members(pgid)


def wait_group_gone(pgid: int) -> None:
    wait_for(lambda: group_gone(pgid), "the command's process group to be gone", EXIT_S)


def start_long_task(c: Cluster, tmp: Path, task_id: int) -> int:
    """A task whose command (and a child of it) sleeps; the command's process group."""
    pidfile = tmp / f"pid-{task_id}"
    c.m.submit(task(task_id, f"echo $$ > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; "
                             "sleep 1000 & sleep 1000"))
    wait_for(pidfile.exists, "the long command to start")
    pgid = int(pidfile.read_text())
    wait_for(lambda: group_members(pgid).count("sleep") == 2, "both sleeps to start")
    return pgid


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=EXIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"the worker did not exit within {EXIT_S} s of {sig!r}") from None


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_task_kills_the_command_group_and_removes_the_run_dir(
        cluster, tmp_path, sig, status):
    c = cluster()
    proc = c.worker("w", cores=1)
    pgid = start_long_task(c, tmp_path, 1)
    assert run_dir(tmp_path, "w", proc).is_dir()
    assert stop(proc, sig) == status, c.log("w")
    wait_group_gone(pgid)
    assert not run_dir(tmp_path, "w", proc).exists()
    assert "Traceback" not in c.log("w")


def test_sigterm_mid_task_many_times_never_hangs(cluster, tmp_path):
    # The reverted handler hung rarely (a lock the interrupted main thread held): repeat, with
    # the signal landing at a random moment while the long task runs and short ones come and go.
    c = cluster()
    rng = random.Random(11)
    for round_ in range(30):
        name = f"r{round_}"
        proc = c.worker(name, cores=2)
        pgid = start_long_task(c, tmp_path, 1000 * round_)
        for i in range(1, 6):
            c.m.submit(task(1000 * round_ + i, "true"))
        time.sleep(rng.uniform(0, 0.05))  # where the signal lands, not a timing assertion
        assert stop(proc) == 143, c.log(name)
        wait_group_gone(pgid)
        assert not run_dir(tmp_path, name, proc).exists()
        wait_for(lambda n=name: n not in c.m.workers, "the manager to see the worker leave")
        c.m.cancel_all()  # else the next worker gets this round's long task back


def test_sigterm_while_idle_between_tasks(cluster, tmp_path):
    c = cluster()
    proc = c.worker("w", cores=1)
    r, = c.run(task(1, "true"))
    assert r.ok
    assert stop(proc) == 143, c.log("w")
    assert not run_dir(tmp_path, "w", proc).exists()


def test_sigterm_while_idle_over_tls(cluster, tmp_path):
    # Over TLS the worker's read sits inside OpenSSL; stopping must wake it all the same.
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                           "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", str(key),
                           "-out", str(cert)], capture_output=True)
    assert made.returncode == 0, made.stderr
    c = cluster(ssl=True, ssl_cert=str(cert), ssl_key=str(key))
    proc = c.worker("w", cores=1)
    pgid = start_long_task(c, tmp_path, 1)
    assert stop(proc) == 143, c.log("w")
    wait_group_gone(pgid)
    assert not run_dir(tmp_path, "w", proc).exists()


def test_sigterm_while_reconnecting(cluster, tmp_path):
    c = cluster()
    proc = c.worker("w", 1, 1000, 1000, "--debug")
    c.m.close()  # the worker now retries with backoff, for up to its 30 s timeout
    wait_for(lambda: "cannot reach manager" in c.log("w") or proc.poll() is not None,
             "the worker to retry")
    assert proc.poll() is None
    assert stop(proc) == 143, c.log("w")
    assert not run_dir(tmp_path, "w", proc).exists()


class HalfFrameManager:
    """A manager that stops half-way through a frame: during the handshake, or after it."""

    def __init__(self, after_handshake: bool, pidfile: Path):
        self.after_handshake = after_handshake
        self.pidfile = pidfile
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sent = threading.Event()
        self.conns: list[Connection] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        sock, _ = self.listener.accept()
        conn = Connection(sock)
        self.conns.append(conn)
        if self.after_handshake:
            hello = server_handshake(conn, None)
            conn.send(welcome_for(hello, None, worker_id="half"))
            conn.send(run_message(1, f"echo $$ > {self.pidfile}.tmp; "
                                     f"mv {self.pidfile}.tmp {self.pidfile}; sleep 1000"))
        frame = encode(run_message(2, "true"))
        conn.send_raw(frame[:len(frame) // 2])
        self.sent.set()

    def close(self) -> None:
        self.listener.close()
        for conn in self.conns:
            conn.close()


def run_message(task_id: int, command: str) -> Run:
    return Run(task=task_to_wire(task(task_id, command)), fetch=[])


@pytest.mark.parametrize("after_handshake", [False, True], ids=["in-handshake", "in-session"])
def test_sigterm_while_blocked_mid_frame(tmp_path, after_handshake):
    pidfile = tmp_path / "pid"
    manager = HalfFrameManager(after_handshake, pidfile)
    workdir = tmp_path / "w"
    log = open(tmp_path / "w.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "vinemake.worker.cli", "127.0.0.1",
                             str(manager.port), "--workdir", str(workdir), "--cores", "1",
                             "--timeout", "60", "--quiet"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(manager.sent.is_set, "the manager to send half a frame")
        if after_handshake:
            wait_for(pidfile.exists, "the task sent whole to start")
        assert stop(proc) == 143, (tmp_path / "w.log").read_text()
        assert (tmp_path / "w.log").read_text() == ""  # a stop is no error, said nothing
        if after_handshake:
            wait_group_gone(int(pidfile.read_text()))
        assert not list(workdir.glob(f"run-{proc.pid}-*"))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        manager.close()


def test_a_signal_before_serving_starts_is_not_lost(tmp_path):
    # SIGTERM while the worker still sets up (before it connects): it must not connect and
    # serve as if nothing happened.
    script = ("import os, signal, sys, threading\n"
              "from vinemake.worker.stopping import StopSignals\n"
              "with StopSignals() as s:\n"
              "    os.kill(os.getpid(), signal.SIGTERM)\n"
              "    gate = threading.Event()\n"
              "    status = s.serve(lambda: gate.wait() and 0, gate.set)\n"
              "sys.exit(status)\n")
    proc = subprocess.run([sys.executable, "-c", script], timeout=30, capture_output=True)
    assert (proc.returncode, proc.stderr) == (143, b"")


def test_serving_returns_its_status_or_raises_its_error_on_the_main_thread():
    from vinemake.worker.stopping import StopSignals

    def fail() -> int:
        raise OSError(2, "No such file or directory", "/nowhere")

    before = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)]
    with StopSignals() as s:
        assert s.serve(lambda: 7, lambda: None) == 7
        with pytest.raises(OSError, match="/nowhere"):
            s.serve(fail, lambda: None)
    assert [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)] == before
    assert signal.set_wakeup_fd(-1) == -1  # none was set before, none is left


def test_a_stop_while_connecting_leaves_before_the_handshake(tmp_path, monkeypatch):
    # stop() can land after run() last looked at the stop flag but before the connection
    # it is opening is one stop() can hang up: that connection must not then be used.
    from vinemake.worker import worker as worker_module

    listener = socket.create_server(("127.0.0.1", 0))
    w = worker_module.Worker(worker_module.WorkerOptions(
        host="127.0.0.1", port=listener.getsockname()[1], resources=Resources(cores=1),
        workdir=str(tmp_path / "w")))

    real_connect = worker_module.connect

    def connect_then_stop(*args):
        conn = real_connect(*args)
        w.stop()
        return conn

    monkeypatch.setattr(worker_module, "connect", connect_then_stop)
    outcome: list = []
    serving = threading.Thread(target=lambda: outcome.append(w.run()))
    serving.start()
    try:
        sock, _ = listener.accept()
        sock.settimeout(30)
        assert sock.recv(1) == b""  # closed without a Hello
    finally:
        serving.join(timeout=30)
        listener.close()
    assert outcome == [0] and not os.path.exists(w.run_dir)


def test_a_command_that_dies_of_sigterm_alone_is_reported_as_signaled(cluster, tmp_path):
    # The worker waits STOPPING_GRACE_S to learn whether a SIGTERM was its own stop; it was
    # not, so the task is the rule's failure, as any other signal.
    c = cluster()
    c.worker("w", cores=1)
    r, = c.run(task(1, "kill -TERM $$"))
    assert (r.status, r.exit_code) == ("signaled", -15)


def test_a_command_killed_by_the_sigterm_that_stops_its_worker_is_run_again(cluster, tmp_path):
    # A batch system stops a pilot (scancel, a time limit) by signalling every process of the
    # job: the command dies of SIGTERM too, maybe before the worker hears its own. That is
    # the worker's end, not the rule's failure: the task must run again elsewhere.
    c = cluster()
    # A grace far longer than the test's pause, so where the pause lands cannot matter.
    first = c.worker("w1", 1, 1000, 1000, "--stop-grace", "60")
    marker = tmp_path / "ran-once"
    pidfile = tmp_path / "pid"
    c.m.submit(task(1, f"if [ -e {marker} ]; then exit 0; fi; touch {marker}; "
                       f"echo $$ > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; sleep 1000"))
    wait_for(pidfile.exists, "the command to start")
    os.killpg(int(pidfile.read_text()), signal.SIGTERM)  # the command first, as often happens
    # ...and the worker's own signal a moment later, inside the grace: without the grace
    # the command's death would be reported in that moment.
    time.sleep(0.3)
    assert stop(first) == 143, c.log("w1")
    c.worker("w2", cores=1)
    r, = c.collect(task(1, ""))
    assert (r.status, r.worker) == ("ok", "w2"), r


@pytest.mark.parametrize("next_session", [False, True], ids=["between", "reconnected"])
def test_a_task_released_as_its_session_ends_is_killed_not_left_running(tmp_path,
                                                                         next_session):
    # The session's end kills what runs and empties the queue; a task the reaping thread
    # took from the queue just before, and starts just after, must not run for nobody.
    from vinemake.worker import worker as worker_module
    from vinemake.worker.runner import Runner

    w = worker_module.Worker(worker_module.WorkerOptions(
        host="127.0.0.1", port=1, resources=Resources(cores=1), workdir=str(tmp_path / "w")))
    try:
        ended_session = Runner(w.cache, w.monitor, w._fetch, w.run_dir, "w", True)
        w.runner = Runner(w.cache, w.monitor, w._fetch, w.run_dir, "w", True)  # the next one
        marker = tmp_path / "ran-to-the-end"
        sent = []
        w._send = sent.append  # record what would have gone
        if next_session:  # another manager already took over: the outcome is not its own
            w._conn = object()
        w._running = 1
        w._run_task(ended_session, task(1, f"sleep 5; touch {marker}"), ())
        wait_for(lambda: w._running == 0, "the task to end")
        assert not marker.exists()
        w._drain_outbox()
        assert sent == []  # its outcome is nobody's: the next manager must not take it
    finally:
        w.close()


class _CountedStop:
    """A stop flag never set, whose waits are recorded and move a fake clock instead."""

    def __init__(self, clock: list[float]):
        self.clock, self.waits = clock, []

    def is_set(self) -> bool:
        return False

    def set(self) -> None:
        pass

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.clock[0] += seconds
        return False


@pytest.mark.parametrize("served, waits", [
    (True, [0.1, 0.2, 0.4, 0.5, 0.5, 0.5]),  # the next manager is joined within 0.5 s
    (False, [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]),  # still looking for its first
])
def test_a_worker_that_served_a_manager_looks_for_the_next_every_half_second(
        tmp_path, monkeypatch, served, waits):
    from vinemake.worker import worker as worker_module

    with socket.create_server(("127.0.0.1", 0)) as gone:
        port = gone.getsockname()[1]  # closed: every attempt is refused
    w = worker_module.Worker(worker_module.WorkerOptions(
        host="127.0.0.1", port=port, resources=Resources(cores=1), workdir=str(tmp_path / "w"),
        timeout_s=100.0))
    clock = [1000.0]
    stop = _CountedStop(clock)
    real_stop = w._stop
    try:
        monkeypatch.setattr(worker_module.time, "monotonic", lambda: clock[0])
        w._stop, w._served = stop, served
        assert w._connect_with_backoff() is None  # gave up after its 100 s
    finally:
        monkeypatch.undo()
        w._stop = real_stop
        w.close()
    assert stop.waits[:len(waits)] == waits and max(stop.waits) == waits[-1]
