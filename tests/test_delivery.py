"""Delivery without a worker process: a fake fetch stands in for the wire, a fake clock for
time; files really land (atomically) in a temporary directory."""

from __future__ import annotations

import threading
import time

import xxhash

from vinemake.common.task import TaskResult
from vinemake.manager.delivery import Delivery, Inline, Install, Origin
from vinemake.manager.transfers import TransferLog
from vinemake.wire.protocol import ProtocolError

REMOTE = Origin("w1", "10.0.0.2", 9000, same_host=False)


class FakeWire:
    """fetch_file: writes the bytes a worker would send, or fails as the wire would."""

    def __init__(self, files, gate=None):
        self.files = files
        self.gate = gate
        self.active = self.most = 0
        self.lock = threading.Lock()

    def __call__(self, host, port, key, dest, secret, ssl_context, expected):
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            if self.gate is not None:
                self.gate.wait(10)
            data = self.files.get(key)
            if data is None:
                raise ProtocolError(f"{key}: not held")
            if expected and xxhash.xxh3_128_hexdigest(data) != expected:
                raise ProtocolError(f"corrupt transfer of {key}")
            with open(dest, "wb") as f:
                f.write(data)
            return len(data), xxhash.xxh3_128_hexdigest(data)
        finally:
            with self.lock:
                self.active -= 1


def delivery(tmp_path, wire, limit=3):
    results, drops = [], []
    log = TransferLog(str(tmp_path / "transfers.tsv"))
    d = Delivery(str(tmp_path / "work"), None, log, results.extend,
                 lambda wid, keys: drops.append((wid, keys)), limit=limit, fetch_file=wire,
                 clock=lambda: 1000.0)
    (tmp_path / "work").mkdir()
    return d, results, drops


