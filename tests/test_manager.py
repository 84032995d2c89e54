"""The manager with real worker processes over real TCP on 127.0.0.1: tasks end to end,
packing, lost workers, peer transfers and their limit, TLS, passwords, the forever cache."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import require, require_tool

from vinemake.backends import ManagerAddress, ProviderOptions, options_tag
from vinemake.backends.local import LocalWorkers, standby_worker, wait_exit, worker_command
from vinemake.common.errors import InfrastructureError
from vinemake.common.hashing import hash_file
from vinemake.common.process import identity
from vinemake.common.spec import Resources
from vinemake.common.task import Task, TaskFile
from vinemake.manager.config import ManagerConfig
from vinemake.manager.manager import Manager
from vinemake.manager.transfers import MANAGER, install


def wait_for(condition, what: str, timeout: float = 30.0):
    """Poll until condition() is truthy: readiness, never a timing assertion."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


class Cluster:
    """A manager in this process and worker processes started like `vinemake-worker`."""

    def __init__(self, tmp: Path, **config):
        self.tmp = tmp
        self.config = ManagerConfig(workdir=str(tmp / "mgr"), **config)
        self.m = Manager.start(self.config)
        self.procs: dict[str, subprocess.Popen] = {}
        self.results = {}

    def worker(self, name, cores=1, memory=1000, disk=1000, *extra, wait=True):
        opts = ProviderOptions(worker_resources=Resources(cores=cores, memory_mb=memory,
                                                          disk_mb=disk),
                               worker_timeout_s=30)
        addr = ManagerAddress(self.m.host, self.m.port, self.config.password_file,
                              self.config.ssl)
        cmd = worker_command(addr, opts, str(self.tmp / f"w-{name}"), name) + list(extra)
        log = open(self.tmp / f"{name}.log", "w")
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            wait_for(lambda: name in self.m.workers, f"worker {name} to join")
        return self.procs[name]

    def log(self, name) -> str:
        return (self.tmp / f"{name}.log").read_text()

    def run(self, *tasks, timeout=60.0):
        for t in tasks:
            self.m.submit(t)
        return self.collect(*tasks, timeout=timeout)

    def collect(self, *tasks, timeout=60.0):
        """The results of tasks already submitted."""
        want = {t.id for t in tasks}
        deadline = time.monotonic() + timeout
        while not want <= self.results.keys():
            if time.monotonic() > deadline:
                raise AssertionError(f"tasks {want - self.results.keys()} did not finish")
            for r in self.m.wait(1.0):
                self.results[r.task_id] = r
        return [self.results[t.id] for t in tasks]

    def transfers(self):
        lines = Path(self.config.transfer_log).read_text().splitlines()[1:]
        return [dict(zip(("source", "dest", "key", "bytes", "start", "end", "ok"),
                         line.split("\t"), strict=True)) for line in lines]

    def close(self):
        self.m.close()
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            p.wait(timeout=30)


@pytest.fixture
def cluster(tmp_path):
    made = []

    def make(**config):
        c = Cluster(tmp_path, **config)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def task(i, command, inputs=(), outputs=(), **kw):
    return Task(id=i, rule_key=f"rule-{i}", name=f"t{i}", command=command,
                inputs=tuple(TaskFile(*f) for f in inputs),
                outputs=tuple(TaskFile(*f) for f in outputs), **kw)


def test_tasks_run_end_to_end_and_outputs_land_at_their_paths(cluster, tmp_path):
    c = cluster()
    c.worker("w1", cores=2)
    (tmp_path / "in.txt").write_text("hello\n")
    target = tmp_path / "out" / "deep" / "up.txt"
    r, = c.run(task(1, "tr a-z A-Z < in.txt > up.txt",
                    inputs=[("file-in", "in.txt", str(tmp_path / "in.txt"), 6)],
                    outputs=[("out-up", "up.txt", str(target))]))
    assert (r.status, r.worker, r.outputs) == \
        ("ok", "w1", (("out-up", 6, hash_file(str(target))[1]),))
    assert target.read_text() == "HELLO\n"
    assert os.listdir(target.parent) == ["up.txt"]  # no temporary left beside it
    # bigger workers may join later: no size is final (a rule too big waits, see
    # test_a_rule_bigger_than_every_worker_fails_after_its_wait)
    assert c.m.largest_worker() is None


def test_an_output_is_replaced_atomically(tmp_path):
    (tmp_path / "new").write_text("new")
    (tmp_path / "target").write_text("old")
    before = os.stat(tmp_path / "target").st_ino
    install(str(tmp_path / "new"), str(tmp_path / "target"))
    assert (tmp_path / "target").read_text() == "new"
    assert os.stat(tmp_path / "target").st_ino != before
    assert sorted(os.listdir(tmp_path)) == ["new", "target"]


def test_a_failed_tasks_outputs_go_to_its_failed_dir(cluster, tmp_path):
    c = cluster()
    c.worker("w1")
    target = tmp_path / "a.txt"
    failed = tmp_path / "failed" / "t1"
    r, = c.run(task(1, "echo half > a.txt; echo bad >&2; exit 2",
                    outputs=[("out-a", "a.txt", str(target))], failed_dir=str(failed)))
    assert (r.status, r.exit_code, r.stderr_tail) == ("failed", 2, "bad\n")
    assert not target.exists()
    assert (failed / "a.txt").read_text() == "half\n"


def test_tasks_are_packed_by_resources(cluster, tmp_path):
    c = cluster(worker_queue=0)  # nothing sent ahead: the manager's own packing is seen
    gate = tmp_path / "gate"
    c.worker("w1", cores=2, memory=1000)
    wait_gate = f"touch {tmp_path}/started.$ID; while [ ! -e {gate} ]; do sleep 0.01; done"
    cores = [task(i, wait_gate, env=(("ID", str(i)),), resources=Resources(cores=1))
             for i in range(4)]
    for t in cores:
        c.m.submit(t)
    wait_for(lambda: len(list(tmp_path.glob("started.*"))) == 2, "two tasks to start")
    # (the tasks after the first reach the loop a moment later: mailbox.py)
    wait_for(lambda: len(c.m.queue) == 2, "the other two to be queued")
    assert c.m.running_total == 2  # two cores: two at a time
    gate.touch()
    assert {r.status for r in c.collect(*cores)} == {"ok"}

    gate.unlink()
    big = [task(10 + i, wait_gate, env=(("ID", str(10 + i)),),
                resources=Resources(cores=1, memory_mb=600)) for i in range(2)]
    for t in big:
        c.m.submit(t)
    wait_for(lambda: len(list(tmp_path.glob("started.1?"))) == 1, "one big task to start")
    wait_for(lambda: len(c.m.queue) == 1, "the other big task to be queued")
    assert c.m.running_total == 1  # 600 MB each, 1000 MB offered
    gate.touch()
    assert {r.status for r in c.collect(*big)} == {"ok"}


def test_tasks_sent_ahead_wait_on_the_worker_until_resources_free(cluster, tmp_path):
    # A worker on this host gets a task per core beyond what fits; it starts each only when
    # its own resources allow, and the manager charges each as the worker starts it.
    c = cluster(worker_queue=1)
    c.worker("w1", cores=2, memory=1000)
    gates = [tmp_path / f"gate.{i}" for i in range(5)]
    wait_gate = f"touch {tmp_path}/started.$ID; while [ ! -e {tmp_path}/gate.$ID ]; do " \
                "sleep 0.01; done"
    tasks = [task(i, wait_gate, env=(("ID", str(i)),),
                  resources=Resources(cores=1, memory_mb=400)) for i in range(5)]
    for t in tasks:
        c.m.submit(t)
    w = c.m.workers["w1"]
    wait_for(lambda: len(list(tmp_path.glob("started.*"))) == 2, "two tasks to start")
    # (the tasks after the first reach the loop a moment later: mailbox.py)
    wait_for(lambda: len(c.m.queue) == 1, "the fifth task to be queued")
    assert (c.m.running_total, [t.id for t in w.waiting]) == (4, [2, 3])
    gates[0].touch()
    wait_for(lambda: (tmp_path / "started.2").exists(), "the worker to start task 2")
    c.collect(tasks[0])
    wait_for(lambda: [t.id for t in w.waiting] == [3, 4], "task 4 to be sent ahead")
    assert w.free.amounts()[:2] == (0.0, 200)  # tasks 1 and 2 charged
    for g in gates[1:]:
        g.touch()
    assert {r.status for r in c.collect(*tasks)} == {"ok"}
    assert (w.free.amounts(), c.m.running_total, list(w.waiting)) == ((2.0, 1000, 1000, 0), 0,
                                                                       [])


