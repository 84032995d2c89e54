"""The handover between the manager's loop and the other threads: work in, results out.

The engine's thread submits tasks and waits for results; helper threads (handshakes,
deliveries) post callables for the loop to run. Everything crossing threads goes through
here, under one lock; the loop is woken through a socket pair it selects on, once per batch:
the engine submits a batch and then waits, so a submit wakes the loop only when the inbox is
full, or when it is the run's first (the workers are idle until the loop sees it). Results
the loop produces are held for the end of its turn, or a little longer while tasks still wait
in its queue (see `publish`), so the engine's thread is not woken per task.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable

from vinemake.common import batching
from vinemake.common.errors import InfrastructureError
from vinemake.common.task import Task, TaskResult

__all__ = ["Mailbox", "SUBMIT_LATENCY_S"]

# The longest a submitted task waits for the loop when the engine does not call wait().
SUBMIT_LATENCY_S = 0.05
# While tasks still wait in the manager's queue, the engine is not what keeps workers busy:
# results are handed over in batches (common/batching.py) instead of waking the engine's
# thread for each one, which cost more CPU than the rest of a null task's handling.
RESULT_HOLD_S = batching.HAND_OVER_WAIT_S
RESULT_BATCH = batching.HAND_OVER_MAX
INBOX_WAKE = 256  # submitted tasks that wake the loop even before wait()


class Mailbox:
    """Tasks, posted callables and forgotten keys in; results out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results_ready = threading.Condition(self._lock)
        self.inbox: list[Task] = []  # the loop peeks at it unlocked
        self._events: list[Callable[[], object]] = []  # from other threads, run on the loop
        self._dead: list[str] = []  # keys the engine forgot, for the loop's next turn
        self._results: list[TaskResult] = []
        self._woken = False
        self._first = True  # no task submitted yet
        self.closed = False
        self._crash = ""
        self._failure: InfrastructureError | None = None  # from the worker provider
        self.wake_r, self._wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.loop: threading.Thread | None = None  # results it reports wait for its turn's end
        self._pending: list[TaskResult] = []
        self._held_since: float | None = None  # when the oldest held result came

    # ------------------------------------------------------------ the engine's side

    def submit(self, task: Task) -> None:
        with self._lock:
            self.inbox.append(task)
            full = len(self.inbox) >= INBOX_WAKE or self._first
            self._first = False
        # The run's first task goes at once: a first pass submits a whole window (thousands
        # of rules) before its wait(), and the idle workers would wait for all of it.
        if full:
            self.wake()

    def wait(self, timeout: float | None) -> list[TaskResult]:
        if self.inbox:
            self.wake()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._results and not self.closed and self._failure is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._results_ready.wait(left)
            out, self._results = self._results, []
            if not out and self._crash:
                raise InfrastructureError(f"the manager failed: {self._crash}")
            if not out and self._failure is not None:
                raise self._failure
            return out

    def forget(self, keys: Iterable[str]) -> bool:
        """Gather keys the engine forgot; True for the first of a batch (post the pass)."""
        with self._lock:
            first = not self._dead
            self._dead.extend(keys)
            return first and bool(self._dead)

    def close(self) -> bool:
        """Stop the loop and wake whoever waits; False if it was closed already."""
        with self._lock:
            if self.closed:
                return False
            self.closed = True
            self._results_ready.notify_all()
        self.wake()
        return True

    # ------------------------------------------------------------ any thread

    def wake(self) -> None:
        with self._lock:
            if self._woken:
                return
            self._woken = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def post(self, fn: Callable[[], object]) -> None:
        """Run `fn` on the loop, at its next turn."""
        with self._lock:
            self._events.append(fn)
        self.wake()

    def report(self, results: list[TaskResult]) -> None:
        """Hand results to the engine; from the loop they wait for the end of its turn."""
        if not results:
            return
        if threading.current_thread() is self.loop:
            self._pending.extend(results)
            return
        with self._lock:
            self._results.extend(results)
            self._results_ready.notify_all()

    def fail(self, error: InfrastructureError) -> None:
        """Workers can never start: the engine hears it from wait()."""
        with self._lock:
            self._failure = error
            self._results_ready.notify_all()

    def crash(self, why: str) -> None:
        """The loop died of a bug: say so to the engine instead of leaving it waiting."""
        with self._lock:
            self._crash = why
            self.closed = True
            self._results_ready.notify_all()

    # ------------------------------------------------------------ the loop's side

    def drain(self) -> tuple[list[Task], list[Callable[[], object]]]:
        """Submitted tasks and posted callables, in order, since the last call."""
        try:
            while self.wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            self._woken = False
            tasks, self.inbox = self.inbox, []
            events, self._events = self._events, []
        return tasks, events

    def take_dead(self) -> list[str]:
        with self._lock:
            keys, self._dead = self._dead, []
        return keys

    def publish(self, tasks_waiting: bool) -> float:
        """Hand the turn's results to the engine, or hold them: the select timeout to use."""
        if not self._pending:
            return SUBMIT_LATENCY_S
        now = time.monotonic()
        if self._held_since is None:
            self._held_since = now
        left = self._held_since + RESULT_HOLD_S - now
        if tasks_waiting and left > 0 and len(self._pending) < RESULT_BATCH:
            return min(left, SUBMIT_LATENCY_S)
        with self._lock:
            self._results.extend(self._pending)
            self._results_ready.notify_all()
        self._pending = []
        self._held_since = None
        return SUBMIT_LATENCY_S
