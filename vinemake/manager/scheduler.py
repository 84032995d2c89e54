"""Starting tasks: the queue of tasks waiting for a worker, and the pass that places them.

After every turn of the manager's loop, `schedule` looks a bounded way down the queue and
sends each task that fits somewhere (`placement.place`) to its worker, with the fetches its
inputs need (`FetchPlanner`). A task whose intermediates sit on a busy worker may wait for it
a while (delay scheduling, `placement.locality_wait_s`); a task that declares disk and fits
a worker but for its cache has files dropped there first (`placement.make_room`); on this
host a few more tasks than fit are sent ahead to wait in the worker (`_queue_ahead`). A task
submitted ahead of the tasks making its inputs (Task.after) is held on the worker that runs
them all (`_hold`), and goes back to the engine ("held_back") where it cannot be.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import random
import time
from collections.abc import Callable, Mapping

from vinemake.common.spec import Resources
from vinemake.common.task import LibrarySpec, Task, TaskResult
from vinemake.manager.config import ManagerConfig
from vinemake.manager.fetches import FetchPlanner
from vinemake.manager.placement import (
    MB,
    WorkerView,
    fits,
    holder,
    locality_wait_s,
    make_room,
    missing_bytes,
    need,
    place,
)
from vinemake.manager.recovery import Recovery
from vinemake.manager.replicas import Replicas
from vinemake.manager.workers import ConnectedWorker
from vinemake.wire.protocol import ENVIRONMENT, Run, task_to_wire

__all__ = ["Scheduler", "LOCALITY_WAIT_S"]

log = logging.getLogger("vinemake.manager")

# The least time a task waits for the busy worker that holds its intermediates (kept on
# workers, one copy) before it runs elsewhere and the file is copied: intermediates are usually
# consumed right after they are made, by a task that is quick to wait for. Larger inputs wait
# up to about their copy time at the observed rate (placement.locality_wait_s).
LOCALITY_WAIT_S = 1.0
# A worker on another host gets tasks ahead too, but only as much work per core as this
# (by its category's observed run time), so that when the queue runs dry no worker is left
# holding much that another, free sooner, could have run. Short tasks are what it is for: each
# would otherwise cost a result and a Run round trip with its slot idle.
REMOTE_AHEAD_S = 0.1
RUNTIME_WEIGHT = 0.25  # of the latest run in a category's running average of run times
# The most calls beyond its slots an instance of a library is sent (calls_sent_to): each
# waits in a thread of the worker's pool.
CALLS_AHEAD = 4


def calls_sent_to(lib: LibrarySpec) -> int:
    """How many calls to `lib` one instance is sent at once: its slots and as many again (up
    to 4 more), which wait on the worker for a slot. A call's slot then goes to the next one
    the moment it frees, instead of after its result reached the manager and the next call
    came back: for a call of a millisecond that round trip is most of a slot's time."""
    return lib.slots + min(lib.slots, CALLS_AHEAD)


