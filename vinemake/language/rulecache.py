"""The parsed-rules cache: a rerun with the same Vinefile and environment skips parsing.

Why: when a source changed, the up-to-date snapshot (filestate) no longer applies and a rerun
takes the full path; parsing is then a fixed cost paid again for the same text. The last
parse is kept in the workflow's state dir (`.vinemake/rules`), keyed by everything its result
depends on:

- the Vinefile's bytes (xxh3_128) and the path it was named by (every Location carries it);
- every environment variable the evaluation looked up, with the value it found or "unset"
  (so a variable read and found unset that becomes set misses too);
- vinemake's version, the Python version, and the bytes of the grammar and of every module
  the parse runs through (an edited checkout is a different parser). The language has no
  include: a Vinefile's result depends on no other file (a sub-workflow's file is read when
  it runs, by its own vinemake).

A Vinefile with an error is never stored: it re-parses and reports its error every time.
The entry is one file, written to a temporary name and renamed: `vinemake-rules FORMAT
CHECKSUM` on the first line, then length-framed marshal records (the key, the tables, then
the rule rows 4096 at a time). Anything that does not read back cleanly (another format, a
checksum mismatch, a record of the wrong shape) is a miss and is overwritten.

marshal, not pickle: it builds only plain values (no code runs while loading), and a pickle
of RuleSpecs loaded no faster than parsing them. The records are flat tables (file names,
Resources, rule shapes, one row per rule) turned back into RuleSpecs here, several times
faster (figures in docs/performance.md). Loading it still trusts the entry as much as the
Vinefile, so the cache is used only when the state dir is the user's own and nobody else can
write it (the check the grammar cache uses); with a group-writable .vinemake (umask 002) it
is off.
"""

from __future__ import annotations

import dataclasses
import functools
import marshal
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from operator import attrgetter

import xxhash

from vinemake import __version__
from vinemake.common.private import private_dir
from vinemake.common.records import dataclass
from vinemake.common.spec import (
    Category,
    FileRef,
    Resources,
    RuleSpec,
    Workflow,
    new_fileref,
    new_location,
    new_rulespec,
)
from vinemake.core.statedir import RULES
from vinemake.language.grammar import grammar_path

__all__ = ["Entry", "Parsed", "read_workflow", "stale", "code_digest", "CACHE_FILE"]

FORMAT = 1
CACHE_FILE = RULES
# The modules a parse runs through (a test checks importing the parser loads no other).
PARSING_MODULES = ("__init__", "common/__init__", "common/errors", "common/private",
                   "common/records", "common/spec", "core/__init__", "core/statedir",
                   "language/__init__", "language/annotations", "language/environment",
                   "language/evaluate", "language/expand", "language/grammar",
                   "language/keywords", "language/parser", "language/rulecache",
                   "language/statements", "language/units")


@dataclass(frozen=True)
class Entry:
    """What one parse's result depends on."""

    code: str  # code_digest()
    vinefile: str  # xxh3_128 of the Vinefile's bytes
    path: str  # the Vinefile's path as given
    environ: tuple[tuple[str, str | None], ...]  # each variable looked up, None: unset


@dataclass(frozen=True)
class Parsed:
    """A workflow, whether it came from the cache, and a line for --explain saying so;
    `save` writes the cache entry when read_workflow was asked to leave that for later."""

    workflow: Workflow
    cached: bool
    note: str
    save: Callable[[], None] | None = None


@functools.lru_cache(maxsize=1)
def code_digest() -> str | None:
    """The version of everything that turns Vinefile text into a Workflow; None if a source
    file cannot be read (an install without .py files: then no cache)."""
    h = xxhash.xxh3_128()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the package
    try:
        parts = [f"{FORMAT} {__version__} {sys.version} {sys.implementation.cache_tag}".encode()]
        modules = (os.path.join(here, f"{name}.py") for name in PARSING_MODULES)
        for path in [grammar_path(), *modules]:
            with open(path, "rb") as f:
                parts.append(f.read())
    except OSError:
        return None
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


# --- deciding -----------------------------------------------------------------------------


def stale(entry: Entry | None, now: Entry) -> str | None:
    """Why `entry` cannot stand for a parse of `now` (whose `environ` is the current value of
    each of `entry`'s variables), or None if it can."""
    if entry is None:
        return "no cached rules"
    if entry.code != now.code:
        return "vinemake changed since the rules were cached"
    if entry.vinefile != now.vinefile or entry.path != now.path:
        return "the Vinefile changed"
    for (name, then), (_, value) in zip(entry.environ, now.environ, strict=True):
        if then != value:
            was = "unset" if then is None else f"{then!r}"
            return f"${name} changed (was {was}, now {'unset' if value is None else repr(value)})"
    return None


