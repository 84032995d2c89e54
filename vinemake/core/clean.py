"""`--clean`: delete exactly what the journal says this workflow created, never a source.

Modes: `outputs` (made files no rule reads, or MAKEFLOW_OUTPUTS), `intermediates` (made files
some rule reads), `cache` (store entries of files this workflow made; with `--cache-dir`, only
those), `all` (everything above, failed-rule records and vinemake's own state). A file is
deleted only if the journal records it as made here, it is not a source or a MAKEFLOW_INPUTS
entry now, and its size and mtime are still what they were when vinemake put it there: a file
edited or replaced since then is the user's, and is kept with a note.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import TextIO

from vinemake.common.paths import remove_path
from vinemake.common.spec import Workflow
from vinemake.core.graph import BuildGraph, norm
from vinemake.core.journal import FileRecord, Journal
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
           outputs: Set[str], disk: Mapping[str, tuple[int, int] | None]) -> Cleaning:
    """Pure: the files of `made` that `mode` covers, minus sources and changed files."""
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
        if stat != (rec.size, rec.mtime_ns):
            kept.append((path, "it changed since vinemake made it"))
            continue
        paths.append(path)
    return Cleaning(tuple(paths), tuple(keys), tuple(kept), mode == "all")


def clean_workflow(workflow: Workflow, graph: BuildGraph, options, out: TextIO) -> int:
    """Apply --clean to the files on disk and record each removal in the journal."""
    root = options.root
    state = StateDir(root)
    journal = Journal(state.journal)
    made = journal.state.files
    protected = set(graph.sources) | {norm(p) for p in workflow.inputs or ()}
    outputs = set(graph.outputs()) | (set(made) - set(graph.producer) - set(graph.consumed))
    disk = {p: _stat(os.path.join(root, p)) for p in made}
    plan = decide(options.clean, made, protected, outputs, disk)
    journal.open()
    for path in plan.paths:
        remove_path(os.path.join(root, path))
        journal.removed(path)
        out.write(f"removed {path}\n")
    journal.close()
    for path, why in plan.kept:
        out.write(f"kept {path}: {why}\n")
    store = Store(state.store_path(options.cache_dir))
    for key in plan.keys:
        store.remove(key)
    if plan.state:
        for path in state.records():
            remove_path(path)
        _rmdir_if_empty(state.path)
    return 0


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns




def _rmdir_if_empty(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass
