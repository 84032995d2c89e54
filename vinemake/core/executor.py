"""The interface between the engine and whatever runs tasks (the manager), with a fake for tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from vinemake.common.spec import Resources
from vinemake.common.task import Task, TaskResult

__all__ = ["Executor", "LocalExecutor"]


class Executor(Protocol):
    """Runs Tasks somewhere and reports TaskResults. The manager implements this.

    submit() never blocks on the task itself; wait() returns the results that are ready
    (possibly several at once), blocking up to `timeout` seconds for at least one.
    largest_worker() is the most any worker could ever offer, so the engine can refuse a rule
    that would wait forever; None while no worker is known yet.
    forget() says files (by key) that stay on workers are dead: no rule will read them again,
    so their copies can go and their disk is free again.
    withdraw() drops every submitted task that has not started (a rule failed and -k is off:
    make's "stop starting jobs"); each comes back from wait() as status "withdrawn", while
    running ones finish and report as usual.
    content_hashes() are the content hashes of the files (by key) workers made or fetched,
    once the executor is closed (the URL memo records those of URL sources).
    """

    def submit(self, task: Task) -> None: ...

    def wait(self, timeout: float | None = None) -> list[TaskResult]: ...

    def cancel_all(self) -> None: ...

    def withdraw(self) -> None: ...

    def forget(self, keys: Iterable[str]) -> None: ...

    def largest_worker(self) -> Resources | None: ...

    def close(self) -> None: ...

    def content_hashes(self) -> Mapping[str, str]: ...

class LocalExecutor(Executor, Protocol):
    """Runs LOCAL rules and MAKEFLOW sub-workflows on this host, in the workflow directory.

    submit_subworkflow() runs a sub-workflow's task as a nested vinemake instead of a command.
    """

    def submit_subworkflow(self, task: Task) -> None: ...
