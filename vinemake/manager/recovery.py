"""Recovering lost work: tasks lost with a worker, and intermediates lost with it.

A task whose worker is lost, or that could fetch an input from none of the sources offered,
is queued again (at the front, one attempt more) until it was lost `max_retries` times; then
it is reported lost. A file kept only on workers that is lost with its last holder is made
again when a queued task needs it: the task that made it runs again, silently (the engine saw
it succeed already, so its result is the manager's own business). A lost file no known task
makes, or whose re-run failed, is lost for good: tasks that need it fail, and the engine hears
of it through `on_lost` (the manager logs them; the failed tasks name them).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Callable, Mapping

from vinemake.common.task import Task, TaskResult
from vinemake.manager.replicas import Replicas
from vinemake.manager.workers import ConnectedWorker
from vinemake.wire.protocol import URL

__all__ = ["Recovery"]

log = logging.getLogger("vinemake.manager")


class Recovery:
    """Retries, silent re-runs and files lost for good (the manager's loop thread only)."""

    def __init__(self, replicas: Replicas, queue: collections.deque, max_retries: int,
                 on_lost: Callable[[set[str]], None]):
        self.replicas = replicas
        self.queue = queue  # the manager's: retries and re-runs go to its front
        self.max_retries = max_retries
        self.on_lost = on_lost  # keys lost for good, for the engine
        self.silent: set[int] = set()  # ids of producers re-run to re-create lost files
        self.lost_count: collections.Counter = collections.Counter()  # task id -> times lost
        self.cancelled: set[int] = set()  # killed on request: their end is not reported

    def cancel(self, task_id: int) -> None:
        self.cancelled.add(task_id)

    def was_cancelled(self, task_id: int) -> bool:
        """Whether `task_id`, now ended, had been cancelled (asked once per task)."""
        if task_id in self.cancelled:
            self.cancelled.discard(task_id)
            return True
        return False

    # ------------------------------------------------------------ lost tasks

    def worker_lost(self, w: ConnectedWorker, why: str) -> list[TaskResult]:
        """`w` is gone with its copies and tasks: the results of tasks lost for good."""
        lost = self.replicas.worker_lost(w)
        results = []
        for task in w.running.values():
            if self.was_cancelled(task.id):
                continue
            if task.id in self.silent:
                self.silent.discard(task.id)  # re-created again if still needed
                continue
            self.lost_count[task.id] += 1
            if self.lost_count[task.id] <= self.max_retries:
                self.queue.appendleft(dataclasses.replace(task, attempt=task.attempt + 1))
            else:
                results.append(TaskResult(task_id=task.id, status="lost", worker=w.id,
                                          reason=f"lost with worker {w.id} "
                                                 f"{self.lost_count[task.id]} times: {why}"))
        if lost:
            self.on_lost(lost)
        return results

    def unreachable(self, task: Task, unfetched, workers: Mapping[str, ConnectedWorker]) -> bool:
        """An input could not be fetched from any source offered: those copies count as
        gone (a peer's network may be down before its loss shows), and the task is queued
        again, as for a lost worker. False once it has been retried enough, or when only a
        URL's own server was tried (its fetch was retried already): report it."""
        if all(label == URL for _, sources in unfetched for label in sources):
            return False
        for key, sources in unfetched:
            for label in sources:
                holder = workers.get(label)
                if holder is not None:
                    self.replicas.forget(holder, key)
                    self.replicas.unlist(key, label)
        self.lost_count[task.id] += 1
        if self.lost_count[task.id] > self.max_retries:
            return False
        if task.id in self.silent:
            self.silent.discard(task.id)  # re-created again if still needed
            return True
        self.queue.appendleft(dataclasses.replace(task, attempt=task.attempt + 1))
        return True

    # ------------------------------------------------------------ lost files

    def recreate(self, key: str) -> None:
        """Run again the producer of `key`, an intermediate lost with its worker.

        The re-run is the manager's own business: its result is not reported to the engine,
        which already saw that task succeed. Only a file no known task makes is reported,
        through on_lost.
        """
        producer = self.replicas.producers.get(key)
        if producer is None:
            if key not in self.replicas.unrecoverable:
                self.replicas.unrecoverable.add(key)
                self.on_lost({key})
            return
        if producer.id in self.silent:
            return  # already queued or running
        log.warning("re-running %s to re-create %s, lost with a worker", producer.name, key)
        self.silent.add(producer.id)
        self.queue.appendleft(dataclasses.replace(producer, attempt=producer.attempt + 1))

    def rerun_ended(self, task: Task, result: TaskResult) -> None:
        """A silent re-run ended: if it failed, what it was to re-create is lost for good."""
        self.silent.discard(task.id)
        if result.ok:
            return
        log.warning("re-creating the outputs of %s failed: %s", task.name, result.reason)
        lost = {f.key for f in task.outputs if f.path is None} - self.replicas.holders.keys()
        self.replicas.unrecoverable |= lost
        self.on_lost(lost)

    def lost_input(self, task: Task) -> TaskResult | None:
        """The failure of a task whose input is gone for good, instead of waiting forever."""
        gone = [f.sandbox for f in task.inputs if f.key in self.replicas.unrecoverable
                and f.key not in self.replicas.holders]
        if not gone:
            return None
        return TaskResult(task_id=task.id, status="error",
                          reason="input lost with a worker and no task known to re-create it: "
                                 + ", ".join(gone))
