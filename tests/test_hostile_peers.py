"""Issue 15, items 8-11: a real `vinemake -T workers` manager and real `vinemake-worker`
processes against hostile, broken, stopped and mismatched peers, over real TCP on 127.0.0.1.

Bad frames close only their own connection, with the reason in vinemake's output; what a peer
may hold before it authenticates is bounded (counted in threads and bytes of the manager's
process, not timed); a stopped worker is lost and its task runs elsewhere; a worker that cannot
reach its manager says why.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import test_manager
from test_manager import wait_for

from vinemake.common.spec import Resources
from vinemake.wire import protocol as p

VINEFILE = "out.txt:\n\techo hi > out.txt\n"
SECRET = "s3cret"


class Run:
    """`vinemake -T workers` in a directory of its own, and the workers started for it."""

    def __init__(self, tmp: Path, password: bool, *extra: str, vinefile: str = VINEFILE):
        self.tmp = tmp
        (tmp / "Vinefile").write_text(vinefile)
        self.password = None
        if password:
            self.password = tmp / "pw"
            self.password.write_text(SECRET + "\n")
        cmd = [sys.executable, "-m", "vinemake", "-T", "workers", "--port-file", "port", *extra]
        if self.password:
            cmd += ["--password", str(self.password)]
        self.err = open(tmp / "stderr", "w")
        self.proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.DEVNULL, stderr=self.err)
        self.port = int(wait_for(lambda: _read(tmp / "port"), "the port file"))
        self.workers: list[subprocess.Popen] = []

    def secret(self) -> bytes | None:
        return SECRET.encode() if self.password else None

    def worker(self, name: str, *extra: str) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "vinemake.worker.cli", "127.0.0.1", str(self.port),
               "--workdir", str(self.tmp / f"w-{name}"), "--name", name, "--cores", "1",
               "--memory", "1000", "--disk", "1000", "--timeout", "30", *extra]
        if self.password:
            cmd += ["--password", str(self.password)]
        w = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(
            self.tmp / f"{name}.log", "w"))
        self.workers.append(w)
        return w

    def finish(self) -> int:
        code = self.proc.wait(timeout=120)
        self.err.close()
        return code

    def notices(self) -> list[str]:
        """vinemake's lines without their time stamps."""
        return [re.sub(r"^\d\d:\d\d:\d\d ", "", line)
                for line in (self.tmp / "stderr").read_text().splitlines()]

    def close(self) -> None:
        for proc in [self.proc, *self.workers]:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


