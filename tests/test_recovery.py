"""Recovering lost work, without sockets: a task lost with its worker is retried up to
max_retries, then reported lost; a lost intermediate is made again by its producer, silently;
a file nothing can make again fails the tasks that need it and is reported once."""

from __future__ import annotations

import collections

from vinemake.common.spec import Resources
from vinemake.common.task import Task, TaskFile, TaskResult
from vinemake.manager.recovery import Recovery
from vinemake.manager.replicas import Replicas
from vinemake.manager.workers import ConnectedWorker


def worker(wid="w1") -> ConnectedWorker:
    return ConnectedWorker.joined(wid, None, "127.0.0.1", 9000, False,
                         Resources(cores=4, memory_mb=1000, disk_mb=1000, gpus=0))


def task(tid, *inputs, outputs=()):
    return Task(id=tid, rule_key=f"rule-{tid}", name=f"t{tid}", command="true",
                inputs=tuple(inputs), outputs=tuple(outputs))


class Setup:
    def __init__(self, max_retries=1):
        self.replicas = Replicas()
        self.queue = collections.deque()
        self.lost = []
        self.recovery = Recovery(self.replicas, self.queue, max_retries, self.lost.append)


def test_a_task_lost_with_its_worker_is_queued_again_then_reported_lost():
    s = Setup(max_retries=1)
    t = task(1)
    w = worker()
    w.running[t.id] = t
    assert s.recovery.worker_lost(w, "gone") == []
    assert [(q.id, q.attempt) for q in s.queue] == [(1, 2)]
    w2 = worker("w2")
    w2.running[t.id] = s.queue.popleft()
    [r] = s.recovery.worker_lost(w2, "gone again")
    assert (r.task_id, r.status, r.worker, r.reason) == (
        1, "lost", "w2", "lost with worker w2 2 times: gone again")
    assert not s.queue


def test_a_cancelled_task_lost_with_its_worker_is_neither_retried_nor_reported():
    s = Setup()
    t = task(1)
    w = worker()
    w.running[t.id] = t
    s.recovery.cancel(t.id)
    assert (s.recovery.worker_lost(w, "gone"), list(s.queue)) == ([], [])
    assert s.recovery.was_cancelled(t.id) is False  # asked once


def test_a_lost_intermediate_is_made_again_by_its_producer_once():
    s = Setup()
    producer = task(1, outputs=[TaskFile("out-mid", "mid")])
    s.replicas.made(worker(), producer, [])
    s.recovery.recreate("out-mid")
    s.recovery.recreate("out-mid")  # a second consumer asks: already on its way
    assert [(q.id, q.attempt) for q in s.queue] == [(1, 2)]
    assert s.recovery.silent == {1} and s.lost == []
    s.recovery.rerun_ended(producer, TaskResult(task_id=1, status="ok"))
    assert s.recovery.silent == set() and s.lost == []


def test_a_lost_file_no_task_makes_is_reported_once_and_fails_its_consumers():
    s = Setup()
    s.recovery.recreate("out-orphan")
    s.recovery.recreate("out-orphan")
    assert (s.lost, list(s.queue)) == ([{"out-orphan"}], [])
    r = s.recovery.lost_input(task(2, TaskFile("out-orphan", "in.txt")))
    assert (r.status, r.reason) == (
        "error", "input lost with a worker and no task known to re-create it: in.txt")
    assert s.recovery.lost_input(task(3, TaskFile("out-other", "x"))) is None


def test_a_failed_re_run_loses_what_it_was_to_make_for_good():
    s = Setup()
    producer = task(1, outputs=[TaskFile("out-mid", "mid"), TaskFile("out-kept", "k")])
    w = worker()
    s.replicas.made(w, producer, [])
    s.replicas.add(w, "out-kept", "")  # still held somewhere: not lost
    s.recovery.recreate("out-mid")
    s.recovery.rerun_ended(producer, TaskResult(task_id=1, status="failed", reason="exit 1"))
    assert (s.lost, s.replicas.unrecoverable) == ([{"out-mid"}], {"out-mid"})


def test_an_unreachable_input_forgets_the_copies_offered_and_retries_the_task():
    s = Setup(max_retries=1)
    holder = worker("peer")
    s.replicas.add(holder, "file-in", "")
    t = task(1, TaskFile("file-in", "in"))
    assert s.recovery.unreachable(t, [("file-in", ["peer", "manager"])], {"peer": holder})
    assert ("file-in" in s.replicas.holders, holder.holds, [q.attempt for q in s.queue]) == (
        False, set(), [2])
    assert s.recovery.unreachable(t, [("file-in", ["peer"])], {"peer": holder}) is False
