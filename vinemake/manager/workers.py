"""The manager's record of one connected worker: its connection, resources and tasks.

Resources are charged as the worker itself charges them: a task sent beyond what fits waits
there (`waiting`, in order) and is charged only when the worker would start it (`promote`),
a function call is charged to its library's instance, not to itself. Everything here belongs
to the manager's loop thread.
"""

from __future__ import annotations

import collections
import dataclasses
import selectors
import socket
from dataclasses import field

from vinemake.common.amounts import Pool, held_by, offered_by
from vinemake.common.records import dataclass
from vinemake.common.spec import Resources
from vinemake.common.task import Task
from vinemake.manager.placement import MB, WorkerView
from vinemake.wire.protocol import FrameReader

__all__ = ["ConnectedWorker"]

_NOTHING = Resources(cores=0, memory_mb=0, disk_mb=0, gpus=0)


@dataclass
class ConnectedWorker:
    """One connected worker as the manager sees it (loop thread only)."""

    id: str
    sock: socket.socket
    addr: str
    file_port: int
    same_host: bool
    total: Resources
    free: Pool  # what running tasks do not hold
    reader: FrameReader = field(default_factory=FrameReader)
    outbuf: bytearray = field(default_factory=bytearray)
    runs: list = field(default_factory=list)  # Runs of this turn, sent as one message
    running: dict = field(default_factory=dict)  # task id -> Task
    holds: set = field(default_factory=set)
    charged: dict = field(default_factory=dict)  # key -> source charged for its transfer
    cached: dict = field(default_factory=dict)  # key in holds -> bytes it takes in the cache
    cache_bytes: int = 0  # sum of `cached`
    forever: set = field(default_factory=set)  # keys in `cached` that are `@cache forever`
    sizes: dict = field(default_factory=dict)  # the manager's sizes (of files in flight here)
    libs: dict = field(default_factory=dict)  # library key -> calls in flight (instance held)
    events: int = selectors.EVENT_READ  # as registered with the selector
    # Sent beyond what fits, in order: the worker starts each as its resources free up. In
    # `running` too (a lost worker's are re-queued), but their resources are not charged.
    waiting: collections.deque = field(default_factory=collections.deque)
    waiting_ids: set = field(default_factory=set)
    # Sent ahead of the tasks that make their inputs (Task.after), held there: task id -> the
    # ids of those still running there. In `running` too, never charged: once all succeed
    # the worker queues it as if it had just been sent (`unhold`).
    held: dict = field(default_factory=dict)
    held_for: dict = field(default_factory=dict)  # task id -> ids of the tasks held for it
    max_tasks: int | None = None  # the -j cap it was told: it starts no more at once
    whole_cores: int = 1  # its cores, whole, at least 1: how many tasks it is sent ahead
    heard: float = 0.0  # time.monotonic() of the last bytes from it (heartbeats count)

    @classmethod
    def joined(cls, wid: str, sock: socket.socket, addr: str, file_port: int, same_host: bool,
               resources: Resources, max_tasks: int | None = None) -> ConnectedWorker:
        """A newcomer, all of its resources free."""
        return cls(id=wid, sock=sock, addr=addr, file_port=file_port, same_host=same_host,
                   total=resources,
                   free=Pool(offered_by(resources)),
                   max_tasks=max_tasks, whole_cores=max(1, int(resources.cores or 1)))

    def view(self) -> WorkerView:
        if self.waiting:  # tasks wait there already: a new one would wait behind them
            return WorkerView(self.id, _NOTHING, len(self.running))
        c, m, d, g = self.free.amounts()
        cached, incoming = self.cache_bytes, frozenset()
        if self.charged:  # files on their way here take their space already
            incoming = frozenset(self.charged)
            cached += sum(self.sizes.get(k, 0) for k in incoming if k not in self.cached)
        return WorkerView(self.id, Resources(cores=c, memory_mb=m, disk_mb=d, gpus=g),
                          len(self.running), cached / MB, incoming, self.same_host)

    def start(self, task: Task, amount: Resources) -> None:
        """`task` was sent to run now, taking `amount` (its own or its library's, or none)."""
        if task.library is not None:
            self.libs[task.library.key] = self.libs.get(task.library.key, 0) + 1
        self.free.take(offered_by(amount))  # every field set: need()'s, or zeros
        self.running[task.id] = task

    def queue(self, task: Task) -> None:
        """`task` was sent to wait there until the worker has room for it."""
        self.running[task.id] = task
        self.waiting.append(task)
        self.waiting_ids.add(task.id)

    def hold(self, task: Task, waiting_for: set) -> None:
        """`task` was sent to wait there, without resources, for `waiting_for` to succeed."""
        self.running[task.id] = task
        self.held[task.id] = waiting_for
        for tid in waiting_for:
            self.held_for.setdefault(tid, []).append(task.id)

    def producer_ended(self, task_id: int, ok: bool) -> None:
        """`task_id` ended there: if well, the tasks held for it alone now queue for
        resources (the worker released them as it ended; as ordinary tasks, should they be
        re-run); if not, the worker sends them back."""
        waiters = self.held_for.pop(task_id, ())
        if not ok:
            return
        for tid in waiters:
            waiting = self.held.get(tid)
            if waiting is None:
                continue  # sent back or cancelled meanwhile
            waiting.discard(task_id)
            if not waiting:
                del self.held[tid]
                task = self.running[tid] = dataclasses.replace(self.running[tid], after=())
                self.queue(task)
        if self.waiting:
            self.promote()

    def release(self, task: Task) -> None:
        """`task` (already out of `running`) ended: its resources are free again."""
        if self.held.pop(task.id, None) is not None:
            pass  # sent back or cancelled while held: never charged
        elif task.id in self.waiting_ids:  # ended before it started (cancelled): never charged
            self.waiting_ids.discard(task.id)
            self.waiting.remove(task)
        elif task.library is not None:  # the instance keeps the library's resources
            self.libs[task.library.key] -= 1
        else:
            self.free.give(held_by(task.resources))
        if self.waiting:
            self.promote()

    def promote(self) -> None:
        """The worker starts its waiting tasks in order as they fit: charge them likewise."""
        cap = self.max_tasks
        while self.waiting:
            amounts = held_by(self.waiting[0].resources)
            # as the worker's Slots decide: in order, within resources and -j, or alone
            started = len(self.running) - len(self.waiting) - len(self.held)
            if started and ((cap is not None and started >= cap) or not self.free.fits(amounts)):
                return
            task = self.waiting.popleft()
            self.waiting_ids.discard(task.id)
            self.free.take(amounts)
