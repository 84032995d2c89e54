"""The scheduler and the fetch planner without sockets or processes: the manager's real ledger
(Replicas, Recovery, FetchPlanner, ConnectedWorker records), a fake clock, and lists that
record what would be sent."""

from __future__ import annotations

import collections
import dataclasses

from vinemake.common.spec import Resources
from vinemake.common.task import LibrarySpec, Task, TaskFile
from vinemake.manager.config import ManagerConfig
from vinemake.manager.fetches import LARGE_FILE_BYTES, FetchPlanner
from vinemake.manager.recovery import Recovery
from vinemake.manager.replicas import Replicas
from vinemake.manager.scheduler import LOCALITY_WAIT_S, Scheduler
from vinemake.manager.transfers import MANAGER
from vinemake.manager.workers import ConnectedWorker

MANAGER_SOURCE = ["manager-host", 7000, MANAGER, False]


class Bench:
    """One scheduler over workers that exist only as the manager's records of them."""

    def __init__(self, worker_queue=0, transfer_limit=3, **config):
        self.now = 100.0
        self.queue: collections.deque[Task] = collections.deque()
        self.workers: dict[str, ConnectedWorker] = {}
        self.replicas = Replicas()
        self.lost: list = []
        self.recovery = Recovery(self.replicas, self.queue, 3, self.lost.append)
        self.fetches = FetchPlanner(self.replicas, self.recovery, self.workers, MANAGER_SOURCE,
                                    transfer_limit, True)
        self.sent: list[tuple[str, object]] = []
        self.reported: list = []
        self.fetching: list = []  # (worker, task id, keys ordered, keys in its cache)
        self.scheduler = Scheduler(
            ManagerConfig(worker_queue=worker_queue, transfer_limit=transfer_limit, **config),
            self.queue, self.workers, self.replicas, self.recovery, self.fetches, {},
            lambda w, msg: self.sent.append((w.id, msg)), self.reported.extend,
            lambda wid, keys: None, clock=lambda: self.now,
            fetching=lambda w, t, fetches, cached: self.fetching.append(
                (w.id, t.id, [key for key, _, _ in fetches], cached)))

    def worker(self, wid, cores=1, same_host=False):
        self.workers[wid] = ConnectedWorker.joined(
            wid, None, f"10.0.0.{len(self.workers) + 2}", 9000, same_host,
            Resources(cores=cores, memory_mb=1000, disk_mb=10_000, gpus=0))
        return self.workers[wid]

    def submit(self, *tasks):
        self.queue.extend(tasks)
        self.scheduler.schedule()

    def submit_first(self, task):
        self.queue.appendleft(task)
        self.scheduler.schedule()

    def placed(self):
        """(worker, task id, [(key, [source labels])]) of each Run sent, in order."""
        return [(wid, msg.task["id"], [(k, [s[2] for s in sources])
                                       for k, _h, sources in msg.fetch])
                for wid, msg in self.sent]

    def end(self, wid, tid):
        w = self.workers[wid]
        task = w.running.pop(tid)
        self.scheduler.release(w, task)
        self.scheduler.schedule()


def task(tid, cores=1, inputs=(), outputs=()):
    return Task(id=tid, rule_key=f"rule-{tid}", name=f"t{tid}", command="true",
                resources=Resources(cores=cores),
                inputs=tuple(TaskFile(k, k, path, size) for k, path, size in inputs),
                outputs=tuple(TaskFile(k, k, path) for k, path in outputs))


def made_on(bench, wid, key, size=1000):
    """`key`, kept on the workers (no path here), was made on `wid`."""
    producer = task(900 + len(bench.replicas.producers), outputs=[(key, None)])
    bench.replicas.made(bench.workers[wid], producer, [(key, size, "h-" + key, None)])


# ---------------------------------------------------------------- resources and order