class Scheduler:
    """Places queued tasks on workers and sends them (the manager's loop thread only)."""

    def __init__(self, config: ManagerConfig, queue: collections.deque,
                 workers: Mapping[str, ConnectedWorker], replicas: Replicas, recovery: Recovery,
                 fetches: FetchPlanner, delivering: Mapping[int, list[str]],
                 send: Callable[[ConnectedWorker, object], None],
                 report: Callable[[list[TaskResult]], None],
                 drop: Callable[[str, list[str]], None],
                 clock: Callable[[], float] = time.monotonic,
                 fetching: Callable[[ConnectedWorker, Task, list, list], None] | None = None):
        self.config = config
        self.queue = queue  # the manager's: tasks waiting for a worker, in order
        self.workers = workers
        self.replicas = replicas
        self.recovery = recovery
        self.fetches = fetches
        self.delivering = delivering  # task id -> keys fetched for delivery (not dropped)
        self.send = send
        self.report = report
        self.drop = drop  # tell a worker to drop files from its cache
        self.clock = clock
        # told of each task sent: the copies newly ordered for it, and the keys of its inputs
        # found in the worker's cache (the manager records them)
        self.fetching = fetching
        self.rng = random.Random(config.seed) if config.placement == "random" else None
        self.running_total = 0  # tasks sent and not ended (waiting in a worker included)
        self.evicted = 0  # cache entries dropped to make room for a task, ever
        self._first_tried: dict[int, float] = {}  # task id -> when it first waited
        self._room_tried: tuple | None = None  # state in which make_room last found nothing
        self.runtime: dict[str, float] = {}  # category -> average seconds a command ran
        self._views: dict[str, WorkerView] | None = None  # a pass's views, see _views_now

    def release(self, w: ConnectedWorker, task: Task) -> None:
        """`task` (already out of `w.running`) ended: what it took is free again."""
        self.running_total -= 1
        w.release(task)
        for f in task.inputs:  # a transfer that failed never sent "ok": free its source now
            self.replicas.uncharge(w, f.key)

    def ran(self, task: Task, wall_s: float) -> None:
        """`task`'s command ran `wall_s` seconds: how long its category's tasks take."""
        if task.library is not None:
            return
        old = self.runtime.get(task.category)
        self.runtime[task.category] = wall_s if old is None else \
            old + RUNTIME_WEIGHT * (wall_s - old)

    def worker_lost(self, w: ConnectedWorker) -> None:
        """`w` is gone: its tasks run no more (Recovery queues them again)."""
        self.running_total -= len(w.running)

    def schedule(self) -> None:
        """Send every queued task that can start now (one bounded pass down the queue)."""
        if not self.queue or not self.workers:
            return
        # This pass runs after every event, so it must cost next to nothing when nothing can
        # start, yet a task that cannot start must not block smaller ones behind it: look a
        # bounded way down the queue, counting full placement attempts apart from tasks ruled
        # out by the cheap core count.
        cap = self.config.max_tasks
        if cap is not None:  # tasks sent ahead to wait on a worker have not started
            cap += sum(len(w.waiting) + len(w.held) for w in self.workers.values())
        skipped: list[Task] = []
        # Libraries with an instance on every worker and every slot busy: a call to one found
        # so says the same of every call to it behind it in this pass. Calls queue by the
        # thousand behind a few slots, and this pass runs after every result: a run of 64 such
        # calls ends it (moving each aside cost the manager more than the call itself), so a
        # command queued behind them waits its turn, as one beyond the 1000th always did.
        full: set[str] = set()
        self._views = {}
        try:
            attempts = self._place_queued(cap, skipped, full)
        finally:
            self._views = None
        self.queue.extendleft(reversed(skipped))
        if attempts and self.queue:
            self._make_room()
        if self.queue and self.config.worker_queue:
            self._queue_ahead()

    def _place_queued(self, cap: int | None, skipped: list, full: set[str]) -> int:
        """The pass itself (see schedule): tasks that cannot start now go to `skipped`;
        how many full placement attempts failed."""
        attempts = looked = calls_in_a_row = 0
        while self.queue and attempts < 32 and looked < 1000 and calls_in_a_row < 64:
            if self.queue[0].after:  # takes no resources: whatever is free
                looked += 1
                self._hold(self.queue.popleft())
                continue
            if cap is not None and self.running_total >= cap:
                break
            most_free = max(w.free.cores for w in self.workers.values())
            if most_free < 1e-9 and self.queue[0].library is None:
                break
            task = self.queue.popleft()
            looked += 1
            if self.replicas.unrecoverable:
                failure = self.recovery.lost_input(task)
                if failure is not None:
                    self.report([failure])
                    continue
            cores = 0.0 if task.library is not None else task.resources.cores
            if task.library is not None and task.library.key in full:
                skipped.append(task)
                calls_in_a_row += 1
                continue
            calls_in_a_row = 0
            if (1.0 if cores is None else cores) > most_free + 1e-9:
                skipped.append(task)
            elif not self._try_dispatch(task):
                skipped.append(task)
                attempts += 1
                if task.library is not None and self._library_full(task.library):
                    full.add(task.library.key)
        return attempts

    def _hold(self, task: Task) -> None:
        """Send `task`, submitted ahead of the tasks that make its inputs, to wait on the
        worker that runs them all; else back to the engine, which submits it again once they
        succeeded: they are queued here, on several workers, or have ended (even well: their
        outputs may not be at their paths here yet, where another worker would read them)."""
        where: ConnectedWorker | None = None
        for tid in task.after:
            w = self._running_on(tid)
            if w is None or (where is not None and w is not where):
                self._back(task)
                return
            where = w
        assert where is not None
        # Under -j with several workers only the manager keeps the sum under the cap (as for
        # _queue_ahead); a held task is not placed, so it must fit where it waits.
        if ((self.config.max_tasks is not None and len(self.workers) > 1)
                or not fits(need(task.resources), where.total)):
            self._back(task)
            return
        made = {f.key for tid in task.after for f in where.running[tid].outputs}
        cached: list[str] = []
        fetches = self.fetches.plan(dataclasses.replace(
            task, inputs=tuple(f for f in task.inputs if f.key not in made)), where, cached)
        if fetches is None:
            self._back(task)
            return
        where.hold(task, set(task.after))
        self._send_run(where, task, fetches, cached)

    def _running_on(self, task_id: int) -> ConnectedWorker | None:
        for w in self.workers.values():
            if task_id in w.running:
                return w
        return None

    def _back(self, task: Task) -> None:
        self.report([TaskResult(task.id, "held_back",
                                reason="not held: the tasks it waits for are not all "
                                       "running on one worker")])

    def _views_now(self) -> list[WorkerView]:
        """What placement sees of every worker. Within a scheduling pass each worker's view
        is made once, and again only after a task went to that worker (nothing else changes
        while the pass runs): making every worker's view for every task placed cost the
        manager CPU in proportion to the number of workers, per task."""
        cache = self._views
        if cache is None:
            return [w.view() for w in self.workers.values()]
        views = []
        for wid, w in self.workers.items():
            v = cache.get(wid)
            if v is None:
                v = cache[wid] = w.view()
            views.append(v)
        return views

    def _queue_ahead(self) -> None:
        """Send a few tasks beyond what fits to each worker (they wait there).

        A worker then starts the next task the moment one ends, instead of idling while the
        result goes to the manager and the next Run comes back: for millisecond commands that
        round trip was a third of a slot's time. On this host `worker_queue` tasks per core;
        on another host only tasks known to be short (`_remote_depth`): a remote worker's
        queue could hold back a task that another worker, free sooner, would run. Only plain
        commands whose inputs are already there and that declare no disk (which placement
        checks against the worker's cache), in queue order. Under -j only while this is the
        one worker: it was told the cap and starts no more than that at once, but with
        several workers only the manager can keep the sum under it.
        """
        if self.config.max_tasks is not None and len(self.workers) > 1:
            return
        per_core = self.config.worker_queue
        for w in self.workers.values():
            if not self.queue:
                return
            cores = w.whole_cores
            if w.same_host and len(w.waiting) > cores * per_core // 2:
                continue  # full enough (said first: with many workers, most are, each turn)
            depth = cores * (per_core if w.same_host else self._remote_depth(self.queue[0]))
            # Refilled once half empty, so that Runs leave (and are read) a few at a time.
            if not depth or len(w.waiting) > depth // 2:
                continue
            fitting = None  # the last Resources found to fit `w` (tasks share one a category)
            while self.queue and len(w.waiting) < depth:
                task = self.queue[0]
                cached: list[str] = []
                if task.after or task.library is not None or task.batch_options:
                    return
                if task.resources is not fitting:
                    if task.resources.disk_mb or not fits(need(task.resources), w.total):
                        return
                    fitting = task.resources
                if ((not w.same_host and self._remote_depth(task) * cores < depth)
                        or ((task.inputs or task.minis)
                            and self.fetches.plan(task, w, cached) != [])):
                    return
                self.queue.popleft()
                w.queue(task)
                self.running_total += 1
                self.send(w, Run(task_to_wire(task), []))
                if self.fetching is not None:
                    self.fetching(w, task, [], cached)

    def _remote_depth(self, task: Task) -> int:
        """Tasks per core like `task` a worker on another host may hold ahead: as many as run
        in REMOTE_AHEAD_S by its category's average (none before one has ended)."""
        took = self.runtime.get(task.category)
        if took is None:
            return 0
        return min(self.config.worker_queue, int(REMOTE_AHEAD_S / max(took, 1e-3)))

    def _wait_for_holder(self, task: Task, views, wid: str) -> bool:
        """Should `task` wait for the busy worker that holds its intermediates? For a while."""
        best = holder(task, views, self.replicas.holders, self.replicas.remote_only)
        if best is None or best == wid or not fits(need(task.resources), self.workers[best].total):
            self._first_tried.pop(task.id, None)
            return False
        first = self._first_tried.setdefault(task.id, self.clock())
        there = next(v for v in views if v.id == wid)
        r = self.replicas
        limit = locality_wait_s(missing_bytes(task, there, r.holders, r.sizes), r.rate,
                                LOCALITY_WAIT_S)
        if self.clock() - first < limit:
            return True
        del self._first_tried[task.id]
        return False

    def _try_dispatch(self, task: Task) -> bool:
        if task.library is not None:
            return self._try_dispatch_call(task)
        views = self._views_now()
        wid = place(task, views, self.replicas.holders, self.rng, self.replicas.sizes,
                    remake_s=self.replicas.remake_s, rate=self.replicas.rate)
        if wid is None:
            return False
        if (self.rng is None and self.replicas.remote_only
                and self._wait_for_holder(task, views, wid)):
            return False
        return self._dispatch(task, self.workers[wid], need(task.resources))

    def _try_dispatch_call(self, task: Task) -> bool:
        """A function call goes to a worker whose instance of its library has room for it
        (calls_sent_to); else it starts an instance where the library's resources fit, held
        from then on."""
        lib = task.library
        assert lib is not None
        cap = calls_sent_to(lib)
        ready = [w for w in self.workers.values() if w.libs.get(lib.key, cap) < cap]
        if ready:
            w = min(ready, key=lambda w: (w.libs[lib.key], len(w.running), w.id))
            return self._dispatch(task, w, Resources(cores=0, memory_mb=0, disk_mb=0, gpus=0))
        views = [v for v, w in zip(self._views_now(), self.workers.values(), strict=True)
                 if lib.key not in w.libs]
        if not views:  # an instance runs on every worker already, each one full
            return False
        wid = place(dataclasses.replace(task, resources=lib.resources), views,
                    self.replicas.holders, self.rng, self.replicas.sizes)
        if wid is None:
            return False
        return self._dispatch(task, self.workers[wid], need(lib.resources))

    def _library_full(self, lib: LibrarySpec) -> bool:
        cap = calls_sent_to(lib)
        return all(lib.key in w.libs and w.libs[lib.key] >= cap for w in self.workers.values())

    def _dispatch(self, task: Task, w: ConnectedWorker, want: Resources) -> bool:
        cached: list[str] = []
        fetches = self.fetches.plan(task, w, cached)
        if fetches is None:
            return False
        w.start(task, want)
        if self._views is not None:
            self._views.pop(w.id, None)  # it changed: made again when next asked for
        self._send_run(w, task, fetches, cached)
        return True

    def _send_run(self, w: ConnectedWorker, task: Task, fetches: list, cached: list) -> None:
        """Send `task` (recorded on `w` already) with the copies it needs ordered."""
        self.running_total += 1
        # a file already on its way to `w` (for another task) is not a new copy
        new = [f for f in fetches if f[0] not in w.charged]
        for key, _, sources in fetches:
            self.replicas.charge(w, key, sources[0][2])
        self.send(w, Run(task_to_wire(task), fetches))
        if self.fetching is not None:
            self.fetching(w, task, new, cached)

    # ------------------------------------------------------------ making room in caches

    def _make_room(self) -> None:
        """A waiting task that declares disk fits a worker but for its cache: drop files there.

        Runs after a pass that placed nothing more, and only when caches or tasks changed
        since it last found nothing to drop (it reads the whole queue).
        """
        state = (self.replicas.epoch, self.running_total, len(self.queue), len(self.workers))
        if state == self._room_tried:
            return
        # Only a task that declares disk can want room (and `needed` reads the whole queue,
        # so a queue of calls waiting for a slot must not pay it on every pass).
        waiting = [(i, task) for i, task in enumerate(itertools.islice(self.queue, 32))
                   if task.library is None and task.resources.disk_mb]
        keep = self.needed() if waiting else set()
        for i, task in waiting:
            views = [w.view() for w in self.workers.values()]
            caches = {w.id: self.replicas.cache_of(w) for w in self.workers.values() if w.cached}
            choice = make_room(task, views, caches, self.replicas.holders, self.replicas.sizes,
                               keep)
            if choice is not None and choice[1]:
                self._evict(self.workers[choice[0]], choice[1], task)
                del self.queue[i]
                if not self._try_dispatch(task):
                    self.queue.appendleft(task)
                return
            # no room to make where its inputs are: copy them where it fits after all
            wid = place(task, views, self.replicas.holders, None, self.replicas.sizes,
                        room_first=False)
            if wid is not None and self.rng is None:
                del self.queue[i]
                if not self._dispatch(task, self.workers[wid], need(task.resources)):
                    self.queue.appendleft(task)
                return
        self._room_tried = (self.replicas.epoch, self.running_total, len(self.queue),
                            len(self.workers))

    def needed(self) -> set[str]:
        """Keys no worker may drop now: inputs of waiting and running tasks (with what their
        workers make of them: `@mini` outputs, unpacked environments), files on their way
        (their source may be any holder) and files awaiting delivery."""
        keep = self.replicas.moving_keys()
        for keys in self.delivering.values():
            keep.update(keys)
        running = (t for w in self.workers.values() for t in w.running.values())
        for t in itertools.chain(self.queue, running):
            keep.update(f.key for f in t.inputs)
            if t.library is not None:
                keep.update(f.key for f in t.library.inputs)
                if t.library.environment:
                    keep.add(ENVIRONMENT + t.library.environment)
            if t.environment:
                keep.add(ENVIRONMENT + t.environment)
            for m in t.minis:
                keep.update(f.key for f in (*m.inputs, *m.outputs))
        return keep

    def _evict(self, w: ConnectedWorker, keys, task: Task) -> None:
        """Drop `keys` from `w`'s cache (freeing its disk in our accounting) for `task`."""
        log.info("dropping %d file(s), %.1f MB, from the cache of %s to make room for %s",
                 len(keys), sum(w.cached.get(k, 0) for k in keys) / MB, w.id, task.name)
        self.drop(w.id, list(keys))
        for key in keys:
            self.replicas.unlist(key, w.id)  # if the last copy, its producer makes it again
        self.evicted += len(keys)
