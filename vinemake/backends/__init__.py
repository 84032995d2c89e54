"""How workers start (`-T`): a registry of worker providers; the manager always schedules.

A provider starts `vinemake-worker HOST PORT ...` processes somewhere (this machine, SLURM
pilot jobs, by hand) and scales them to the work waiting. It never runs a rule itself.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import field
from typing import Protocol

from vinemake.common.records import dataclass
from vinemake.common.spec import Resources

__all__ = ["Demand", "ManagerAddress", "WorkerProvider", "BACKENDS", "BATCH_SYSTEMS",
           "get_provider", "options_tag", "worker_options_tag"]


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

    `waiting` holds the resources of each task that is ready but not placed, and
    `waiting_batch_options` (empty, or parallel to `waiting`) its rule's BATCH_OPTIONS.
    `workers_joined`/`workers_left` count every worker that connected/disconnected since the
    manager started: a worker that comes and goes between two calls is still seen (a batch
    provider replaces a killed pilot at once instead of at its next status poll).
    """

    waiting: tuple[Resources, ...] = ()
    connected_workers: int = 0
    idle_workers: int = 0
    workers_joined: int = 0
    workers_left: int = 0
    waiting_batch_options: tuple[str, ...] = ()


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


# -T names whose workers are batch jobs, so a rule's BATCH_OPTIONS mean something.
BATCH_SYSTEMS = frozenset({"slurm", "pbs", "sge", "condor"})

# A pilot submitted with a rule's BATCH_OPTIONS says so in its worker name, `...@bo-<tag>`:
# the name is all the manager learns of a worker, and a hash keeps it short and shell-safe.
_TAG = "@bo-"
_TAGGED = re.compile(re.escape(_TAG) + r"([0-9a-f]{10})(?:#\d+)?$")


def options_tag(batch_options: str) -> str:
    """The name suffix of workers submitted with `batch_options` ("" for none)."""
    if not batch_options:
        return ""
    import hashlib  # here: the command line imports this module, and rarely needs a tag

    return _TAG + hashlib.sha256(batch_options.encode()).hexdigest()[:10]


def worker_options_tag(worker_id: str) -> str:
    """The options_tag() a worker's name (or id, `name#2`) ends with, "" if none."""
    found = _TAGGED.search(worker_id)
    return _TAG + found.group(1) if found else ""


def get_provider(name: str) -> WorkerProvider:
    """The provider for `-T name`. KeyError for an unknown name (the CLI validates first)."""
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