# --- reading and writing ------------------------------------------------------------------


def read_workflow(path: str, state: str, environ: Mapping[str, str] | None = None,
                  write: bool = True, later: bool = False) -> Parsed:
    """The Workflow in the Vinefile at `path`: from the cache in `state` if it still holds,
    else parsed (and, if `write`, cached: with `later`, by the Parsed's `save`, so a first
    build starts its work before writing it). Errors are the parser's."""
    if environ is None:
        environ = os.environ
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:  # the parser says why it cannot read it
        from vinemake.language.parser import parse_file

        return Parsed(parse_file(path, environ), False, "parsed the Vinefile")
    file = os.path.join(state, CACHE_FILE)
    code = code_digest()
    trusted = code is not None and private_dir(state, None)
    loaded = _load(file) if trusted else None
    entry = loaded[0] if loaded else None
    now = Entry(code or "", xxhash.xxh3_128_hexdigest(data), path,
                tuple((name, environ.get(name)) for name, _ in entry.environ) if entry else ())
    reason = stale(entry, now)
    if reason is None:
        workflow = _decode(loaded[1], path)
        if workflow is not None:
            return Parsed(workflow, True, "parsed rules from cache")
        reason = "the cached rules are unreadable"
    if code is None:
        reason = "no rules cache: vinemake's own source files cannot be read"
    elif not trusted and os.path.isdir(state):
        reason = f"no rules cache: others can write {state}"
    from vinemake.language.parser import parse_bytes  # here: a hit never loads lark

    read: dict[str, str | None] = {}
    workflow = parse_bytes(data, path, environ, read)
    note = f"parsed the Vinefile ({reason})"
    if write and code and private_dir(state, 0o777):  # the usual mode (umask applies)
        save = functools.partial(_save, file, dataclasses.replace(
            now, environ=tuple(sorted(read.items()))), workflow)
        if later:
            return Parsed(workflow, False, note, save)
        save()
    return Parsed(workflow, False, note)


_MAGIC = b"vinemake-rules"
_CHUNK = 4096  # rules per marshal record: decoded and dropped one at a time, to bound memory


def _load(file: str) -> tuple[Entry, Iterator] | None:
    """The entry in `file`, and its records still to decode, or None if it does not read back
    cleanly."""
    try:
        with open(file, "rb") as f:
            blob = f.read()
        start = blob.find(b"\n") + 1
        magic, fmt, checksum = blob[:start].split()
        view = memoryview(blob)
        if (magic != _MAGIC or fmt != str(FORMAT).encode()
                or xxhash.xxh3_128_hexdigest(view[start:]).encode() != checksum):
            return None
        records = _records(view, start)
        entry = Entry(*next(records))
    except (OSError, ValueError, TypeError, EOFError, StopIteration):
        return None
    return (entry, records) if _well_formed(entry) else None


def _well_formed(entry: Entry) -> bool:
    return (all(type(x) is str for x in (entry.code, entry.vinefile, entry.path))
            and type(entry.environ) is tuple
            and all(type(pair) is tuple and len(pair) == 2 and type(pair[0]) is str
                    and (pair[1] is None or type(pair[1]) is str) for pair in entry.environ))


def _records(view: memoryview, at: int) -> Iterator:
    """The records from offset `at` on: each its length (8 bytes, little-endian), then its
    marshal bytes (marshal.loads of a slice: marshal.load from a stream is much slower)."""
    while at < len(view):
        size = int.from_bytes(view[at: at + 8], "little")
        at += 8
        yield marshal.loads(view[at: at + size])
        at += size


def _frame(value) -> bytes:
    data = marshal.dumps(value)
    return len(data).to_bytes(8, "little") + data


def _save(file: str, entry: Entry, workflow: Workflow) -> None:
    """Write the entry atomically; a workflow the codec cannot hold is simply not cached."""
    encoded = _encode(workflow)
    if encoded is None:
        return
    tables, rows = encoded
    try:
        payload = b"".join([
            _frame((entry.code, entry.vinefile, entry.path, entry.environ)), _frame(tables),
            *(_frame(tuple(rows[i: i + _CHUNK])) for i in range(0, len(rows), _CHUNK))])
    except ValueError:  # a value marshal cannot hold
        return
    tmp = f"{file}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(b"%s %d %s\n" % (_MAGIC, FORMAT, xxhash.xxh3_128_hexdigest(payload).encode()))
            f.write(payload)
        os.replace(tmp, file)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


