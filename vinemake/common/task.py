"""Plain data between engine, manager and worker: Task, TaskFile, TaskResult, Measured.

This module is imported by the worker side, so it imports nothing but `vinemake.common.spec`
and `vinemake.common.records`.
"""

from __future__ import annotations

import functools
from dataclasses import field

from vinemake.common.records import dataclass
from vinemake.common.spec import Resources

__all__ = ["TaskFile", "LibrarySpec", "MiniTask", "Task", "Measured", "TaskResult", "STATUSES",
           "THREAD_VARIABLES", "command_env", "with_threads"]


@dataclass(frozen=True)
class TaskFile:
    """A file a task reads or writes.

    `key` is its Merkle cache name (`file-…`, `out-…`), `sandbox` its name inside the task's
    sandbox, `path` its absolute path on the manager's host: where an input comes from, or
    where an output must end up. `path` is None for an output that stays on the workers
    (`@temp`, `--keep-intermediates-remote`) and for a URL source. `size` is in bytes when
    known (inputs).
    """

    key: str
    sandbox: str
    path: str | None = None
    size: int = 0
    url: str = ""  # a URL source: the workers fetch it from there (or from a peer)


@dataclass(frozen=True)
class LibrarySpec:
    """A library a function call needs: started once per worker, serving `slots` calls."""

    name: str
    key: str
    command: str
    inputs: tuple[TaskFile, ...] = ()
    resources: Resources = field(default_factory=Resources)
    slots: int = 1
    env: tuple[tuple[str, str], ...] = ()
    environment: str = ""  # the key of the packed environment it starts in, "" for none


@dataclass(frozen=True)
class MiniTask:
    """A `@mini` rule a task needs the outputs of: the worker that runs the task makes them
    first, unless its cache has them already, and they never leave that worker."""

    key: str  # the rule key
    name: str
    command: str
    inputs: tuple[TaskFile, ...] = ()
    outputs: tuple[TaskFile, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Task:
    """One rule to run once, as the manager sees it. `id` is the rule id."""

    id: int
    rule_key: str
    name: str
    command: str
    inputs: tuple[TaskFile, ...] = ()
    outputs: tuple[TaskFile, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    resources: Resources = field(default_factory=Resources)
    category: str = "default"
    library: LibrarySpec | None = None  # set for `@call` rules: command is `FUNCTION ARG...`
    cache_forever: bool = False
    failed_dir: str | None = None  # where outputs of a failed run are put, if any exist
    attempt: int = 1
    # The rule's BATCH_OPTIONS (its own, else its category's) when workers are batch jobs:
    # the task runs only on a worker submitted with exactly these options.
    batch_options: str = ""
    # Its failure ends the run (no -k, no attempt left): whoever sees it fail first (the
    # worker, the manager) starts nothing more, without waiting for the engine to say so.
    stops_run: bool = False
    # The `@mini` rules whose outputs it reads, those they read first (in the order to run).
    minis: tuple[MiniTask, ...] = ()
    # The key of the packed environment it runs in (one of its inputs), "" for none.
    environment: str = ""
    # Submitted ahead of these tasks (ids), which make some of its inputs and have not ended
    # yet: it is held, without a slot, on the worker that runs them, and starts there the
    # moment they all succeed (docs/workers.md, "Rules held for their inputs").
    after: tuple[int, ...] = ()


# What TaskVine's worker sets to the cores a task holds (Makeflow sets CORES and
# OMP_NUM_THREADS): numeric libraries then start as many threads as the task may use, not
# one per core of the machine.
THREAD_VARIABLES = ("CORES", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_NUM_THREADS",
                    "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def command_env(task: Task) -> tuple[tuple[str, str], ...]:
    """What a task's command gets on top of the environment it runs in: THREAD_VARIABLES set
    to the whole cores the task holds (1 when it names none, at least 1), then the rule's
    own environment, which wins (an `export OMP_NUM_THREADS=...` is the user's choice)."""
    return with_threads(task.resources.cores, task.env)


@functools.lru_cache(maxsize=256)
def with_threads(cores: float | None,
                 env: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """THREAD_VARIABLES for `cores` (see command_env), then `env`, which wins."""
    threads = str(max(1, int(cores))) if cores else "1"
    own = dict(env)
    return (*((name, threads) for name in THREAD_VARIABLES if name not in own), *env)


# What a TaskResult.status may be. Only "ok" means the outputs are in place.
#   failed            the command exited non-zero (exit_code set)
#   signaled          the command died from a signal (exit_code = -signal)
#   missing_output    exit 0 but a declared output is absent
#   resource_exceeded killed for exceeding its memory, disk or wall time (reason says which)
#   lost              the worker running it was lost: the engine may resubmit
#   error             vinemake itself failed (transfer, sandbox): the engine may resubmit
#   withdrawn         never started: the engine withdrew it (an earlier rule failed, no -k)
#   held_back         never started: it was submitted ahead (Task.after) and a task it waited
#                     for did not succeed, or could not be held: the engine submits it again
#                     when its inputs are made, as if it had never been submitted
STATUSES = ("ok", "failed", "signaled", "missing_output", "resource_exceeded", "lost", "error",
            "withdrawn", "held_back")
# The rule's own failures: its command ran and did wrong. Only these end a run at once
# (fail fast, no -k); `lost` and `error` are retried by the manager first, and an `error`
# that still reaches the engine on a last attempt stops the run through the engine.
COMMAND_FAILURES = frozenset({"failed", "signaled", "missing_output", "resource_exceeded"})


@dataclass(frozen=True)
class Measured:
    """Peak resources a task used, as the worker's monitor saw them."""

    cores: float = 0.0
    memory_mb: float = 0.0
    disk_mb: float = 0.0
    wall_time_s: float = 0.0
    # Bytes the command's processes read and wrote (through system calls, page cache or
    # not), as last sampled; unknown when the monitor took no sample (a command too short).
    bytes_read: float = 0.0
    bytes_written: float = 0.0
    samples: float = 0.0  # how many times the monitor sampled the command


@dataclass(frozen=True)
class TaskResult:
    """What became of a Task."""

    task_id: int
    status: str
    exit_code: int | None = None
    reason: str = ""
    stderr_tail: str = ""
    measured: Measured = field(default_factory=Measured)
    worker: str = ""
    # (output key, size in bytes, content hash) of each output when status == "ok"
    outputs: tuple[tuple[str, int, str], ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"
