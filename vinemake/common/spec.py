"""Plain frozen data that the parser produces and every later stage reads: RuleSpec and friends."""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import NamedTuple

from vinemake.common.records import dataclass


class Location(NamedTuple):
    """A place in a Vinefile: 1-based line and column.

    A NamedTuple: two per rule, each made in one call (new_location) where a dataclass
    takes four."""

    path: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"


URL_SCHEMES = ("http://", "https://", "file://")


def is_url(path: str) -> bool:
    """Is this file name a URL source (fetched by the workers that read it)?"""
    return path.startswith(URL_SCHEMES)


def url_basename(url: str) -> str:
    """The last segment of a URL's path, its query and fragment left out ("" if none)."""
    rest = url.split("://", 1)[-1].split("?", 1)[0].split("#", 1)[0]
    return rest.rsplit("/", 1)[-1] if "/" in rest else ""


@dataclass(frozen=True, slots=True)  # slots: one per file, 40 bytes fewer
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
    CATEGORY and the resource variables, sorted by name.
    """

    id: int
    targets: tuple[FileRef, ...]
    sources: tuple[FileRef, ...]
    command: str
    location: Location
    command_location: Location | None = None
    env: tuple[tuple[str, str], ...] = ()
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
    mini: bool = False  # `@mini`: made on each worker that reads its outputs, never moved
    # `@environment FILE` (or --environment): the packed environment it runs in, also one of
    # its sources.
    environment: str | None = None

    @property
    def name(self) -> str:
        """A short human name: the first target, else where the rule is (`Vinefile:20`)."""
        if self.targets:
            return self.targets[0].path
        if self.library:
            return f"library:{self.library}"
        return f"{self.location.path.rsplit('/', 1)[-1]}:{self.location.line}"


@dataclass(frozen=True)
class Category:
    """A category's final resources and allocation mode (last value set wins)."""

    name: str
    resources: Resources = field(default_factory=Resources)
    mode: str | None = None
    batch_options: str = ""


@dataclass(frozen=True, eq=False)
class Links:
    """Who makes and who reads each file of `rules`, as the parser found them while reading
    (the graph would look every name up again: at a million rules, seconds of cache misses).

    Made only when every name is plain (no `/`, no leading `.`, no NUL, none renamed), no
    file is made twice, no rule reads its own output and every file is made above where it
    is read; and only for the very tuple `rules` (a Workflow with other rules has none).
    `deps[rid]`: the rules whose outputs rule `rid` reads, sorted; `sources`: the files read
    that no rule makes.
    """

    rules: tuple[RuleSpec, ...]
    producer: dict[str, int]
    deps: list[tuple[int, ...]]
    sources: frozenset[str]


@dataclass(frozen=True)
class Workflow:
    """A whole parsed Vinefile.

    `inputs`/`outputs` are MAKEFLOW_INPUTS/MAKEFLOW_OUTPUTS when the file set them, else None.
    `sizes` records `.SIZE file size` directives in megabytes. `links`, when the parser made
    them, are for core/graph.py only (see Links).
    """

    path: str
    rules: tuple[RuleSpec, ...]
    categories: tuple[Category, ...] = ()
    inputs: tuple[str, ...] | None = None
    outputs: tuple[str, ...] | None = None
    sizes: tuple[tuple[str, int], ...] = ()
    links: Links | None = field(default=None, compare=False, repr=False)


# -- fast constructors ---------------------------------------------------------------------
# The parser and the rules cache make one RuleSpec, two Locations and several FileRefs per
# rule. A frozen dataclass's generated __init__ sets every field through object.__setattr__,
# which was a third of the evaluation of a plain rule. Setting only the fields that differ
# from their defaults makes an equal object, as long as the class stays a plain frozen
# dataclass without __slots__ or __post_init__ (checked below: otherwise the generated
# __init__ is used); a field left out reads its default, which dataclasses keep on the class.
# Attributes set one by one (not a dict of its own) keep a RuleSpec's values beside it,
# sharing their keys with every other RuleSpec: 150 bytes instead of 330 (_prime_keys).

_new = object.__new__
_setattr = object.__setattr__
_tuple_new = tuple.__new__
_FACTORIES = tuple((f.name, f.default_factory) for f in dataclasses.fields(RuleSpec)
                   if f.default_factory is not dataclasses.MISSING)
_FAST_RULESPEC = not hasattr(RuleSpec, "__slots__") and not hasattr(RuleSpec, "__post_init__")
_FAST_FILEREF = ([f.name for f in dataclasses.fields(FileRef)] == ["path", "sandbox"]
                 and not hasattr(FileRef, "__post_init__"))
# The parser may make a rule before the end of the file and give it its resources (the one
# field with a factory) and category-wide fields later, with set_later.
RULESPEC_COMPLETED_LATER = _FAST_RULESPEC and [name for name, _ in _FACTORIES] == ["resources"]


# The fields a parsed rule usually sets, in the order the parser sets them.
_USUAL_FIELDS = ("id", "targets", "sources", "command", "location", "command_location", "env",
                 "resources", "category", "batch_options", "local")


def _prime_keys() -> None:
    """Make the usual fields the keys every RuleSpec's values share, before any is made.

    CPython (3.11) sizes each new instance's values for the keys its class has seen so far
    and stops making room for more after a few dozen instances: a rule made with six fields
    and given its resources later would then get a dict of its own (390 bytes more).
    """
    for _ in range(64):
        spec = _new(RuleSpec)
        for name in _USUAL_FIELDS:
            _setattr(spec, name, None)


if _FAST_RULESPEC:
    _prime_keys()


def new_rulespec(values: dict) -> RuleSpec:
    """RuleSpec(**values)."""
    if not _FAST_RULESPEC:
        return RuleSpec(**values)
    for name, factory in _FACTORIES:
        if name not in values:
            values[name] = factory()
    spec = _new(RuleSpec)
    for name, value in values.items():
        _setattr(spec, name, value)
    return spec


def new_plain_rulespec(rid: int, targets: tuple[FileRef, ...], sources: tuple[FileRef, ...],
                       command: str, path: str, line: int, col: int, command_line: int,
                       command_col: int) -> RuleSpec:
    """A RuleSpec of these fields (located in `path`), every other at its default but
    `resources`, which the caller gives with set_later before anyone reads the rule. Only
    where RULESPEC_COMPLETED_LATER."""
    spec = _new(RuleSpec)
    _setattr(spec, "id", rid)
    _setattr(spec, "targets", targets)
    _setattr(spec, "sources", sources)
    _setattr(spec, "command", command)
    _setattr(spec, "location", _tuple_new(Location, (path, line, col)))
    _setattr(spec, "command_location", _tuple_new(Location, (path, command_line, command_col)))
    return spec


set_later = _setattr  # set_later(spec, name, value), on a RuleSpec nobody has read yet


def new_fileref(path: str) -> FileRef:
    """FileRef(path, path), without the generated __init__."""
    if not _FAST_FILEREF:
        return FileRef(path, path)
    ref = _new(FileRef)
    _setattr(ref, "path", path)
    _setattr(ref, "sandbox", path)
    return ref


def new_location(path: str, line: int, col: int) -> Location:
    """Location(path, line, col), without the NamedTuple's own __new__ (a Python function)."""
    return _tuple_new(Location, (path, line, col))
