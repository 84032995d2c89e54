"""The manager: accepts workers, places tasks on them, orders transfers, reports results."""

from __future__ import annotations

from vinemake.backends import ProviderOptions, WorkerProvider
from vinemake.manager.config import ManagerConfig
from vinemake.spec import Resources
from vinemake.task import Task, TaskResult

__all__ = ["Manager"]


class Manager:
    """Implements `vinemake.executor.Executor` over TCP workers."""

    @classmethod
    def start(cls, config: ManagerConfig, provider: WorkerProvider | None = None,
              provider_options: ProviderOptions | None = None) -> Manager:
        """Listen, then ask `provider` (if any) to start workers that connect here."""
        raise NotImplementedError("manager under construction")

    def submit(self, task: Task) -> None:
        raise NotImplementedError

    def wait(self, timeout: float | None = None) -> list[TaskResult]:
        raise NotImplementedError

    def cancel_all(self) -> None:
        raise NotImplementedError

    def largest_worker(self) -> Resources | None:
        raise NotImplementedError

    def lost_files(self) -> set[str]:
        """Output keys that existed only on lost workers; the engine re-runs their producers."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