# --- the codec: a Workflow as flat tables of plain values ------------------------------------
#
# A rule row is (shape, id, targets, sources, command, line, col, command line, command col):
# targets and sources are indexes into the table of files, and `shape` indexes the table of
# everything else (env, category, resources, flags...), which most rules share.

_ROW = ("id", "targets", "sources", "command", "location", "command_location")
# A shape: the index of the rule's Resources in their table, and these fields.
_SHAPE = tuple(f.name for f in dataclasses.fields(RuleSpec)
               if f.name not in _ROW and f.name != "resources")
_RESOURCES = tuple(f.name for f in dataclasses.fields(Resources))
_shape_of = attrgetter(*_SHAPE)
_resources_of = attrgetter(*_RESOURCES)


class _Uncacheable(Exception):
    """A workflow the codec would not give back equal (not one the parser makes)."""


def _encode(workflow: Workflow) -> tuple[tuple, list[tuple]] | None:
    """(the tables, the rule rows), or None."""
    path = workflow.path
    files: list = []
    file_ids: dict[int, int] = {}
    # Objects by identity (the parser shares them; equal 1 and 1.0 stay what they were).
    resources: list[tuple] = []
    resource_ids: dict[int, int] = {}
    shapes: dict[tuple, int] = {}
    rows = []
    append = rows.append

    def refs(items: tuple[FileRef, ...]) -> tuple[int, ...]:
        out = []
        for ref in items:
            i = file_ids.get(id(ref))
            if i is None:
                i = file_ids[id(ref)] = len(files)
                files.append(ref.path if ref.path == ref.sandbox else (ref.path, ref.sandbox))
            out.append(i)
        return tuple(out)

    try:
        for index, rule in enumerate(workflow.rules):
            res = rule.resources
            key = (id(res), _shape_of(rule))
            number = shapes.get(key)
            if number is None:
                r = resource_ids.get(id(res))
                if r is None:
                    r = resource_ids[id(res)] = len(resources)
                    resources.append(_resources_of(res))
                number = shapes[key] = len(shapes)
            at, cmd_at = rule.location, rule.command_location
            if rule.id != index or at.path != path or cmd_at is None or cmd_at.path != path:
                raise _Uncacheable
            append((number, refs(rule.targets), refs(rule.sources), rule.command,
                    at.line, at.col, cmd_at.line, cmd_at.col))
    except (_Uncacheable, TypeError):  # TypeError: an unhashable value in a rule
        return None
    shape_table = tuple((resource_ids[res_id], shape) for res_id, shape in shapes)
    categories = tuple((c.name, _resources_of(c.resources), c.mode, c.batch_options)
                       for c in workflow.categories)
    return (len(rows), tuple(files), tuple(resources), shape_table, categories,
            workflow.inputs, workflow.outputs, workflow.sizes), rows


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RuleSpec)
             if f.default is not dataclasses.MISSING and hasattr(RuleSpec, f.name)}


def _is_default(name: str, value) -> bool:
    """Whether RuleSpec's class attribute reads as exactly `value` (False is not 0)."""
    default = _DEFAULTS.get(name, dataclasses.MISSING)
    return type(value) is type(default) and value == default


def _decode(records: Iterator, path: str) -> Workflow | None:
    """The Workflow of the tables and chunks of rows in `records`, or None."""
    try:
        count, files, resources, shapes, categories, inputs, outputs, sizes = next(records)
        refs = [new_fileref(f) if type(f) is str else FileRef(*f) for f in files]
        resources = [Resources(*values) for values in resources]
        bases = []
        for res, shape in shapes:
            # As the parser does: a field at its default is left to the class (a RuleSpec's
            # dict of 10 fields is half the size of one of 19).
            base = {name: value for name, value in zip(_SHAPE, shape, strict=True)
                    if not _is_default(name, value)}
            base["resources"] = resources[res]
            bases.append(base)
        ref = refs.__getitem__
        rules = []
        append = rules.append
        rid = 0
        while rid < count:
            rows = next(records)
            for number, targets, sources, command, line, col, cmd_line, cmd_col in rows:
                values = {"id": rid, "targets": tuple(map(ref, targets)),
                          "sources": tuple(map(ref, sources)), "command": command,
                          "location": new_location(path, line, col),
                          "command_location": new_location(path, cmd_line, cmd_col)}
                values.update(bases[number])
                append(new_rulespec(values))
                rid += 1
            if not rows:
                return None
        if rid != count:
            return None
        return Workflow(path, tuple(rules),
                        tuple(Category(n, Resources(*r), m, b) for n, r, m, b in categories),
                        inputs, outputs, sizes)
    except (ValueError, TypeError, IndexError, AttributeError, EOFError, StopIteration):
        return None
