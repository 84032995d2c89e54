"""Tasks held on this worker until the tasks that make their inputs succeed (Task.after).

The engine may submit a rule before its inputs exist, naming the tasks that make them; the
manager sends it to the worker that runs those tasks. Here it waits without a slot (it holds
no resources: it has not started), and is released into the slots the moment every task it
waits for has ended well, its outputs in place, instead of after that result's round trip
through the manager and the engine. A task it waits for that fails, is cancelled or that
this worker does not know (it ended badly before the held task arrived) sends the held task
back ("held_back"), and every task held for that one with it: the engine then submits it
again when its inputs are made, as if it had never been submitted.

Everything here is bookkeeping behind one lock; the worker starts and reports what it says.
"""

from __future__ import annotations

import threading

from vinemake.common.task import Task

__all__ = ["Holds", "START", "WAIT", "BACK", "REMEMBERED"]

START, WAIT, BACK = "start", "wait", "back"
# Tasks that ended well, remembered in case a task held for one arrives after it ended (its
# Run crossed the result on the wire): far more than can be in flight between two messages.
REMEMBERED = 4096


class Holds:
    """Which tasks are held here, and for which others (any thread)."""

    def __init__(self, remembered: int = REMEMBERED):
        self._lock = threading.Lock()
        self._remembered = remembered
        self._active: set[int] = set()  # accepted and not ended, held ones included
        self._succeeded: dict[int, None] = {}  # ended well, the latest last (an ordered set)
        self._held: dict[int, list] = {}  # task id -> [task, payload, ids it waits for]
        self._waiters: dict[int, list[int]] = {}  # task id -> ids of tasks held for it

    def began(self, task_id: int) -> None:
        """A task was accepted (sent again, it is a new attempt: its last end is forgotten)."""
        with self._lock:
            self._active.add(task_id)
            self._succeeded.pop(task_id, None)

    def hold(self, task: Task, payload) -> str:
        """What to do with `task`, accepted with `began`, that names `after`: START it now
        (all it waits for succeeded), WAIT (held here, released by `ended`), or send it BACK."""
        with self._lock:
            waiting = set()
            for tid in task.after:
                if tid in self._succeeded:
                    continue
                if tid not in self._active:
                    self._active.discard(task.id)
                    return BACK
                waiting.add(tid)
            if not waiting:
                return START
            self._held[task.id] = [task, payload, waiting]
            for tid in waiting:
                self._waiters.setdefault(tid, []).append(task.id)
            return WAIT

    def ended(self, task_id: int, ok: bool) -> tuple[list, list]:
        """`task_id` ended (well if `ok`): the (task, payload) pairs released to start now,
        and those sent back (held for it, or for one sent back, when it did not succeed)."""
        released: list = []
        back: list = []
        with self._lock:
            self._active.discard(task_id)
            self._settle(task_id, ok, released, back)
        return released, back

    def cancel(self, task_id: int) -> tuple[tuple | None, list]:
        """Take a held task out (the manager cancelled it): its (task, payload) or None, and
        the pairs held for it, sent back."""
        back: list = []
        with self._lock:
            entry = self._held.pop(task_id, None)
            if entry is None:
                return None, back
            self._active.discard(task_id)
            self._settle(task_id, False, [], back)
        return (entry[0], entry[1]), back

    def clear(self) -> list:
        """Forget everything (the session ended: the next manager numbers tasks anew); the
        (task, payload) pairs that were held."""
        with self._lock:
            held = [(entry[0], entry[1]) for entry in self._held.values()]
            self._held.clear()
            self._waiters.clear()
            self._active.clear()
            self._succeeded.clear()
        return held

    def count(self) -> int:
        """How many tasks are held (a snapshot)."""
        return len(self._held)

    def _settle(self, task_id: int, ok: bool, released: list, back: list) -> None:
        if ok:
            self._succeeded[task_id] = None
            if len(self._succeeded) > self._remembered:
                del self._succeeded[next(iter(self._succeeded))]
        for held_id in self._waiters.pop(task_id, ()):
            entry = self._held.get(held_id)
            if entry is None:
                continue  # sent back or cancelled already
            if ok:
                entry[2].discard(task_id)
                if not entry[2]:
                    del self._held[held_id]
                    released.append((entry[0], entry[1]))
                continue
            del self._held[held_id]
            self._active.discard(held_id)
            back.append((entry[0], entry[1]))
            self._settle(held_id, False, released, back)
