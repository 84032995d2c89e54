"""The manager's worker connections without a worker process: a socket pair stands in for
the worker, a fake clock for time, and lists record what the manager would handle or lose."""

from __future__ import annotations

import selectors
import socket

import pytest

from vinemake.common.spec import Resources
from vinemake.common.task import Task
from vinemake.manager.connections import Connections
from vinemake.manager.workers import ConnectedWorker
from vinemake.wire.protocol import (
    HEADER,
    MSG,
    Drop,
    FrameReader,
    Kill,
    Run,
    Runs,
    Started,
    decode,
    encode,
    task_to_wire,
)


@pytest.fixture
def pair():
    """(connections, the worker's record, the worker's end of the socket, handled, lost)."""
    manager_end, worker_end = socket.socketpair()
    handled, lost = [], []
    workers: dict[str, ConnectedWorker] = {}
    sel = selectors.DefaultSelector()
    conns = Connections(sel, workers, lambda w, msg: handled.append(msg),
                        lambda w, why: lost.append(why), clock=lambda: 42.0)
    w = ConnectedWorker.joined("w1", manager_end, "127.0.0.1", 9000, True,
                               Resources(cores=1, memory_mb=1, disk_mb=1, gpus=0))
    workers["w1"] = w
    conns.add(w)
    yield conns, w, worker_end, handled, lost
    worker_end.close()
    manager_end.close()
    sel.close()


def read_messages(sock: socket.socket) -> list:
    reader = FrameReader()
    sock.settimeout(5)
    got: list = []
    while not got:
        got = [decode(payload) for kind, payload in reader.feed(sock.recv(65536))]
    return got


def test_messages_queued_in_one_turn_leave_together(pair):
    conns, w, worker_end, _, _ = pair
    conns.send(w, Kill([1]))
    conns.send(w, Drop(["out-a"]))
    assert w.outbuf  # nothing sent before the loop's flush
    conns.flush_all()
    assert read_messages(worker_end) == [Kill([1]), Drop(["out-a"])]


def test_the_runs_of_one_turn_leave_as_one_message_in_order_with_the_rest(pair):
    conns, w, worker_end, _, _ = pair
    runs = [Run(task_to_wire(Task(id=i, rule_key="r", name=f"t{i}", command=":")))
            for i in (1, 2, 3)]
    conns.send(w, runs[0])
    conns.send(w, runs[1])
    conns.send(w, Kill([2]))  # after the Runs it follows, never before
    conns.send(w, runs[2])  # alone: a plain Run
    conns.flush_all()
    got = read_messages(worker_end)
    assert [type(m) for m in got] == [Runs, Kill, Run]
    assert [encode(m) for m in (*got[0].each(), got[1], got[2])] == [encode(m) for m in
                                                                     (*runs[:2], Kill([2]),
                                                                      runs[2])]


def test_a_message_from_a_worker_is_handled_and_marks_it_heard(pair):
    conns, w, worker_end, handled, lost = pair
    worker_end.sendall(encode(Started([[7, 1700000000.0]])))
    conns.read(w)
    assert (handled, lost, w.heard) == ([Started([[7, 1700000000.0]])], [], 42.0)


def test_garbage_loses_the_worker_with_the_reason(pair):
    conns, w, worker_end, handled, lost = pair
    body = b'{"t": "no-such-message"}'
    worker_end.sendall(HEADER.pack(len(body), MSG) + body)
    conns.read(w)
    assert (handled, lost) == ([], ["garbled message: unknown message type"])


def test_a_closed_connection_loses_the_worker(pair):
    conns, w, worker_end, _, lost = pair
    worker_end.close()
    conns.read(w)
    assert lost == ["connection closed"]


def test_a_worker_lost_meanwhile_gets_nothing_more(pair):
    conns, w, worker_end, _, _ = pair
    conns.send(w, Kill([1]))
    conns.workers.pop("w1")  # lost before the flush
    conns.flush_all()
    worker_end.setblocking(False)
    with pytest.raises(BlockingIOError):
        worker_end.recv(1)