@pytest.fixture
def run(tmp_path):
    made = []

    def make(password=False, *extra, **kw):
        r = Run(tmp_path, password, *extra, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


cluster = test_manager.cluster  # the fixture: a manager here, real worker processes


def frame(payload: bytes) -> bytes:
    return struct.pack(">IB", len(payload), p.MSG) + payload


def hello_payload(**fields) -> bytes:
    body = {"t": "Hello", "version": p.VERSION, "role": "worker", "nonce": "n", **fields}
    return json.dumps(body).encode()


def closed_on_us(sock: socket.socket) -> bytes:
    """Everything the manager sent before it closed the connection."""
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    return got


def fake_worker(r: Run, name: str) -> p.Connection:
    """A peer that passes the handshake (it knows the secret, if any) and joins."""
    conn = p.connect("127.0.0.1", r.port)
    p.client_handshake(conn, p.new_hello("worker", name=name, resources={"cores": 1}),
                       r.secret())
    return conn


@pytest.mark.parametrize("password", [False, True], ids=["open", "password"])
def test_one_bad_frame_closes_only_its_connection_and_says_why(run, password):
    r = run(password)
    attacks = [
        frame(b"[" * 60_000),  # RecursionError in the JSON decoder, before authentication
        frame(hello_payload(resources={"cores": "many"})),  # TypeError in the scheduler
        frame(b"[" * 100_000),  # more than a handshake message may be
        frame(hello_payload(name=["x"] * 3)),
    ]
    for data in attacks:
        with socket.create_connection(("127.0.0.1", r.port), timeout=30) as s:
            s.sendall(data)
            closed_on_us(s)
    # the same from a peer that passed the handshake
    deep = fake_worker(r, "deep")
    deep.send_raw(frame(b"[" * 100_000))
    closed_on_us(deep.sock)  # it may have been sent a task first
    liar = fake_worker(r, "liar")
    liar.send_raw(frame(json.dumps({"t": "Done", "outcomes": [{"id": 1}]}).encode()))
    closed_on_us(liar.sock)
    r.worker("w1")
    assert r.finish() == 0
    assert (r.tmp / "out.txt").read_text() == "hi\n"
    lines = r.notices()
    for expected in [
        "refused connection from 127.0.0.1: garbled message: nested too deeply",
        "refused connection from 127.0.0.1: garbled message: Hello.resources.cores must be "
        "a number, not below zero",
        "refused connection from 127.0.0.1: oversized frame: 100000 bytes (limit 65536)",
        "refused connection from 127.0.0.1: garbled message: Hello.name must be a string",
        "worker deep left: garbled message: nested too deeply",
        "worker liar left: garbled message: Done.outcomes[0] lacks exit_code, failed, inline, "
        "measured, outputs, reason, status, stderr, unfetched, worker",
    ]:
        assert expected in lines
    assert not any("Traceback" in line for line in lines)


def test_what_unauthenticated_peers_hold_is_bounded(run):
    r = run(True)
    manager = psutil.Process(r.proc.pid)
    # The run's plan is said once the manager is up (its workers are asked for before it is
    # loaded, so "waiting for workers" comes before its threads exist).
    wait_for(lambda: " to run, " in (r.tmp / "stderr").read_text(), "the manager")
    threads, rss = manager.num_threads(), manager.memory_info().rss

    # 100 connections each claiming a 16 MiB frame and sending 2 MiB of it
    big = []
    for _ in range(100):
        s = socket.create_connection(("127.0.0.1", r.port), timeout=60)
        try:
            s.sendall(struct.pack(">IB", 16 * 1024 * 1024, p.MSG) + bytes(2 * 1024 * 1024))
        except OSError:
            pass  # refused after its header
        big.append(s)
    for s in big:
        closed_on_us(s)
    # One byte every 0.2 s: each read ends well within any per-read timeout.
    dribbler = socket.create_connection(("127.0.0.1", r.port), timeout=60)
    sent = []

    def dribble():
        for byte in frame(hello_payload(name="x" * 200)):
            try:
                dribbler.send(bytes([byte]))
            except OSError:
                return
            sent.append(byte)
            time.sleep(0.2)

    t = threading.Thread(target=dribble)
    t.start()
    # 100 more holding the first half of a Hello: beyond 16 from one address, turned away
    holders = [socket.create_connection(("127.0.0.1", r.port), timeout=60) for _ in range(100)]
    for s in holders:
        s.sendall(frame(hello_payload(name="y" * 1000))[:500])
    wait_for(lambda: sum(map(_closed, holders)) >= 100 - 16,
             "connections over the cap to be closed")
    # the dribbler and 15 holders are all that wait: a thread each at most
    assert manager.num_threads() <= threads + 16 + 2
    assert manager.memory_info().rss - rss < 40 * 1024 * 1024  # was +220 MB
    for s in holders:
        closed_on_us(s)  # cut at the handshake's time limit
    t.join()
    assert len(sent) < len(frame(hello_payload(name="x" * 200)))  # cut before it finished
    r.worker("w1")
    assert r.finish() == 0
    lines = r.notices()
    # said once, and the rest counted (a flood of the same refusal is not a screenful)
    timeout = "refused connection from 127.0.0.1: the handshake took longer than its time limit"
    said = [line for line in lines if line.removeprefix("vinemake: ").startswith(timeout)]
    held = sum(int(line.split("(")[1].split()[0]) for line in said if "(" in line)
    assert len(said) <= 3 and len(said) + held >= 16
    assert lines.count("refused connection from 127.0.0.1: oversized frame: 16777216 bytes "
                       "(limit 65536)") >= 1
    for s in [dribbler, *big, *holders]:
        s.close()


def _closed(s: socket.socket) -> bool:
    """Has the manager closed `s` (it sends nothing before the handshake's end)? Never
    blocks (a socket with a timeout would wait for data even with MSG_DONTWAIT)."""
    if not select.select([s], [], [], 0)[0]:
        return False
    try:
        return s.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


# ---------------------------------------------------------------- hung workers and managers

def test_a_stopped_worker_is_lost_its_task_rerun_and_its_sole_intermediate_remade(cluster,
                                                                                    tmp_path):
    task = test_manager.task

    c = cluster(heartbeat_s=0.2, silence_s=2.0)
    c.worker("w1")
    made, = c.run(task(1, f"touch {tmp_path}/made.$$; echo mid > mid",
                       outputs=[("out-mid", "mid", None)]))  # only on w1
    assert made.ok
    hung = task(2, f"echo $$ > {tmp_path}/pid.$(hostname).$$; "
                   f"while [ ! -e {tmp_path}/gate ]; do sleep 0.01; done; cat mid > out",
                inputs=[("out-mid", "mid", None, 4)],
                outputs=[("out-2", "out", str(tmp_path / "out"))])
    c.m.submit(hung)
    wait_for(lambda: list(tmp_path.glob("pid.*")), "the task to start on w1")
    os.kill(c.procs["w1"].pid, signal.SIGSTOP)  # alive, connected, silent
    try:
        c.worker("w2")
        (tmp_path / "gate").touch()
        r, = c.collect(hung)
    finally:
        os.kill(c.procs["w1"].pid, signal.SIGCONT)  # it wakes up, finds itself dropped

    assert (r.status, r.worker) == ("ok", "w2")
    assert (tmp_path / "out").read_text() == "mid\n"
    assert len(list(tmp_path.glob("made.*"))) == 2  # the intermediate was made again on w2
    wait_for(lambda: "w1" in c.m.workers, "w1 to join again")
    # the manager can count w1 in before w1 has written that it connected
    wait_for(lambda: c.log("w1").count(f"vinemake-worker: connected to manager 127.0.0.1:"
                                       f"{c.m.port} as w1\n") == 2, "w1 to say it reconnected")


def test_a_worker_hangs_up_on_a_silent_manager_and_connects_again(tmp_path):
    """A fake manager that completes the handshake, asks for heartbeats, and then says nothing."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    held = []

    def serve():
        for _ in range(2):
            sock, _ = listener.accept()
            conn = p.Connection(sock)
            hello = p.server_handshake(conn, None)
            conn.send(p.welcome_for(hello, None, worker_id="w", heartbeat_s=0.1, silence_s=1.0))
            held.append(conn)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    worker = subprocess.Popen([sys.executable, "-m", "vinemake.worker.cli", "127.0.0.1",
                               str(port), "--workdir", str(tmp_path / "w"), "--timeout", "30"],
                              stderr=subprocess.PIPE, text=True)
    try:
        t.join(timeout=60)
        assert len(held) == 2  # it hung up on the silent one and came back
        first = held[0]
        got = []
        with pytest.raises((EOFError, ConnectionResetError)):
            while True:
                got.append(first.recv())
        assert {type(m) for m in got} == {p.Cached, p.Heartbeat}
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=30)
        listener.close()
    lines = err.splitlines()[1:]  # after the memory limits line
    assert lines[:2] == [f"vinemake-worker: connected to manager 127.0.0.1:{port} as w",
                         "vinemake-worker: the manager has been silent for 1 s: reconnecting"]


# ---------------------------------------------------------------- TLS on one side only

@pytest.mark.parametrize("manager_tls", [True, False], ids=["plain-worker", "tls-worker"])
def test_a_worker_and_manager_disagreeing_on_tls_fail_with_the_reason(run, certificate,
                                                                      manager_tls):
    cert, key = certificate
    r = run(False, *(["--ssl", "--ssl-cert", str(cert), "--ssl-key", str(key)]
                     if manager_tls else []))
    w = r.worker("w1", *([] if manager_tls else ["--ssl"]))
    assert w.wait(timeout=60) == 1
    said = (r.tmp / "w1.log").read_text().split("\n", 1)[1]  # after its memory limits line
    if manager_tls:
        assert said == (f"vinemake-worker: manager 127.0.0.1:{r.port}: refused: the manager "
                        "speaks TLS: add --ssl\n")
    else:
        assert said.startswith(f"vinemake-worker: manager 127.0.0.1:{r.port}: TLS handshake "
                               "failed (")
        assert said.endswith("): the manager does not speak TLS? remove --ssl\n")
    r.worker("w2", *(["--ssl"] if manager_tls else []))
    assert r.finish() == 0
    lines = r.notices()
    assert ("refused connection from 127.0.0.1: the client does not speak TLS (no --ssl), "
            "this side does" if manager_tls else
            "refused connection from 127.0.0.1: the client speaks TLS (its --ssl), this side "
            "does not") in lines
    assert any(line.startswith("worker w2 joined from 127.0.0.1 (same host): 1 cores")
               for line in lines)


# ---------------------------------------------------------------- rules too big for every worker

def test_a_rule_bigger_than_every_worker_fails_after_its_wait(cluster, tmp_path):
    task = test_manager.task

    c = cluster(too_big_wait_s=1.0)
    c.worker("w1", cores=1)
    big, small = c.run(task(1, "true", resources=Resources(cores=4)), task(2, "true"))
    assert (big.status, big.reason) == ("error", "needs cores 4 but the largest worker offers 1; "
                                                 "waited 1 s for a bigger worker to join")
    assert (small.status, small.worker) == ("ok", "w1")


def test_a_rule_too_big_waits_for_a_bigger_worker_that_joins(cluster, tmp_path):
    task = test_manager.task

    c = cluster(too_big_wait_s=600.0)
    c.worker("w1", cores=1)
    c.m.submit(task(1, "true", resources=Resources(cores=2)))
    wait_for(lambda: c.m._too_big, "the rule to be seen too big")
    c.worker("w2", cores=2)
    r, = c.collect(task(1, "true"))
    assert (r.status, r.worker) == ("ok", "w2")


def test_with_a_local_worker_a_rule_too_big_stops_the_run_before_anything_starts(tmp_path):
    (tmp_path / "Vinefile").write_text(
        f"small:\n\ttouch {tmp_path}/ran.small; touch small\n\n"
        "@resources cores=512\nbig:\n\ttouch big\n")
    r = subprocess.run([sys.executable, "-m", "vinemake", "-k", "--cores", "2"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.splitlines()[-3:] == [
        "Vinefile:5:1: rule 'big' needs cores 512 but the largest worker offers 2", "big:", "^"]
    assert not (tmp_path / "ran.small").exists()


def test_the_managers_file_server_holds_unauthenticated_peers_to_the_same_gate(cluster):
    c = cluster(password_file=None)
    held = [socket.create_connection(("127.0.0.1", c.m.files.port), timeout=60)
            for _ in range(40)]
    # 16 from this address may wait in their handshake; the rest are closed at once
    wait_for(lambda: sum(map(_closed, held)) == 40 - 16, "connections over the cap to close")
    assert c.m.files._gate.waiting == 16
    for s in held:
        s.close()
    wait_for(lambda: c.m.files._gate.waiting == 0, "the handshakes to end")


def test_makeflows_keepalive_flags_lose_a_stopped_worker_after_interval_plus_timeout(run,
                                                                                   tmp_path):
    """-u 0.3 -t 1 (Makeflow's keepalive interval and timeout): a worker stopped mid-rule is
    lost after about 1.3 s of silence, and its rule runs on another worker."""
    gate = tmp_path / "gate"
    r = run(False, "-u", "0.3", "-t", "1", vinefile=(
        f"out.txt:\n\ttouch {tmp_path}/started.\\$\\$; while [ ! -e {gate} ]; do sleep 0.02; done;"
        " echo hi > out.txt\n"))
    w1 = r.worker("w1")
    wait_for(lambda: list(tmp_path.glob("started.*")), "the rule to start on w1")
    os.kill(w1.pid, signal.SIGSTOP)  # alive, connected, silent
    try:
        r.worker("w2")
        wait_for(lambda: len(list(tmp_path.glob("started.*"))) == 2, "the rule to start on w2")
        gate.touch()
        assert r.finish() == 0
    finally:
        os.kill(w1.pid, signal.SIGCONT)
    assert (tmp_path / "out.txt").read_text() == "hi\n"
    notices = r.notices()  # news in order with the run's events: w1 joined before it started
    assert notices.index("start   out.txt on w1") > next(
        i for i, line in enumerate(notices) if line.startswith("worker w1 joined"))
    left = [line for line in r.notices() if line.startswith("worker w1 left")]
    assert len(left) == 1, r.notices()
    # 1.3 s at the least; how much later the manager's loop looked is the machine's load
    assert re.fullmatch(r"worker w1 left: silent for [1-9]\d* s \(no heartbeat; stopped or "
                        r"hung\?\)", left[0]), left
