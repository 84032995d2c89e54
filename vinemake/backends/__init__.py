"""How workers start (`-T`): a registry of worker providers; the manager always schedules.

A provider starts `vinemake-worker HOST PORT ...` processes somewhere (this machine, SLURM
pilot jobs, by hand) and scales them to the work waiting. It never runs a rule itself.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Protocol

from vinemake.spec import Resources

__all__ = ["Demand", "ManagerAddress", "WorkerProvider", "BACKENDS", "get_provider"]


@dataclass(frozen=True)
class ManagerAddress:
    """Where workers connect, and what they need to be let in."""

    host: str
    port: int
    password_file: str | None = None
    ssl: bool = False


@dataclass(frozen=True)
class Demand:
    """What the manager tells a provider, periodically: the work waiting and the workers it has.

    `waiting` holds the resources of each task that is ready but not placed.
    `workers_joined`/`workers_left` count every worker that connected/disconnected since the
    manager started: a worker that comes and goes between two calls is still seen (a batch
    provider replaces a killed pilot at once instead of at its next status poll).
    """

    waiting: tuple[Resources, ...] = ()
    running_tasks: int = 0
    connected_workers: int = 0
    idle_workers: int = 0
    done: bool = False
    workers_joined: int = 0
    workers_left: int = 0


@dataclass(frozen=True)
class ProviderOptions:
    """User options that shape workers: from the command line and the Vinefile."""

    min_workers: int = 0
    max_workers: int = 0  # 0: the provider's own default
    worker_timeout_s: float = 60.0
    batch_options: str = ""
    worker_resources: Resources = field(default_factory=Resources)  # --cores/--memory/...
    extra: tuple[tuple[str, str], ...] = ()


class WorkerProvider(Protocol):
    """Starts and stops workers for one workflow run."""

    def start(self, manager: ManagerAddress, options: ProviderOptions) -> None: ...

    def scale(self, demand: Demand) -> None: ...

    def close(self) -> None: ...


# -T name → "module:Class". Imported lazily so `vinemake --check` never loads a batch system.
BACKENDS = {
    "local": "vinemake.backends.local:LocalWorkers",
    "workers": "vinemake.backends.byhand:ByHandWorkers",
    "slurm": "vinemake.backends.slurm:SlurmWorkers",
    "pbs": "vinemake.backends.pbs:PbsWorkers",
    "sge": "vinemake.backends.sge:SgeWorkers",
    "condor": "vinemake.backends.condor:CondorWorkers",
}


def get_provider(name: str) -> WorkerProvider:
    """The provider for `-T name`. KeyError for an unknown name (the CLI validates first)."""
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