def test_tasks_start_as_cores_free_up_in_queue_order():
    b = Bench()
    b.worker("w1", cores=1)
    b.submit(task(1), task(2), task(3))
    assert [tid for _, tid, _ in b.placed()] == [1]
    b.end("w1", 1)
    b.end("w1", 2)
    assert [tid for _, tid, _ in b.placed()] == [1, 2, 3]


def test_a_task_too_big_for_now_does_not_hold_back_smaller_ones():
    b = Bench()
    b.worker("w1", cores=2)
    b.submit(task(1), task(2, cores=2), task(3))
    assert [tid for _, tid, _ in b.placed()] == [1, 3]  # 2 waits for both cores
    b.end("w1", 1)
    b.end("w1", 3)
    assert [tid for _, tid, _ in b.placed()] == [1, 3, 2]


def test_one_pass_spreads_tasks_by_what_each_worker_has_left_after_the_last_one():
    # A pass makes each worker's view once and again only after a task went there: the
    # second task must see w1 with one core fewer and the third see both full.
    b = Bench()
    b.worker("w1", cores=2)
    b.worker("w2", cores=1)
    b.submit(task(1), task(2, cores=2), task(3), task(4), task(5))
    assert [(wid, tid) for wid, tid, _ in b.placed()] == [("w1", 1), ("w2", 3), ("w1", 4)]
    assert b.workers["w1"].free.cores == 0 and b.workers["w2"].free.cores == 0


def test_the_j_cap_holds_over_all_workers():
    b = Bench(max_tasks=2)
    b.worker("w1", cores=4)
    b.worker("w2", cores=4)
    b.submit(*(task(i) for i in range(1, 6)))
    assert len(b.sent) == 2 and b.scheduler.running_total == 2


def test_a_same_host_worker_gets_tasks_ahead_to_start_as_slots_free():
    b = Bench(worker_queue=2)
    w = b.worker("w1", cores=1, same_host=True)
    b.submit(*(task(i) for i in range(1, 5)))
    assert [tid for _, tid, _ in b.placed()] == [1, 2, 3]  # one running, two waiting there
    assert [t.id for t in w.waiting] == [2, 3] and b.scheduler.running_total == 3


def test_a_remote_worker_gets_tasks_ahead_only_once_they_are_known_to_be_short():
    b = Bench(worker_queue=16)
    w = b.worker("w1", cores=2)  # on another host
    b.submit(*(task(i) for i in range(1, 60)))
    assert [tid for _, tid, _ in b.placed()] == [1, 2]  # how long they take is not known yet
    b.scheduler.ran(task(1), 0.01)  # 10 ms each: 10 per core make REMOTE_AHEAD_S
    b.end("w1", 1)
    assert [tid for _, tid, _ in b.placed()] == list(range(1, 24))
    assert [t.id for t in w.waiting] == list(range(4, 24))  # 2 cores x 10, behind 2 and 3


def test_a_remote_worker_gets_no_tasks_ahead_that_run_long_or_must_fetch_inputs():
    b = Bench(worker_queue=16)
    b.worker("w1", cores=1)
    b.scheduler.ran(task(0), 2.0)  # a category known to run 2 s a task
    b.submit(task(1), task(2), task(3))
    assert [tid for _, tid, _ in b.placed()] == [1]
    b.end("w1", 1)
    assert [tid for _, tid, _ in b.placed()] == [1, 2]
    for _ in range(30):  # short now (a running average: it takes a few)
        b.scheduler.ran(task(0), 0.001)
    b.submit_first(task(4, inputs=[("k-in", "in.txt", 100)]))  # reads a file from here
    assert [tid for _, tid, _ in b.placed()] == [1, 2]  # so it is not sent ahead
    b.end("w1", 2)  # it starts where a core is free; the short one behind it goes ahead
    assert [(tid, fetched) for _, tid, fetched in b.placed()][2:] == [
        (4, [("k-in", [MANAGER])]), (3, [])]
    assert [t.id for t in b.workers["w1"].waiting] == [3]