def test_results_of_tasks_sent_ahead_come_back_together(cluster, tmp_path, monkeypatch):
    # While tasks wait on the worker, their results are held briefly and leave in one Done:
    # one core runs them one by one, so without holding every Done would carry one result.
    c = cluster(worker_queue=4)
    c.worker("w1", cores=1)
    sizes = []
    handle = c.m.conns.handle  # each message a worker sent, decoded

    def spy(w, msg):
        if hasattr(msg, "outcomes"):  # Done (Started messages say when commands began)
            sizes.append(len(msg.outcomes))
        handle(w, msg)

    monkeypatch.setattr(c.m.conns, "handle", spy)
    tasks = [task(i, "true") for i in range(12)]
    assert {r.status for r in c.run(*tasks)} == {"ok"}
    assert sum(sizes) == 12 and max(sizes) > 1
    # one at a time, nothing waits on the worker: each result leaves at once
    sizes.clear()
    for i in range(3):
        c.run(task(20 + i, "true"))
    assert sizes == [1, 1, 1]


def test_a_task_that_declares_disk_is_not_sent_ahead(cluster, tmp_path):
    # Its room beside the worker's cache is checked when it is placed, not ahead of time.
    c = cluster(worker_queue=1)
    c.worker("w1", cores=1)
    gate = tmp_path / "gate"
    tasks = [task(i, f"touch {tmp_path}/s.{i}; while [ ! -e {gate} ]; do sleep 0.01; done",
                  resources=Resources(disk_mb=10)) for i in range(2)]
    for t in tasks:
        c.m.submit(t)
    wait_for(lambda: (tmp_path / "s.0").exists(), "the first task to start")
    # The run's first task wakes the manager's loop at once, the second reaches it a moment
    # later (mailbox.py): wait for it to be seen, then it must be waiting in the queue.
    wait_for(lambda: [t.id for t in c.m.queue] == [1], "the second task to be queued")
    assert list(c.m.workers["w1"].waiting) == []
    gate.touch()
    assert [r.status for r in c.collect(*tasks)] == ["ok", "ok"]


def test_a_task_sent_ahead_and_cancelled_never_starts(cluster, tmp_path):
    c = cluster(worker_queue=1)
    c.worker("w1", cores=1)
    tasks = [task(i, f"touch {tmp_path}/s.{i}; sleep 60") for i in range(2)]
    for t in tasks:
        c.m.submit(t)
    wait_for(lambda: (tmp_path / "s.0").exists(), "the first task to start")
    # (the second task reaches the loop a moment after the first: mailbox.py)
    wait_for(lambda: [t.id for t in c.m.workers["w1"].waiting] == [1], "task 1 sent ahead")
    c.m.cancel_all()
    wait_for(lambda: c.m.running_total == 0, "the worker to report both tasks")
    assert (list(tmp_path.glob("s.*")), c.m.wait(0.2)) == ([tmp_path / "s.0"], [])
    assert c.m.workers["w1"].free.cores == 1.0


def exclusive(tmp_path, i, gate=None):
    """A command that fails if another such command runs at the same moment (mkdir is
    atomic), optionally holding on until `gate` exists."""
    lock = tmp_path / "running"
    hold = f"while [ ! -e {gate} ]; do sleep 0.01; done; " if gate else "sleep 0.05; "
    return (f"mkdir {lock} || exit 7; touch {tmp_path}/s.{i}; {hold}rmdir {lock}")


def submit_exclusive(c, tmp_path, n):
    """n exclusive tasks, the first held at a gate: (tasks, gate) once the first runs."""
    gate = tmp_path / "gate"
    tasks = [task(i, exclusive(tmp_path, i, gate if i == 0 else None)) for i in range(n)]
    for t in tasks:
        c.m.submit(t)
    wait_for(lambda: (tmp_path / "s.0").exists(), "the first task to start")
    return tasks, gate


def test_max_tasks_caps_concurrency_on_the_worker_holding_tasks_ahead(cluster, tmp_path):
    c = cluster(max_tasks=1)
    c.worker("w1", cores=2)
    tasks, gate = submit_exclusive(c, tmp_path, 6)
    # -j does not stop tasks being sent ahead to the only worker: it was told the cap
    # (the queue is empty too while the rest are on their way to the loop: mailbox.py)
    wait_for(lambda: [t.id for t in c.m.workers["w1"].waiting] == [1, 2, 3, 4, 5],
             "the rest to be sent ahead")
    assert not c.m.queue
    gate.touch()
    assert [(r.status, r.exit_code) for r in c.collect(*tasks)] == [("ok", 0)] * 6


def test_max_tasks_caps_concurrency_for_library_calls_too(tmp_path):
    from vinemake.common.task import LibrarySpec
    from vinemake.worker.runner import Slots
    slots = Slots(Resources(cores=4, memory_mb=1000, disk_mb=1000), max_tasks=2)
    call = task(1, "f()", library=LibrarySpec("lib", "lib-key", "python lib.py", (),
                                             Resources(), 1, ()))
    slots.call_started()
    assert slots.offer(task(2, "true"))
    assert not slots.offer(task(3, "true"))  # the call and one command: the cap
    assert [t.id for t, _ in slots.release(call)] == [3]


def test_max_tasks_with_several_workers_sends_nothing_ahead(cluster, tmp_path):
    c = cluster(max_tasks=1)
    c.worker("w1", cores=2)
    c.worker("w2", cores=2)
    tasks, gate = submit_exclusive(c, tmp_path, 4)
    # (the tasks after the first reach the loop a moment later: mailbox.py)
    wait_for(lambda: len(c.m.queue) == 3, "the other three to be queued")
    assert c.m.running_total == 1
    assert not any(w.waiting for w in c.m.workers.values())
    gate.touch()
    assert [(r.status, r.exit_code) for r in c.collect(*tasks)] == [("ok", 0)] * 4


def test_a_task_on_a_killed_worker_is_rerun_on_another(cluster, tmp_path):
    c = cluster()
    c.worker("w1")
    t = task(1, f"echo $$ > {tmp_path}/pid.$(hostname).$$; "
                f"while [ ! -e {tmp_path}/gate ]; do sleep 0.01; done; echo done > out",
             outputs=[("out-1", "out", str(tmp_path / "out"))])
    c.m.submit(t)
    wait_for(lambda: list(tmp_path.glob("pid.*")), "the task to start on w1")
    c.worker("w2")
    os.kill(c.procs["w1"].pid, signal.SIGKILL)
    (tmp_path / "gate").touch()
    r, = c.collect(t)
    assert (r.status, r.worker) == ("ok", "w2")
    assert (tmp_path / "out").read_text() == "done\n"