def h(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def test_a_remote_output_is_fetched_checked_and_put_in_place(tmp_path):
    d, results, _ = delivery(tmp_path, FakeWire({"out-1": b"hello\n"}))
    target = tmp_path / "out" / "a.txt"
    d.deliver(REMOTE, TaskResult(1, "ok"), [Install(str(target), "out-1", h(b"hello\n"), "")])
    d.close()
    assert results == [TaskResult(1, "ok")]
    assert target.read_text() == "hello\n"
    log = (tmp_path / "transfers.tsv").read_text().splitlines()
    assert log[1] == "w1\tmanager\tout-1\t6\t1000.000000\t1000.000000\tok"


def test_bytes_that_do_not_match_the_hash_fail_the_task_and_leave_nothing(tmp_path):
    d, results, _ = delivery(tmp_path, FakeWire({"out-1": b"tampered"}))
    target = tmp_path / "a.txt"
    d.deliver(REMOTE, TaskResult(1, "ok"), [Install(str(target), "out-1", h(b"hello\n"), "")])
    d.close()
    assert [(r.status, r.reason) for r in results] == [
        ("error", "cannot put output in place from w1: corrupt transfer of out-1")]
    assert not target.exists() and list((tmp_path / "work").iterdir()) == []


def test_kept_failed_outputs_are_dropped_from_the_worker_once_fetched(tmp_path):
    d, results, drops = delivery(tmp_path, FakeWire({"failed.1.1.0": b"partial"}))
    d.deliver(REMOTE, TaskResult(1, "failed", 1),
              [Install(str(tmp_path / "failed" / "x"), "failed.1.1.0", "", "")])
    d.close()
    assert drops == [("w1", ["failed.1.1.0"])]
    assert (tmp_path / "failed" / "x").read_bytes() == b"partial"


def test_one_worker_serves_at_most_its_limit_of_transfers_at_once(tmp_path):
    gate = threading.Event()
    wire = FakeWire({f"out-{i}": b"x" for i in range(6)}, gate)
    d, results, _ = delivery(tmp_path, wire, limit=2)
    for i in range(6):
        d.deliver(REMOTE, TaskResult(i, "ok"),
                  [Install(str(tmp_path / f"o{i}"), f"out-{i}", h(b"x"), "")])
    threading.Timer(0.5, gate.set).start()
    d.close()
    assert wire.most == 2 and sorted(r.task_id for r in results) == list(range(6))


def test_a_turns_inline_outputs_are_installed_off_the_loop_then_reported_together(tmp_path):
    from vinemake.common.task import TaskFile

    wire = FakeWire({"out-big": b"big"})
    d, results, _ = delivery(tmp_path, wire)

    def out(name):
        return TaskFile(f"out-{name}", name, str(tmp_path / name))

    batch = [
        Inline(REMOTE, TaskResult(1, "ok"), (("out-a", b"a"),),
               [(out("a"), ("out-a", 1, h(b"a"), "/c/a"))], []),
        Inline(REMOTE, TaskResult(2, "ok"), (("out-e", b""),),
               [(out("e"), ("out-e", 0, h(b""), "/c/e"))], []),
        Inline(REMOTE, TaskResult(3, "ok"), (("out-x", b"not what was hashed"),),
               [(out("x"), ("out-x", 19, h(b"other bytes here!!"), "/c/x"))], []),
        Inline(REMOTE, TaskResult(4, "ok"), (("out-s", b"s"),),
               [(out("s"), ("out-s", 1, h(b"s"), "/c/s")),
                (out("big"), ("out-big", 3, h(b"big"), "/c/big"))], []),
    ]
    d.deliver_inline(batch)
    deadline = time.monotonic() + 30
    while len(results) < 4 and time.monotonic() < deadline:  # reported from the pool
        time.sleep(0.01)
    d.close()
    by_id = {r.task_id: r for r in results}
    assert sorted(by_id) == [1, 2, 3, 4]
    assert [by_id[i].status for i in (1, 2, 4)] == ["ok", "ok", "ok"]
    assert by_id[3].status == "error"
    assert by_id[3].reason == ("cannot put output in place: corrupt transfer of out-x: "
                               "inline bytes do not match the recorded hash")
    assert [(tmp_path / n).read_bytes() for n in ("a", "e", "s", "big")] == [
        b"a", b"", b"s", b"big"]
    assert not (tmp_path / "x").exists()
    logged = (tmp_path / "transfers.tsv").read_text().splitlines()[1:]
    assert sorted(line.split("\t")[2] for line in logged) == [
        "out-a", "out-big", "out-e", "out-s"]


def test_inline_bytes_are_checked_and_installed_at_once(tmp_path):
    from vinemake.common.task import TaskFile

    d, _, _ = delivery(tmp_path, FakeWire({}))
    f = TaskFile("out-1", "a", str(tmp_path / "a"))
    rest = d.install_inline("w1", [("out-1", b"hi")], [(f, ("out-1", 2, h(b"hi"), "/c"))])
    assert rest == [] and (tmp_path / "a").read_bytes() == b"hi"
    d.close()


def test_the_inline_outputs_of_successive_turns_are_installed_one_turn_at_a_time(tmp_path):
    # Creating files in one directory is serial in the kernel: threads doing it at once only
    # spin on the directory's lock. One thread takes the turns, in the order they came.
    from vinemake.common.task import TaskFile

    reporters, results, all_in = [], [], threading.Event()

    def report(batch):
        reporters.append(threading.current_thread().name)
        results.extend(batch)
        if len(results) == 40:
            all_in.set()

    d = Delivery(str(tmp_path / "work"), None, TransferLog(str(tmp_path / "transfers.tsv")),
                 report, lambda wid, keys: None, fetch_file=FakeWire({}), clock=lambda: 1.0)
    for i in range(40):
        f = TaskFile(f"out-{i}", f"t.{i}", str(tmp_path / f"t.{i}"))
        d.deliver_inline([Inline(REMOTE, TaskResult(i, "ok"), ((f"out-{i}", b""),),
                                 [(f, (f"out-{i}", 0, h(b""), f"/c/{i}"))], [])])
    assert all_in.wait(60)
    d.close()
    assert [r.task_id for r in results] == list(range(40))
    assert len(set(reporters)) == 1
    assert all((tmp_path / f"t.{i}").read_bytes() == b"" for i in range(40))