LIB = LibrarySpec(name="lib", key="rule-lib", command="python3 -m vinemake.library lib.py",
                  resources=Resources(cores=1), slots=2)


def call(tid):
    return Task(id=tid, rule_key=f"rule-{tid}", name=f"c{tid}", command=f"f {tid}",
                resources=Resources(cores=1), library=LIB)


def test_an_instance_is_sent_as_many_calls_again_as_its_slots_and_a_command_gets_past():
    b = Bench()
    b.worker("w1", cores=2)  # one core for the library's instance, one for a command
    b.submit(*(call(i) for i in range(1, 7)), task(7))
    # two run in the slots, two more wait on the worker for one; the command starts too
    assert [tid for _, tid, _ in b.placed()] == [1, 2, 3, 4, 7]
    b.end("w1", 2)
    assert [tid for _, tid, _ in b.placed()] == [1, 2, 3, 4, 7, 5]
    assert b.workers["w1"].libs == {"rule-lib": 4}


def test_calls_ahead_are_at_most_four_beyond_the_slots():
    b = Bench()
    b.worker("w1", cores=1)
    wide = dataclasses.replace(LIB, slots=10)
    b.submit(*(dataclasses.replace(call(i), library=wide) for i in range(1, 20)))
    assert len(b.placed()) == 14


def test_a_command_behind_more_than_64_calls_waiting_for_slots_waits_its_turn():
    b = Bench()
    b.worker("w1", cores=2)
    b.submit(*(call(i) for i in range(1, 70)), task(100))  # 4 sent, 65 wait ahead of it
    assert [tid for _, tid, _ in b.placed()] == [1, 2, 3, 4]
    b.end("w1", 1)  # 5 is sent: 64 calls wait ahead of the command, which is looked at now
    assert [tid for _, tid, _ in b.placed()] == [1, 2, 3, 4, 5, 100]


# ---------------------------------------------------------------- locality, with a clock


def test_a_task_waits_for_the_busy_holder_of_its_input_then_runs_elsewhere():
    b = Bench()
    b.worker("w1", cores=1)
    b.worker("w2", cores=1)
    made_on(b, "w1", "out-mid")
    b.submit(task(1))  # takes w1's only core
    reader = task(2, inputs=[("out-mid", None, 1000)])
    b.submit(reader)
    assert [tid for _, tid, _ in b.placed()] == [1]  # waits for w1, though w2 is free
    b.now += LOCALITY_WAIT_S / 2
    b.scheduler.schedule()
    assert len(b.sent) == 1
    b.now += LOCALITY_WAIT_S
    b.scheduler.schedule()
    assert b.placed()[1] == ("w2", 2, [("out-mid", ["w1"])])  # copied from its holder


def test_a_task_goes_to_the_worker_holding_its_input_when_it_is_free():
    b = Bench()
    b.worker("w1", cores=1)
    b.worker("w2", cores=1)
    made_on(b, "w2", "out-mid", size=50_000_000)
    b.submit(task(1, inputs=[("out-mid", None, 50_000_000)]))
    assert b.placed() == [("w2", 1, [])]  # nothing to fetch


# ---------------------------------------------------------------- fetch planning


def test_a_peer_is_asked_before_the_manager_and_the_manager_is_the_last_resort(tmp_path):
    b = Bench()
    b.worker("w1")
    w2 = b.worker("w2")
    source = tmp_path / "in.txt"
    source.write_text("x")
    b.replicas.add(b.workers["w1"], "file-in", "h")
    plan = b.fetches.plan(task(1, inputs=[("file-in", str(source), 1)]), w2)
    assert [[s[2] for s in sources] for _, _, sources in plan] == [["w1", MANAGER]]