def test_an_intermediate_lost_with_its_worker_is_made_again_when_needed(cluster, tmp_path):
    c = cluster()
    c.worker("w1")
    make = task(1, f"touch {tmp_path}/made.$$; echo mid > mid", outputs=[("out-mid", "mid", None)])
    r, = c.run(make)
    assert r.ok
    c.procs["w1"].kill()
    wait_for(lambda: "w1" not in c.m.workers, "the manager to notice")
    c.worker("w2")
    use, = c.run(task(2, "cat mid > out", inputs=[("out-mid", "mid", str(tmp_path / "mid"), 4)],
                      outputs=[("out-2", "out", str(tmp_path / "out"))]))
    assert (use.status, use.worker) == ("ok", "w2")
    assert (tmp_path / "out").read_text() == "mid\n"
    assert not (tmp_path / "mid").exists()  # it stays on the workers
    assert len(list(tmp_path.glob("made.*"))) == 2  # the producer ran again, unreported
    assert c.m.wait(0) == []


def test_a_lost_file_nobody_can_make_fails_its_consumer(cluster, tmp_path):
    c = cluster()
    c.worker("w1")
    r, = c.run(task(1, "cat ghost", inputs=[("out-ghost", "ghost", None, 1)]))
    assert (r.status, r.reason) == ("error", "input lost with a worker and no task known to "
                                             "re-create it: ghost")


def test_an_intermediate_moves_peer_to_peer(cluster, tmp_path):
    c = cluster()
    c.worker("small", cores=1, memory=100)
    make, = c.run(task(1, "head -c 300000 /dev/urandom > mid",
                       outputs=[("out-mid", "mid", None)]))
    c.worker("large", cores=1, memory=1000)
    use, = c.run(task(2, "wc -c < mid > n", inputs=[("out-mid", "mid", None, 300000)],
                      outputs=[("out-n", "n", str(tmp_path / "n"))],
                      resources=Resources(memory_mb=500)))
    assert (make.worker, use.worker, use.status) == ("small", "large", "ok")
    assert (tmp_path / "n").read_text().strip() == "300000"
    moved = [t for t in c.transfers() if t["key"] == "out-mid"]
    assert [(t["source"], t["dest"], t["bytes"], t["ok"]) for t in moved] == [
        ("small", "large", "300000", "ok")]


def test_copies_spread_from_peers_within_the_transfer_limit(cluster, tmp_path):
    c = cluster(transfer_limit=1)
    src = tmp_path / "big.in"
    src.write_bytes(os.urandom(2_000_000))
    names = ["w1", "w2", "w3"]
    for n in names:
        c.worker(n, 1, 1000, 1000, "--as-remote")  # or every worker links big.in from here
    gate = tmp_path / "gate"
    tasks = [task(i, f"touch {tmp_path}/s.{i}; while [ ! -e {gate} ]; do sleep 0.01; done; "
                     f"cksum < big > sum", env=(("I", str(i)),),
                  inputs=[("file-big", "big", str(src), 2_000_000)],
                  outputs=[("out-sum", "sum", None)]) for i in range(3)]
    tasks = [t.__class__(**{**t.__dict__, "outputs": (TaskFile(f"out-sum{t.id}", "sum"),)})
             for t in tasks]
    for t in tasks:
        c.m.submit(t)
    wait_for(lambda: len(list(tmp_path.glob("s.*"))) == 3, "three tasks to start")
    gate.touch()
    results = c.collect(*tasks)
    assert {r.worker for r in results} == set(names)
    big = [t for t in c.transfers() if t["key"] == "file-big"]
    assert len(big) == 3
    assert [t["source"] for t in big].count(MANAGER) == 1  # the rest came from peers
    for source in {t["source"] for t in big}:
        spans = sorted((float(t["start"]), float(t["end"])) for t in big
                       if t["source"] == source)
        pairs = zip(spans, spans[1:], strict=False)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in pairs)  # limit 1


def test_without_peer_transfers_everything_comes_from_the_manager(cluster, tmp_path):
    c = cluster(peer_transfers=False)
    src = tmp_path / "in"
    src.write_text("x" * 1000)
    c.worker("w1")
    r, = c.run(task(1, "cat in > mid", inputs=[("file-in", "in", str(src), 1000)],
                    outputs=[("out-mid", "mid", None)]))
    c.worker("w2", memory=2000)
    r2, = c.run(task(2, "cat in > copy", inputs=[("file-in", "in", str(src), 1000)],
                     outputs=[("out-c", "copy", None)], resources=Resources(memory_mb=1500)))
    assert (r.ok, r2.ok, r2.worker) == (True, True, "w2")
    assert {t["source"] for t in c.transfers()} <= {MANAGER}  # same host: links, not bytes


def test_a_worker_with_the_wrong_password_is_refused_and_the_manager_carries_on(cluster,
                                                                                tmp_path):
    (tmp_path / "pw").write_text("right\n")
    (tmp_path / "bad").write_text("wrong\n")
    c = cluster(password_file=str(tmp_path / "pw"))
    intruder = c.worker("intruder", 1, 1000, 1000, "--password", str(tmp_path / "bad"),
                        wait=False)
    assert intruder.wait(timeout=30) == 1
    assert "authentication failed: wrong secret" in c.log("intruder")
    c.worker("w1")
    r, = c.run(task(1, "true"))
    assert r.ok


def test_garbage_on_the_managers_port_closes_only_that_connection(cluster, tmp_path):
    c = cluster()
    c.worker("w1")
    for data in (struct.pack(">IB", 0xFFFFFFFF, 0), struct.pack(">IB", 9, 0) + b"{not json",
                 b"GET / HTTP/1.0\r\n\r\n"):
        with socket.create_connection((c.m.host, c.m.port), timeout=10) as s:
            s.sendall(data)
            assert s.recv(100) == b""  # closed on us
    r, = c.run(task(1, "true"))
    assert (r.ok, list(c.m.workers)) == (True, ["w1"])


