"""`--clean`: delete exactly what the journal says this workflow created, never a source.

Modes: `outputs` (made files no rule reads, or MAKEFLOW_OUTPUTS), `intermediates` (made files
some rule reads), `cache` (entries of this workflow's own store for files it made), `all`
(everything above, failed-rule records and vinemake's own state). A file is deleted only if
the journal records it as made here by this workflow file (two Vinefiles may share a
directory and its `.vinemake/`), it is not a source or a MAKEFLOW_INPUTS entry now, and its
bytes are still the ones vinemake put there: a file edited or replaced since then is the
user's, and is kept with a note. A file's stat decides when it has not moved; otherwise, and
always for a directory (editing a file inside does not change the directory's stat), its
content hash does. A shared `--cache-dir` store is never emptied by a clean: other workflows
and users restore from it, and `vinemake cache prune` is how entries are evicted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Set
from types import MappingProxyType
from typing import TextIO

from vinemake.common.hashing import hash_tree
from vinemake.common.paths import remove_path
from vinemake.common.records import dataclass
from vinemake.common.spec import Workflow
from vinemake.core.confine import Confinement
from vinemake.core.filestate import output_stat
from vinemake.core.graph import BuildGraph, norm
from vinemake.core.journal import FileRecord, Journal, workflow_name
from vinemake.core.statedir import StateDir
from vinemake.core.store import Store

__all__ = ["Cleaning", "decide", "clean_workflow"]


@dataclass(frozen=True)
class Cleaning:
    """What a --clean will delete (`paths`, `keys` in the store) and keep (`kept`, with why)."""

    paths: tuple[str, ...]
    keys: tuple[str, ...]
    kept: tuple[tuple[str, str], ...]
    state: bool  # remove .vinemake's own records too (mode "all")


def decide(mode: str, made: Mapping[str, FileRecord], protected: Set[str],
           outputs: Set[str], disk: Mapping[str, tuple[int, int] | None],
           changed: Mapping[str, str] = MappingProxyType({}),
           outside: Mapping[str, str] = MappingProxyType({})) -> Cleaning:
    """Pure: the files of `made` that `mode` covers, minus sources and changed files.

    `changed`: the made files whose bytes are not what vinemake put there, each with a note
    (the files inside a directory that look edited); `outside`: those whose real path left
    the workflow directory, with why."""
    paths, keys, kept = [], [], []
    for path, rec in sorted(made.items()):
        final = path in outputs
        if mode in ("all", "cache"):
            keys.append(rec.key)
        if mode == "cache" or (mode == "outputs" and not final) or \
                (mode == "intermediates" and final):
            continue
        if path in protected:
            kept.append((path, "it is a source now"))
            continue
        stat = disk.get(path)
        if stat is None or rec.collected:
            continue
        if path in outside:
            kept.append((path, outside[path]))
            continue
        if path in changed:
            kept.append((path, f"its content changed since vinemake made it{changed[path]}"))
            continue
        paths.append(path)
    return Cleaning(tuple(paths), tuple(keys), tuple(kept), mode == "all")


def clean_workflow(workflow: Workflow, graph: BuildGraph, options, out: TextIO) -> int:
    """Apply --clean to the files on disk and record each removal in the journal."""
    root = options.root
    state = StateDir(root)
    me = workflow_name(workflow.path, root)
    journal = Journal(state.journal, workflow=me)
    made = {p: r for p, r in journal.state.files.items() if r.workflow in ("", me)}
    others = sorted({r.workflow for r in journal.state.files.values()} - {"", me})
    protected = set(graph.sources) | {norm(p) for p in workflow.inputs or ()}
    outputs = set(graph.outputs()) | (set(made) - set(graph.producer) - set(graph.consumed))
    disk = {p: _stat(os.path.join(root, p)) for p in made}
    confine = Confinement(root)
    outside = {p: why for p in made
               if (why := confine.problem(p, os.path.join(root, p))) is not None}
    changed = {p: _changes(os.path.join(root, p), made[p], disk[p]) for p in made
               if p not in outside}
    plan = decide(options.clean, made, protected, outputs, disk,
                  {p: note for p, note in changed.items() if note is not None}, outside)
    journal.open()
    for path in plan.paths:
        remove_path(os.path.join(root, path))
        journal.removed(path)
        out.write(f"removed {path}\n")
    journal.close()
    for path, why in plan.kept:
        out.write(f"kept {path}: {why}\n")
    if options.cache_dir is None:
        store = Store(state.cache)
        held = [key for key in plan.keys if store.has(key)]
        for key in plan.keys:
            store.remove(key)
        if held:
            out.write(f"removed {len(held)} cache "
                      f"{'entry' if len(held) == 1 else 'entries'}\n")
        elif options.clean == "cache":  # say so, rather than print nothing at all
            out.write("vinemake: the cache holds nothing this workflow made\n")
    elif plan.keys:
        out.write(f"kept the entries of the shared store {options.cache_dir}: other "
                  f"workflows may restore from it (evict with: vinemake cache prune)\n")
    if plan.state and others:
        out.write(f"kept {state.path}: it holds the state of {', '.join(others)} too\n")
    elif plan.state:
        for path in state.records():
            remove_path(path)
        _rmdir_if_empty(state.path)
    return 0


def _changes(path: str, rec: FileRecord, stat: tuple[int, int] | None) -> str | None:
    """None if the bytes at `path` are those vinemake put there (or nothing is there), else
    a note naming the files in a directory that look edited (newer than the directory)."""
    if stat is None or rec.collected:
        return None
    is_dir = os.path.isdir(path)
    if not is_dir and stat == (rec.size, rec.mtime_ns):
        return None
    try:
        if rec.content and hash_tree(path)[1] == rec.content:
            return None
    except OSError:
        pass
    if not is_dir:
        return ""
    newer = sorted(os.path.relpath(os.path.join(d, f), os.path.dirname(path))
                   for d, _, files in os.walk(path) for f in files
                   if _mtime(os.path.join(d, f)) > rec.mtime_ns)
    return f" ({', '.join(newer)})" if newer else ""


def _mtime(path: str) -> int:
    try:
        return os.lstat(path).st_mtime_ns
    except OSError:
        return 0


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return output_stat(path, st)




def _rmdir_if_empty(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass
