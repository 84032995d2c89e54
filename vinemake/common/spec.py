"""Plain frozen data that the parser produces and every later stage reads: RuleSpec and friends."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Location:
    """A place in a Vinefile: 1-based line and column."""

    path: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"


@dataclass(frozen=True)
class FileRef:
    """A file named in a rule: `path` in the workflow directory, `sandbox` inside the task.

    `local->remote` gives a sandbox name different from the path; otherwise they are equal.
    """

    path: str
    sandbox: str


@dataclass(frozen=True)
class Resources:
    """What a rule or a worker needs or offers. None means 'not specified'.

    memory_mb and disk_mb are in megabytes (Makeflow's unit), wall_time_s in seconds.
    """

    cores: float | None = None
    memory_mb: int | None = None
    disk_mb: int | None = None
    gpus: int | None = None
    wall_time_s: float | None = None
    mpi_processes: int | None = None  # `.MAKEFLOW MPI_PROCESSES n`, for batch systems


@dataclass(frozen=True)
class RuleSpec:
    """One rule after parsing and eager variable expansion.

    `command` is the expanded command with any LOCAL/MAKEFLOW prefix removed; quotes are kept
    for /bin/sh. `env` is everything to add to the command's environment: exported names,
    CATEGORY and the resource variables, sorted by name. `variables` are the rule-local
    assignments (for display and provenance of what the user wrote).
    """

    id: int
    targets: tuple[FileRef, ...]
    sources: tuple[FileRef, ...]
    command: str
    location: Location
    command_location: Location | None = None
    env: tuple[tuple[str, str], ...] = ()
    variables: tuple[tuple[str, str], ...] = ()
    category: str = "default"
    resources: Resources = field(default_factory=Resources)
    retries: int | None = None
    temp: bool = False
    cache_forever: bool = False
    library: str | None = None
    library_slots: int | None = None
    call: str | None = None
    local: bool = False
    subworkflow: bool = False
    batch_options: str = ""

    @property
    def name(self) -> str:
        """A short human name: the first target, else the command's first word."""
        if self.targets:
            return self.targets[0].path
        if self.library:
            return f"library:{self.library}"
        return f"rule@{self.location.line}"


@dataclass(frozen=True)
class Category:
    """A category's final resources and allocation mode (last value set wins)."""

    name: str
    resources: Resources = field(default_factory=Resources)
    mode: str | None = None
    batch_options: str = ""


@dataclass(frozen=True)
class Workflow:
    """A whole parsed Vinefile.

    `inputs`/`outputs` are MAKEFLOW_INPUTS/MAKEFLOW_OUTPUTS when the file set them, else None.
    `sizes` records `.SIZE file size` directives in megabytes.
    """

    path: str
    rules: tuple[RuleSpec, ...]
    categories: tuple[Category, ...] = ()
    inputs: tuple[str, ...] | None = None
    outputs: tuple[str, ...] | None = None
    sizes: tuple[tuple[str, int], ...] = ()