def test_tls_with_a_self_signed_certificate(cluster, tmp_path):
    from vinemake.wire import protocol as p

    openssl = require_tool("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    c = cluster(ssl=True, ssl_cert=str(cert), ssl_key=str(key))
    c.worker("w1", 1, 1000, 1000, "--as-remote")  # so bytes really cross both ways
    (tmp_path / "in").write_text("secret data\n")
    r, = c.run(task(1, "cat in > out", inputs=[("file-in", "in", str(tmp_path / "in"), 12)],
                    outputs=[("out-1", "out", str(tmp_path / "out"))]))
    assert r.ok
    assert (tmp_path / "out").read_text() == "secret data\n"
    assert [(t["source"], t["dest"], t["key"]) for t in c.transfers()] == [
        (MANAGER, "w1", "file-in"), ("w1", MANAGER, "out-1")]
    # outputs come back pushed by the worker over TLS: a directory, and a failed run's file
    d, bad = c.run(task(3, "mkdir d && echo x > d/x",
                        outputs=[("out-d", "d", str(tmp_path / "d"))]),
                   task(4, "echo half > h; exit 1", outputs=[("out-h", "h", str(tmp_path / "h"))],
                        failed_dir=str(tmp_path / "failed")))
    assert (d.status, bad.status) == ("ok", "failed")
    assert (tmp_path / "d" / "x").read_text() == "x\n"
    assert (tmp_path / "failed" / "h").read_text() == "half\n"
    with socket.create_connection((c.m.host, c.m.port), timeout=10) as s:
        s.sendall(struct.pack(">IB", 9, 0) + b"{not tls!")  # plain bytes to a TLS port
        conn = p.Connection(s)
        assert conn.recv(p.Refuse).reason == "the manager speaks TLS: add --ssl"
        with pytest.raises((EOFError, ConnectionResetError)):
            conn.recv()  # then closed on us
    r, = c.run(task(2, "true"))
    assert r.ok


def test_the_forever_cache_survives_a_worker_restart(cluster, tmp_path):
    c = cluster()
    c.worker("w1")
    r, = c.run(task(1, "echo kept > f; echo gone > g", cache_forever=True,
                    outputs=[("out-f", "f", None)]))
    r2, = c.run(task(2, "echo gone > g", outputs=[("out-g", "g", None)]))
    assert r.ok and r2.ok
    c.procs["w1"].terminate()
    assert c.procs["w1"].wait(timeout=30) == 143
    wait_for(lambda: "w1" not in c.m.workers, "the manager to notice")
    assert not list((tmp_path / "w-w1").glob("run-*"))  # the run dir went with the worker
    c.worker("w1")
    r3, = c.run(task(3, "cat f > copy", inputs=[("out-f", "f", None, 5)],
                     outputs=[("out-c", "copy", str(tmp_path / "copy"))]))
    assert r3.ok, r3
    assert (tmp_path / "copy").read_text() == "kept\n"
    assert c.m.replicas.holders.get("out-g") is None


def test_the_local_backend_starts_a_worker_with_this_machines_resources(tmp_path):
    opts = ProviderOptions(worker_resources=Resources(cores=1),
                           extra=(("workdir", str(tmp_path / "w")),))
    m = Manager.start(ManagerConfig(workdir=str(tmp_path / "mgr")), LocalWorkers(), opts)
    try:
        m.submit(task(1, "echo $0 > /dev/null"))
        results = []
        wait_for(lambda: results.extend(m.wait(0.5)) or results, "the task")
        assert results[0].status == "ok"
        largest = m.largest_worker()
        assert largest.cores == 1
        assert largest.memory_mb > 0 and largest.disk_mb > 0
    finally:
        m.close()
    assert not list((tmp_path / "w").glob("run-*"))


def local_manager(tmp_path, provider):
    opts = ProviderOptions(worker_resources=Resources(cores=2),
                           extra=(("workdir", str(tmp_path / "w")),))
    return Manager.start(ManagerConfig(workdir=str(tmp_path / "mgr")), provider, opts)


def test_a_connection_cut_as_the_manager_closes_is_no_refusal_worth_a_line(tmp_path, caplog):
    # A first build that stops early (a bad target found after the manager started) stops
    # its local worker as it is joining: the manager said "refused connection from
    # 127.0.0.1: connection closed before the handshake" after the user's error.
    before = set(threading.enumerate())  # another test's handshake may still be ending
    m = Manager.start(ManagerConfig(workdir=str(tmp_path / "mgr")))

    def handshaking() -> bool:
        return any(t.name == "handshake" and t not in before for t in threading.enumerate())

    with socket.create_connection(("127.0.0.1", m.port)):
        wait_for(handshaking, "the manager to take the connection into its handshake")
        m.close()
    wait_for(lambda: not handshaking(), "the handshake to end")
    assert [r.getMessage() for r in caplog.records if "refused" in r.getMessage()] == []


def test_a_local_worker_killed_mid_run_is_replaced_and_its_tasks_rerun(tmp_path):
    provider = LocalWorkers()
    m = local_manager(tmp_path, provider)
    try:
        for i in range(4):
            m.submit(task(i, f"sleep 1; echo {i} > out", outputs=[
                (f"out-{i}", "out", str(tmp_path / f"out{i}"))]))
        wait_for(lambda: m.running_total > 0, "a task running on the first worker")
        first = provider.proc
        os.kill(first.pid, signal.SIGKILL)
        results = []
        wait_for(lambda: results.extend(m.wait(0.5)) or len(results) == 4, "every task")
    finally:
        m.close()
    assert first.wait() == -signal.SIGKILL
    assert provider.restarts == 1 and provider.proc is not first
    assert sorted(r.status for r in results) == ["ok"] * 4
    assert [(tmp_path / f"out{i}").read_text() for i in range(4)] == ["0\n", "1\n", "2\n", "3\n"]


def test_a_local_worker_that_dies_before_connecting_fails_the_run(tmp_path, monkeypatch):
    import vinemake.backends.local as local

    monkeypatch.setattr(local, "worker_command", lambda *a: [
        sys.executable, "-c", "import sys; sys.exit(3)"])
    m = local_manager(tmp_path, LocalWorkers())
    try:
        m.submit(task(1, "true"))
        with pytest.raises(InfrastructureError, match=r"the local worker \(pid \d+\) exited "
                           r"with status 3 before it connected"):
            wait_for(lambda: m.wait(0.5), "the failure")
    finally:
        m.close()


def test_a_standby_worker_nobody_claims_leaves_at_the_end_of_its_block_writing_nothing(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with standby_worker() as standby:
        pass
    assert standby.wait(30) == 0
    assert os.listdir(tmp_path) == []


def test_a_standby_worker_leaves_ctrl_c_to_vinemake_and_prints_nothing(tmp_path):
    # The terminal sends Ctrl-C to the whole process group, standby included, while vinemake
    # parses: vinemake handles it; the standby must neither die with a traceback nor stop.
    standby = subprocess.Popen([sys.executable, "-m", "vinemake.worker.standby"],
                               cwd=tmp_path, stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def ignores_sigint() -> bool:
        with open(f"/proc/{standby.pid}/status") as f:
            ignored = next(int(line.split()[1], 16) for line in f if line.startswith("SigIgn"))
        return bool(ignored & (1 << (signal.SIGINT - 1)))

    wait_for(ignores_sigint, "the standby to ignore SIGINT")
    standby.send_signal(signal.SIGINT)
    _, err = standby.communicate(b"", timeout=60)  # end of file: not needed after all
    assert (standby.returncode, err) == (0, b"")
    assert os.listdir(tmp_path) == []


# A program of its own: forking is declined while another thread runs (pytest's may).
FORKED_STANDBY = """
import sys, threading
from vinemake.backends.local import standby_worker
from vinemake.worker.standby import forked
if sys.argv[1] == "thread":
    threading.Thread(target=threading.Event().wait, daemon=True).start()  # runs till exit
with standby_worker(forked) as standby:
    print(type(standby).__name__, standby.pid, flush=True)
    sys.stdin.readline()
print(standby.wait(60), flush=True)
"""


def test_a_forked_standby_nobody_claims_ignores_ctrl_c_and_leaves_writing_nothing(tmp_path):
    program = subprocess.Popen([sys.executable, "-c", FORKED_STANDBY, "alone"], cwd=tmp_path,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    kind, pid = program.stdout.readline().split()
    assert kind == "ForkedChild"
    with open(f"/proc/{pid}/status") as f:
        masks = {k: int(v, 16) for k, _, v in (line.partition(":") for line in f)
                 if k in ("SigIgn", "SigBlk")}
    # From its first instruction on: blocked across the fork until its handlers are reset,
    # then ignored (the pid is printed by the parent, so either may be seen here).
    assert (masks["SigIgn"] | masks["SigBlk"]) & (1 << (signal.SIGINT - 1))
    os.kill(int(pid), signal.SIGINT)
    out, err = program.communicate("\n", timeout=60)
    assert (program.returncode, out, err) == (0, "0\n", "")
    assert os.listdir(tmp_path) == []


def test_a_standby_is_a_new_interpreter_while_another_thread_runs(tmp_path):
    program = subprocess.run([sys.executable, "-c", FORKED_STANDBY, "thread"], cwd=tmp_path,
                             input="\n", capture_output=True, text=True, timeout=60)
    kind, pid, status = program.stdout.split()
    assert (program.returncode, kind, status, program.stderr) == (0, "Popen", "0", "")


def test_the_local_worker_is_the_standby_started_before_with_the_environment_of_now(
        tmp_path, monkeypatch):
    later = tmp_path / "later"
    later.mkdir()
    monkeypatch.chdir(tmp_path)
    with standby_worker() as standby:
        # What changed after the standby started is what a worker started now would see.
        monkeypatch.setenv("VINEMAKE_TEST_LATE", "set after the standby started")
        monkeypatch.chdir(later)
        provider = LocalWorkers()
        m = local_manager(tmp_path, provider)
        try:
            assert provider.proc is standby
            m.submit(task(1, "echo $VINEMAKE_TEST_LATE > out", outputs=[
                ("out-1", "out", str(tmp_path / "out1"))]))
            results = wait_for(lambda: m.wait(0.5), "the task")
            cwd = os.readlink(f"/proc/{standby.pid}/cwd")
        finally:
            m.close()
    assert [r.status for r in results] == ["ok"]
    assert (tmp_path / "out1").read_text() == "set after the standby started\n"
    assert cwd == str(later)
    assert standby.poll() is not None  # stopped with the manager, as any local worker


def test_a_local_worker_is_restarted_at_most_max_restarts_times(tmp_path):
    import vinemake.backends.local as local

    provider = LocalWorkers()
    m = local_manager(tmp_path, provider)
    try:
        m.submit(task(1, "sleep 60"))
        for n in range(local.MAX_RESTARTS + 1):
            wait_for(lambda n=n: m.running_total > 0 and provider.restarts == n,
                     f"worker {n + 1} running the task")
            victim = provider.proc  # (the manager may replace it as soon as it is dead)
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
        with pytest.raises(InfrastructureError, match=r"was killed by signal 9, and it was "
                           r"restarted 3 times already: giving up"):
            # (the task itself, lost 4 times, may be reported lost first)
            wait_for(lambda: m.wait(0.5) and False, "the failure")
    finally:
        m.close()


def test_the_worker_command_line_matches_vinemake_worker():
    require(sys.executable is not None, "a python interpreter")
    cmd = worker_command(ManagerAddress("10.0.0.1", 9000, "/pw", True),
                         ProviderOptions(worker_resources=Resources(cores=2, memory_mb=512)),
                         "/tmp/w", "n1")
    assert cmd[1:] == ["-m", "vinemake.worker.cli", "10.0.0.1", "9000", "--workdir", "/tmp/w",
                       "--name", "n1", "--timeout", "60", "--cores", "2", "--memory", "512",
                       "--password", "/pw", "--ssl"]


LIBRARY = '''
import os
with open(os.environ["IMPORTS"], "a") as f:
    f.write("imported\\n")


def double(src, dst):
    with open(src) as f, open(dst, "w") as g:
        g.write(f.read() * 2)
'''


def test_function_calls_run_in_a_library_started_once(cluster, tmp_path):
    from vinemake.common.task import LibrarySpec

    (tmp_path / "lib.py").write_text(LIBRARY)
    c = cluster()
    c.worker("w1")
    lib = LibrarySpec(name="m", key="lib-1", command=f"{sys.executable} -m vinemake.library lib.py",
                      inputs=(TaskFile("file-lib", "lib.py", str(tmp_path / "lib.py"), 1),),
                      env=(("IMPORTS", str(tmp_path / "imports")),))
    results = []
    for i in range(3):
        (tmp_path / f"in.{i}").write_text(f"{i}")
        results += c.run(task(i, "double in.txt out.txt", library=lib,
                              inputs=[(f"file-{i}", "in.txt", str(tmp_path / f"in.{i}"), 1)],
                              outputs=[(f"out-{i}", "out.txt", str(tmp_path / f"out.{i}"))]))
    assert [r.status for r in results] == ["ok"] * 3
    assert [(tmp_path / f"out.{i}").read_text() for i in range(3)] == ["00", "11", "22"]
    assert (tmp_path / "imports").read_text() == "imported\n"


CALLS = '''
import os


def big(mb, dst):
    block = bytes(range(256)) * 4096  # 1 MiB
    with open(dst, "wb") as f:
        for _ in range(int(mb)):
            f.write(block)


def fail(dst):
    raise RuntimeError("no " + dst)


def die(dst):
    os.kill(os.getpid(), 9)
'''


@pytest.mark.parametrize("mode", ["fork", "direct"])
def test_calls_on_a_remote_worker_bring_back_large_results_and_report_failures(
        cluster, tmp_path, mode):
    from vinemake.common.task import LibrarySpec

    (tmp_path / "lib.py").write_text(CALLS)
    c = cluster()
    c.worker("w1", 1, 1000, 1000, "--as-remote")  # outputs travel back over the wire
    lib = LibrarySpec(name="m", key=f"lib-{mode}",
                      command=f"{sys.executable} -m vinemake.library --mode {mode} lib.py",
                      inputs=(TaskFile("file-calls", "lib.py", str(tmp_path / "lib.py"), 1),),
                      slots=2)

    def call(i, command):
        return task(i, command, library=lib, outputs=[(f"out-{i}", "o", str(tmp_path / f"o{i}"))])

    big, failed, died, after = c.run(call(1, "big 12 o"), call(2, "fail o"), call(3, "die o"),
                                     call(4, "big 1 o"))
    assert (big.status, after.status) == ("ok", "ok")
    assert (tmp_path / "o1").read_bytes() == bytes(range(256)) * 4096 * 12
    assert (tmp_path / "o4").stat().st_size == 1 << 20
    assert (failed.status, failed.reason) == ("failed", "function fail failed in library m")
    assert failed.stderr_tail.endswith("RuntimeError: no o\n")
    assert (died.status, died.reason, died.stderr_tail) == (
        "failed", "function die failed in library m", "the call was killed by signal 9 (SIGKILL)")
    assert not any((tmp_path / f"o{i}").exists() for i in (2, 3))


def test_directories_travel_to_and_from_a_remote_worker(cluster, tmp_path):
    c = cluster()
    c.worker("w1", 1, 1000, 1000, "--as-remote")
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "sub" / "x").write_text("x\n")
    r, = c.run(task(1, "mkdir res && cp -r data/sub res/copied && echo y > res/y",
                    inputs=[("file-d", "data", str(tmp_path / "data"), 2)],
                    outputs=[("out-res", "res", str(tmp_path / "res"))]))
    assert r.ok, r
    assert (tmp_path / "res" / "copied" / "x").read_text() == "x\n"
    assert (tmp_path / "res" / "y").read_text() == "y\n"
    assert [(t["source"], t["dest"], t["key"]) for t in c.transfers()] == [
        (MANAGER, "w1", "file-d"), ("w1", MANAGER, "out-res")]


def test_cancel_all_kills_running_tasks_and_reports_nothing(cluster, tmp_path):
    c = cluster()
    c.worker("w1", cores=2)
    c.m.submit(task(1, f"touch {tmp_path}/started; sleep 60"))
    c.m.submit(task(2, "sleep 60", resources=Resources(cores=2)))  # queued behind task 1
    wait_for(lambda: (tmp_path / "started").exists(), "the task to start")
    c.m.cancel_all()
    wait_for(lambda: c.m.running_total == 0, "the worker to report the killed task")
    assert (len(c.m.queue), c.m.wait(0.2)) == (0, [])


def after_memory_line(stderr: str) -> str:
    """What a worker said after its first line, which names its memory limits (this
    machine's: tests/test_memory_limits.py checks it)."""
    first, rest = stderr.split("\n", 1)
    assert first.startswith("vinemake-worker: memory limits: ")
    return rest


def test_a_worker_that_never_reaches_its_manager_says_why_and_fails(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]  # closed again: nobody listens there
    worker = subprocess.run([sys.executable, "-m", "vinemake.worker.cli", "127.0.0.1",
                             str(port), "--timeout", "1", "--workdir", str(tmp_path / "w")],
                            capture_output=True, text=True, timeout=60)
    # each reason once, however many retries
    assert (worker.returncode, after_memory_line(worker.stderr)) == (1, (
        f"vinemake-worker: cannot reach manager 127.0.0.1:{port}: connection refused, "
        "retrying\n"
        f"vinemake-worker: gave up: could not reach manager 127.0.0.1:{port} in 1 s\n"))
    assert os.listdir(tmp_path / "w") == ["forever"]


def test_a_worker_with_a_host_that_does_not_exist_says_so(tmp_path):
    worker = subprocess.run([sys.executable, "-m", "vinemake.worker.cli", "no-such-host.invalid",
                             "9", "--timeout", "1", "--workdir", str(tmp_path / "w")],
                            capture_output=True, text=True, timeout=60)
    assert worker.returncode == 1
    assert after_memory_line(worker.stderr).startswith("vinemake-worker: cannot reach manager "
                                    "no-such-host.invalid:9: ")
    assert worker.stderr.endswith(", retrying\nvinemake-worker: gave up: could not reach "
                                  "manager no-such-host.invalid:9 in 1 s\n")




def test_a_worker_with_a_malformed_host_name_says_so_without_a_traceback(tmp_path):
    # An empty label: Python's IDNA codec refused it with a UnicodeError (a traceback);
    # the lookup itself refuses it as any unknown name.
    worker = subprocess.run([sys.executable, "-m", "vinemake.worker.cli", "no..such.invalid",
                             "9", "--timeout", "1", "--workdir", str(tmp_path / "w")],
                            capture_output=True, text=True, timeout=60)
    assert (worker.returncode, after_memory_line(worker.stderr)) == (1, (
        "vinemake-worker: cannot reach manager no..such.invalid:9: name or service not known, "
        "retrying\n"
        "vinemake-worker: gave up: could not reach manager no..such.invalid:9 in 1 s\n"))
def test_an_idle_worker_leaves_after_its_timeout(cluster, tmp_path):
    c = cluster()
    # Not waited for in c.m.workers: it may join and leave between two looks at it.
    w = c.worker("w1", 1, 1000, 1000, "--timeout", "1", wait=False)  # the later --timeout wins
    assert w.wait(timeout=60) == 0
    assert f"connected to manager 127.0.0.1:{c.m.port} as w1\n" in c.log("w1")
    wait_for(lambda: "w1" not in c.m.workers, "the manager to notice")


GATED = '''
import os
import time


def wait(marker, gate):
    open(marker, "w").close()
    while not os.path.exists(gate):
        time.sleep(0.01)
'''


def gated_library(tmp_path, cores: int, slots: int):
    """A library (fork mode) whose `wait MARKER GATE` calls hold their slot until GATE exists."""
    from vinemake.common.task import LibrarySpec

    (tmp_path / "lib.py").write_text(GATED)
    return LibrarySpec(name="m", key="lib-gated",
                       command=f"{sys.executable} -m vinemake.library lib.py",
                       inputs=(TaskFile("file-gated", "lib.py", str(tmp_path / "lib.py"), 1),),
                       resources=Resources(cores=cores), slots=slots)


def test_a_library_holds_its_resources_and_its_slots_bound_calls(cluster, tmp_path):
    lib = gated_library(tmp_path, cores=2, slots=2)
    c = cluster()
    c.worker("w1", cores=3)
    gate = tmp_path / "gate"
    calls = [task(i, f"wait {tmp_path}/call.{i} {gate}", library=lib) for i in range(3)]
    plain = task(9, f"touch {tmp_path}/plain; while [ ! -e {gate} ]; do sleep 0.01; done",
                 resources=Resources(cores=1))
    for t in (*calls, plain):
        c.m.submit(t)
    wait_for(lambda: len(list(tmp_path.glob("call.*"))) == 2, "two calls to run")
    wait_for(lambda: (tmp_path / "plain").exists(), "the plain task to run")
    # two slots busy; the third call was sent ahead and waits on the worker for one (it
    # cannot start while the gate holds both); the library holds 2 of 3 cores, plain the third
    assert (c.m.running_total, list(c.m.queue)) == (4, [])
    assert len(list(tmp_path.glob("call.*"))) == 2
    assert c.m.workers["w1"].free.cores == 0
    gate.touch()
    assert [r.status for r in c.collect(*calls, plain)] == ["ok"] * 4


def test_cancel_all_stops_a_running_call_and_one_waiting_on_the_worker_for_a_slot(
        cluster, tmp_path):
    lib = gated_library(tmp_path, cores=1, slots=1)
    c = cluster()
    c.worker("w1", cores=2)
    gate = tmp_path / "gate"
    for i in range(2):  # both are sent: one takes the slot, the other waits on the worker
        c.m.submit(task(i, f"wait {tmp_path}/call.{i} {gate}", library=lib))
    # Either may take the slot: the worker starts calls on its pool's threads, which race.
    wait_for(lambda: list(tmp_path.glob("call.*")), "a call to run")
    wait_for(lambda: c.m.running_total == 2, "the second call to be sent")
    c.m.cancel_all()
    wait_for(lambda: c.m.running_total == 0, "the worker to report both calls")
    gate.touch()
    assert c.m.wait(0.2) == []  # nothing reported to the engine
    assert len(list(tmp_path.glob("call.*"))) == 1  # the waiting one withdrawn before it ran


def test_a_restarted_worker_removes_what_a_killed_one_left(cluster, tmp_path):
    c = cluster()
    old = c.worker("w1")
    old.kill()
    old.wait()
    wait_for(lambda: "w1" not in c.m.workers, "the manager to notice")
    [left] = (tmp_path / "w-w1").glob("run-*")
    assert left.name.startswith(f"run-{old.pid}-")
    new = c.worker("w1")
    assert [p.name for p in (tmp_path / "w-w1").glob("run-*")] == [f"run-{identity(new.pid)}"]


def test_a_worker_told_not_to_idle_out_stays_while_connected(cluster, tmp_path):
    c = cluster()
    stays = c.worker("stays", 1, 1000, 1000, "--timeout", "1", "--no-idle-exit")
    # started once `stays` joined; not waited for: it may join and leave between two looks
    control = c.worker("control", 1, 1000, 1000, "--timeout", "1", wait=False)
    assert control.wait(timeout=60) == 0  # idled out: `stays` was idle at least as long
    assert "as control\n" in c.log("control")
    assert stays.poll() is None
    r, = c.run(task(1, "true"))
    assert (r.ok, r.worker) == (True, "stays")


def test_by_hand_workers_are_told_how_to_connect():
    import io

    from vinemake.backends.byhand import ByHandWorkers

    out = io.StringIO()
    ByHandWorkers(out).start(ManagerAddress("10.1.2.3", 9123, "/pw", True), ProviderOptions())
    assert out.getvalue() == ("vinemake: waiting for workers; start them with:\n"
                              "    vinemake-worker 10.1.2.3 9123 --password /pw --ssl\n")


def test_by_hand_workers_listening_everywhere_are_told_this_hosts_name():
    import io
    import socket

    from vinemake.backends.byhand import ByHandWorkers

    out = io.StringIO()
    ByHandWorkers(out).start(ManagerAddress("0.0.0.0", 9123, None, False), ProviderOptions())
    told = out.getvalue().splitlines()[1].split()[1]
    assert told != "localhost" and told in (socket.getfqdn(), socket.gethostname())


def test_the_port_file_names_the_port_workers_reach(cluster, tmp_path):
    c = cluster(port_file=str(tmp_path / "port"))
    assert (tmp_path / "port").read_text() == f"{c.m.port}\n"
    c.worker("w1")
    assert c.m.port != 0


def test_a_worker_sending_ill_typed_fields_is_dropped_and_the_manager_carries_on(cluster):
    from vinemake.wire import protocol as p

    c = cluster()
    conn = p.connect(c.m.host, c.m.port)
    p.client_handshake(conn, p.new_hello("worker", name="liar", resources={"cores": 1}), None)
    wait_for(lambda: "liar" in c.m.workers, "the fake worker to join")
    conn.send(p.Transferred(key="k", source="x", size=1, start="soon", end="later"))
    wait_for(lambda: "liar" not in c.m.workers, "the manager to drop it")
    conn.close()
    c.worker("w1")
    r, = c.run(task(1, "true"))
    assert (r.ok, r.worker) == (True, "w1")


def test_a_task_too_big_for_now_does_not_block_smaller_ones(cluster, tmp_path):
    c = cluster()
    c.worker("w1", cores=2)
    gate = tmp_path / "gate"
    hold = task(1, f"while [ ! -e {gate} ]; do sleep 0.01; done")  # takes one of two cores
    big = [task(10 + i, "true", resources=Resources(cores=2)) for i in range(40)]
    small = task(2, f"touch {tmp_path}/small")
    c.m.submit(hold)
    wait_for(lambda: c.m.running_total == 1, "the first task to start")
    for t in (*big, small):
        c.m.submit(t)
    wait_for(lambda: (tmp_path / "small").exists(), "the small task to pass the big ones")
    gate.touch()
    assert {r.status for r in c.collect(hold, small, *big)} == {"ok"}


def test_outputs_come_back_from_a_worker_within_the_transfer_limit(cluster, tmp_path):
    c = cluster(transfer_limit=1)
    c.worker("w1", 4, 1000, 1000, "--as-remote")
    tasks = [task(i, "head -c 3000000 /dev/zero > out", outputs=[(f"out-{i}", "out",
                                                                  str(tmp_path / f"o.{i}"))])
             for i in range(4)]
    assert {r.status for r in c.run(*tasks)} == {"ok"}
    back = sorted((float(t["start"]), float(t["end"])) for t in c.transfers()
                  if t["source"] == "w1")
    assert len(back) == 4
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in
               zip(back, back[1:], strict=False))


def test_a_copy_no_one_can_fetch_is_forgotten_and_the_task_retried(cluster, tmp_path):
    from vinemake.wire import protocol as p

    c = cluster()
    with socket.create_server(("127.0.0.1", 0)) as s:
        dead_port = s.getsockname()[1]  # closed again: fetching from it fails at once
    liar = p.connect(c.m.host, c.m.port)
    p.client_handshake(liar, p.new_hello("worker", name="liar", resources={"cores": 0},
                                         file_port=dead_port), None)
    liar.send(p.Cached([["out-x", 5, "h"]]))
    wait_for(lambda: "out-x" in c.m.replicas.holders, "the unreachable holder to join")
    c.worker("w1")
    r, = c.run(task(1, "cat x", inputs=[("out-x", "x", None, 5)]))
    # tried from the unreachable copy, which was then forgotten; nothing else can make it
    assert (r.status, r.reason) == ("error", "input lost with a worker and no task known to "
                                             "re-create it: x")
    assert "out-x" not in c.m.replicas.holders and "liar" in c.m.workers
    liar.close()


def test_install_replaces_a_directory_and_makes_missing_parents(tmp_path):
    (tmp_path / "new" / "sub").mkdir(parents=True)
    (tmp_path / "new" / "sub" / "f").write_text("new")
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "stale").write_text("old")
    install(str(tmp_path / "new"), str(tmp_path / "target"))
    assert sorted(p.name for p in (tmp_path / "target").rglob("*")) == ["f", "sub"]
    (tmp_path / "file").write_text("x")
    install(str(tmp_path / "file"), str(tmp_path / "a" / "b" / "file"))
    assert (tmp_path / "a" / "b" / "file").read_text() == "x"
    assert sorted(os.listdir(tmp_path)) == ["a", "file", "new", "target"]


class RecordingProvider:
    """A WorkerProvider that starts nothing and keeps every Demand it is shown."""

    def __init__(self):
        self.demands = []

    def start(self, manager, options):
        self.address = manager

    def scale(self, demand):
        self.demands.append(demand)

    def close(self):
        pass


def test_the_provider_hears_the_work_waiting_and_every_worker_that_came_and_went(tmp_path):
    provider = RecordingProvider()
    m = Manager.start(ManagerConfig(workdir=str(tmp_path / "mgr")), provider)
    c = Cluster.__new__(Cluster)  # reuse the worker helper around this manager
    c.tmp, c.config, c.m, c.procs, c.results = tmp_path, m.config, m, {}, {}
    try:
        assert (provider.address.host, provider.address.port) == ("127.0.0.1", m.port)
        m.submit(task(1, "true", resources=Resources(cores=4)))
        wait_for(lambda: any(d.waiting for d in provider.demands), "a demand with work")
        assert provider.demands[-1].waiting == (Resources(cores=4),)
        w = c.worker("w1")
        w.kill()
        wait_for(lambda: provider.demands[-1].workers_left == 1, "the loss to be counted")
        assert (provider.demands[-1].workers_joined, provider.demands[-1].connected_workers) \
            == (1, 0)
    finally:
        m.close()
        c.close()


def test_a_task_with_batch_options_waits_for_a_worker_submitted_with_them(tmp_path):
    provider = RecordingProvider()
    m = Manager.start(ManagerConfig(workdir=str(tmp_path / "mgr")), provider)
    c = Cluster.__new__(Cluster)  # reuse the worker helper around this manager
    c.tmp, c.config, c.m, c.procs, c.results = tmp_path, m.config, m, {}, {}
    try:
        c.worker("plain")
        t = task(1, "true", batch_options="--comment=x")
        m.submit(t)
        wait_for(lambda: any(d.waiting_batch_options for d in provider.demands),
                 "a demand with the task's options")
        assert provider.demands[-1].waiting_batch_options == ("--comment=x",)
        assert provider.demands[-1].idle_workers == 1  # the plain worker did not take it
        tagged = "slurm-7_1" + options_tag("--comment=x")
        c.worker(tagged)
        r, = c.collect(t)
        assert (r.status, r.worker) == ("ok", tagged)
    finally:
        m.close()
        c.close()


class ClosingProvider(RecordingProvider):
    """Says what it was asked, in order, and whether the manager's port was open then."""

    def __init__(self):
        super().__init__()
        self.said = []

    def start(self, manager, options):
        super().start(manager, options)
        with socket.create_connection(("127.0.0.1", manager.port)):  # refused if not open
            self.said.append("start")

    def close(self):
        self.said.append("close")


def test_workers_start_once_the_port_is_open_and_stop_when_the_manager_cannot_start(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    provider = ClosingProvider()
    with pytest.raises(NotADirectoryError):
        Manager.start(ManagerConfig(workdir=str(tmp_path / "file" / "mgr")), provider)
    assert provider.said == ["start", "close"]
    with pytest.raises(ConnectionRefusedError):  # the port is closed again
        socket.create_connection(("127.0.0.1", provider.address.port)).close()


def test_no_worker_starts_when_the_tls_options_are_incomplete(tmp_path):
    provider = ClosingProvider()
    with pytest.raises(InfrastructureError) as e:
        Manager.start(ManagerConfig(workdir=str(tmp_path / "mgr"), ssl=True), provider)
    assert (str(e.value), provider.said) == ("--ssl needs a certificate and a key", [])


class RefusingProvider(RecordingProvider):
    def scale(self, demand):
        raise InfrastructureError("sbatch refused the worker jobs and retrying cannot help")


def test_a_provider_that_can_never_start_workers_ends_the_wait(tmp_path):
    m = Manager.start(ManagerConfig(workdir=str(tmp_path / "mgr")), RefusingProvider())
    try:
        m.submit(task(1, "true"))
        with pytest.raises(InfrastructureError) as e:
            m.wait(30)
        assert str(e.value) == "sbatch refused the worker jobs and retrying cannot help"
    finally:
        m.close()


def test_small_outputs_of_a_remote_worker_come_back_inside_its_outcome(cluster, tmp_path,
                                                                       monkeypatch):
    from vinemake.manager import delivery

    def no_fetch(*args):
        raise AssertionError("fetched")

    monkeypatch.setattr(delivery.Delivery, "_fetch_now", no_fetch)
    c = cluster()
    c.worker("w1", 1, 1000, 1000, "--as-remote")
    r, = c.run(task(1, "echo small > s; : > empty", outputs=[
        ("out-s", "s", str(tmp_path / "a" / "s")), ("out-e", "empty", str(tmp_path / "e"))]))
    assert r.ok, r
    assert ((tmp_path / "a" / "s").read_text(), (tmp_path / "e").read_bytes()) == ("small\n", b"")
    assert [(t["source"], t["dest"], t["key"], t["bytes"]) for t in c.transfers()] == [
        ("w1", MANAGER, "out-s", "6"), ("w1", MANAGER, "out-e", "0")]


def test_a_large_file_is_sent_by_each_source_to_one_worker_at_a_time(cluster, tmp_path):
    c = cluster(transfer_limit=3)
    src = tmp_path / "big.in"
    src.write_bytes(os.urandom(9_000_000))
    names = ["w1", "w2", "w3", "w4"]
    for n in names:
        c.worker(n, 1, 1000, 1000, "--as-remote")
    gate = tmp_path / "gate"
    tasks = [task(i, f"touch {tmp_path}/s.{i}; while [ ! -e {gate} ]; do sleep 0.01; done",
                  inputs=[("file-big", "big", str(src), 0)]) for i in range(4)]  # size unknown
    for t in tasks:
        c.m.submit(t)
    wait_for(lambda: len(list(tmp_path.glob("s.*"))) == 4, "four tasks to start")
    gate.touch()
    assert {r.worker for r in c.collect(*tasks)} == set(names)
    big = [t for t in c.transfers() if t["key"] == "file-big"]
    assert len(big) == 4 and [t["source"] for t in big].count(MANAGER) == 1
    for source in {t["source"] for t in big}:
        spans = sorted((float(t["start"]), float(t["end"])) for t in big if t["source"] == source)
        pairs = zip(spans, spans[1:], strict=False)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in pairs)  # one at a time


def test_a_worker_reconnects_to_a_manager_that_comes_back_and_runs_its_tasks(cluster, tmp_path):
    with socket.socket() as s:  # a port nobody uses, so the second manager can take it too
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    first = cluster(port=port)
    first.worker("w1")
    r, = first.run(task(1, "echo one > a.txt", outputs=[("out-a", "a.txt", str(tmp_path / "a"))]))
    assert r.ok
    first.m.close()
    second = Cluster(tmp_path / "again", port=port)
    try:
        wait_for(lambda: "w1" in second.m.workers, "w1 to reconnect")
        r, = second.run(task(2, "echo two > b.txt",
                             outputs=[("out-b", "b.txt", str(tmp_path / "b"))]))
        assert (r.status, r.reason, r.worker) == ("ok", "", "w1")
        assert (tmp_path / "b").read_text() == "two\n"
    finally:
        second.m.close()


def cached_keys(tmp_path, name):
    return sorted(p.name for p in (tmp_path / f"w-{name}").glob("run-*/cache/*"))


def test_forgotten_intermediates_leave_every_worker_cache(cluster, tmp_path):
    c = cluster()
    c.worker("small", memory=100)
    one, = c.run(task(1, "echo one > m1", outputs=[("out-m1", "m1", None)]))
    c.worker("large", memory=1000)
    two, = c.run(task(2, "cat m1 m1 > m2", inputs=[("out-m1", "m1", None, 4)],
                      outputs=[("out-m2", "m2", None)], resources=Resources(memory_mb=500)))
    end, = c.run(task(3, "cat m2 > out", inputs=[("out-m2", "m2", None, 8)],
                      outputs=[("out-3", "out", str(tmp_path / "out"))]))
    assert (one.worker, two.worker, end.status) == ("small", "large", "ok")
    assert cached_keys(tmp_path, "small") == ["out-m1"]  # m1 has two copies, m2 one
    assert cached_keys(tmp_path, "large") == ["out-m1", "out-m2"]
    c.m.forget(["out-m1", "out-m2"])
    wait_for(lambda: not cached_keys(tmp_path, "small") + cached_keys(tmp_path, "large"),
             "the dead intermediates to be removed from both workers")
    assert (tmp_path / "out").read_text() == "one\none\n"
    assert "out-m1" not in c.m.replicas.holders and "out-m2" not in c.m.replicas.holders
    assert [(w.cached, w.cache_bytes) for w in c.m.workers.values()] == [({}, 0), ({}, 0)]


def test_a_file_a_waiting_task_still_reads_is_not_forgotten(cluster, tmp_path):
    c = cluster()
    c.worker("w1", cores=1)
    one, = c.run(task(1, "echo one > m1", outputs=[("out-m1", "m1", None)]))
    held = task(2, "cat m1 > out", inputs=[("out-m1", "m1", None, 4)],
                outputs=[("out-2", "out", str(tmp_path / "out"))],
                resources=Resources(cores=2))  # waits for a worker that can fit it
    c.m.submit(held)
    c.m.forget(["out-m1"])
    other, = c.run(task(3, "true"))  # the forget was handled before this ran
    assert other.ok and cached_keys(tmp_path, "w1") == ["out-m1"]
    c.worker("w2", cores=2)
    r, = c.collect(held)
    assert r.ok and (tmp_path / "out").read_text() == "one\n"


def test_sigterm_at_any_moment_stops_a_busy_worker_promptly_with_143(cluster):
    # The local backend stops its worker with SIGTERM and waits 10 s before kill -9: a worker
    # must leave promptly from any moment (starting, idle, busy, between tasks).
    import random

    c = cluster()
    rng = random.Random(7)
    for round_ in range(12):
        joined = round_ % 3 != 0  # some are stopped while they start up
        proc = c.worker(f"s{round_}", cores=2, wait=joined)
        for i in range(20):
            c.m.submit(task(1000 * round_ + i, "true"))
        time.sleep(rng.uniform(0, 0.3))
        proc.terminate()
        # Before Python has set its handler, the signal's default action ends it at once.
        assert proc.wait(timeout=5) in ((143,) if joined else (143, -signal.SIGTERM)), \
            c.log(f"s{round_}")
    c.m.cancel_all()


def test_wait_exit_returns_as_the_process_exits_and_reaps_it():
    quick = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    start = time.monotonic()
    assert wait_exit(quick, 10) is True
    assert quick.returncode == 0 and time.monotonic() - start < 5
    slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert wait_exit(slow, 0.1) is False and slow.returncode is None
    finally:
        slow.kill()
    assert wait_exit(slow, 10) is True and slow.returncode == -signal.SIGKILL
    assert wait_exit(slow, 10) is True  # already reaped: no pidfd, nothing to wait for


THREADS = "env | grep -E '^(CORES|[A-Z]+_NUM_THREADS)=' | sort > threads.txt"


def test_thread_variables_are_the_cores_a_task_holds_unless_the_rule_sets_them(cluster,
                                                                               tmp_path):
    c = cluster()
    c.worker("w1", cores=4)
    runs = {1: Resources(cores=3), 2: Resources(), 3: Resources(cores=0.5)}
    results = c.run(*(task(i, THREADS, resources=r,
                           outputs=[(f"out-{i}", "threads.txt", str(tmp_path / f"{i}.txt"))])
                      for i, r in runs.items()),
                    task(4, THREADS, resources=Resources(cores=2),
                         env=(("OMP_NUM_THREADS", "7"),),
                         outputs=[("out-4", "threads.txt", str(tmp_path / "4.txt"))]))
    assert [r.status for r in results] == ["ok"] * 4

    def threads(n, omp=None):
        return "".join(f"{name}={omp if name == 'OMP_NUM_THREADS' and omp else n}\n"
                       for name in ("CORES", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                                    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                    "VECLIB_NUM_THREADS"))
    assert (tmp_path / "1.txt").read_text() == threads(3)
    assert (tmp_path / "2.txt").read_text() == threads(1)
    assert (tmp_path / "3.txt").read_text() == threads(1)
    assert (tmp_path / "4.txt").read_text() == threads(2, omp=7)