def test_the_manager_is_told_of_each_copy_ordered_once_not_again_for_a_later_reader(
        tmp_path):
    b = Bench()
    b.worker("w1", cores=2)
    source = tmp_path / "in.txt"
    source.write_text("x")
    readers = [task(i, inputs=[("file-in", str(source), 1)]) for i in (1, 2)]
    b.submit(*readers)
    # the second reader waits for the copy the first ordered: both list it, one copy started
    assert b.placed() == [("w1", 1, [("file-in", [MANAGER])]), ("w1", 2, [("file-in", [MANAGER])])]
    assert b.fetching == [("w1", 1, ["file-in"], []), ("w1", 2, [], [])]


def test_inputs_a_worker_holds_already_are_its_cache_hits_and_nothing_is_fetched(tmp_path):
    b = Bench()
    w1 = b.worker("w1", cores=2)
    source = tmp_path / "in.txt"
    source.write_text("x")
    made_on(b, "w1", "out-mid")
    b.replicas.add(w1, "file-in", "h")
    b.submit(task(1, inputs=[("file-in", str(source), 1), ("out-mid", None, 1000)]),
             task(2, inputs=[("file-new", str(source), 1), ("out-mid", None, 1000)]))
    assert b.placed() == [("w1", 1, []), ("w1", 2, [("file-new", [MANAGER])])]
    assert b.fetching == [("w1", 1, [], ["file-in", "out-mid"]),
                          ("w1", 2, ["file-new"], ["out-mid"])]


def test_a_task_sent_ahead_to_wait_on_its_worker_has_its_cache_hits_told_too(tmp_path):
    b = Bench(worker_queue=2)
    w1 = b.worker("w1", cores=1, same_host=True)
    source = tmp_path / "in.txt"
    source.write_text("x")
    b.replicas.add(w1, "file-in", "h")
    b.submit(*(task(i, inputs=[("file-in", str(source), 1), ("file-here", str(source), 1)])
               for i in (1, 2)))
    assert [tid for _, tid, _ in b.placed()] == [1, 2] and len(w1.waiting) == 1
    # a file on this host's disk is linked, not a hit
    assert b.fetching == [("w1", 1, [], ["file-in"]), ("w1", 2, [], ["file-in"])]


def test_a_source_serving_its_limit_makes_the_task_wait():
    b = Bench(transfer_limit=1)
    b.worker("w1")
    w2, w3 = b.worker("w2"), b.worker("w3")
    made_on(b, "w1", "out-mid")
    reader = task(1, inputs=[("out-mid", None, 1000)])
    first = b.fetches.plan(reader, w2)
    assert first == [["out-mid", "h-out-mid", [["10.0.0.2", 9000, "w1", False]]]]
    b.replicas.charge(w2, "out-mid", "w1")  # the scheduler charges the transfer it sends
    assert b.fetches.plan(reader, w3) is None  # w1 serves its one copy: wait


def test_a_large_file_is_forwarded_by_a_worker_still_receiving_it():
    b = Bench()
    b.worker("w1")
    w2, w3 = b.worker("w2"), b.worker("w3")
    made_on(b, "w1", "out-big", size=LARGE_FILE_BYTES)
    reader = task(1, inputs=[("out-big", None, LARGE_FILE_BYTES)])
    assert [s[2] for s in b.fetches.plan(reader, w2)[0][2]] == ["w1"]
    b.replicas.charge(w2, "out-big", "w1")
    # w1 sends a large file to one worker at a time: w2, still receiving it, is w3's first
    # source (cut-through), w1 the one to fall back on
    assert [s[2] for s in b.fetches.plan(reader, w3)[0][2]] == ["w2", "w1"]


def test_a_lost_intermediate_is_made_again_before_its_reader_runs():
    b = Bench()
    b.worker("w1")
    w2 = b.worker("w2")
    made_on(b, "w1", "out-mid")
    lost = b.recovery.worker_lost(b.workers.pop("w1"), "gone")
    assert lost == []
    assert b.fetches.plan(task(1, inputs=[("out-mid", None, 1000)]), w2) is None
    assert [t.outputs[0].key for t in b.queue] == ["out-mid"]  # its producer, queued again
