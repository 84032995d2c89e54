"""Who holds which file: copies on workers, their sizes and hashes, and copies on their way.

The manager's ledger of files, kept by its loop thread. A file is known by its key; a worker
holds a copy once it made the file or a transfer to it ended well (`add`), and stops holding
it when the copy is dropped or the worker is lost. A copy on its way to a worker is charged
to its source (`charge`), so no source serves more than its share at once, until the worker
says the transfer ended (`uncharge`). Each worker's record keeps its side of the ledger
(holds, cached, charged) so placement reads it without a lookup here.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable, Iterator, Mapping

from vinemake.common.packed import pack, unpack
from vinemake.common.task import Task
from vinemake.manager.placement import Cached, blend_rate
from vinemake.manager.workers import ConnectedWorker

__all__ = ["Replicas"]


class Replicas:
    """Where every file the manager knows of is, and what it knows about it."""

    def __init__(self) -> None:
        self.holders: dict[str, set[str]] = {}  # key -> ids of workers holding a copy
        self.hashes: dict[str, str | bytes] = {}  # key -> its content hash, packed
        self.sizes: dict[str, int] = {}
        self.paths: dict[str, str] = {}  # key -> its path on the manager's host
        self.remote_only: set[str] = set()  # kept on workers: its path names no file here
        self.producers: dict[str, Task] = {}  # remote-only key -> the task that made it
        self.unrecoverable: set[str] = set()  # lost, and no known task makes it again
        self.inflight: collections.Counter = collections.Counter()  # source -> copies sent
        self.moving: collections.Counter = collections.Counter()  # key -> copies in flight
        self.rate: float | None = None  # bytes/s of completed transfers, a moving average
        self.remake_s: dict[str, float] = {}  # a `@mini` output -> how long making it took
        self.epoch = 0  # bumped whenever some worker's cache changes

    # ------------------------------------------------------------ copies on workers

    def add(self, w: ConnectedWorker, key: str, digest: str, forever: bool = False) -> None:
        """`w` holds a copy of `key` now."""
        self.unrecoverable.discard(key)
        if key not in w.cached:  # its cache holds it: that disk is taken (placement)
            w.cached[key] = self.sizes.get(key, 0)
            w.cache_bytes += w.cached[key]
            self.epoch += 1
        if forever:
            w.forever.add(key)
        w.holds.add(key)
        self.holders.setdefault(key, set()).add(w.id)
        if digest:
            self.hashes[key] = pack(digest)

    def forget(self, w: ConnectedWorker, key: str) -> None:
        """`w` no longer holds `key` (its copy is gone or dropped): its disk is free again."""
        w.holds.discard(key)
        w.forever.discard(key)
        if key in w.cached:
            w.cache_bytes -= w.cached.pop(key)
            self.epoch += 1

    def unlist(self, key: str, wid: str) -> bool:
        """`wid` is no source of `key` any more; True when that was its last copy."""
        holders = self.holders.get(key)
        if holders is None:
            return False
        holders.discard(wid)
        if holders:
            return False
        del self.holders[key]
        return True

    def worker_lost(self, w: ConnectedWorker) -> set[str]:
        """`w` is gone with its copies: the files kept on workers that went with it, which
        no known task makes again."""
        for key in list(w.charged):
            self.uncharge(w, key)
        lost = set()
        for key in w.holds:
            if self.unlist(key, w.id) and key in self.remote_only and key not in self.producers:
                lost.add(key)
        return lost

    def cache_of(self, w: ConnectedWorker) -> list[Cached]:
        """`w`'s cache, oldest first, with where else each file can come from."""
        out = []
        for key, size in w.cached.items():
            copies = len(self.holders.get(key, ())) - (w.id in self.holders.get(key, ()))
            if key not in self.remote_only and key in self.paths:
                copies += 1  # the manager has it at its path
            out.append(Cached(key, size, copies, key in self.producers, key in w.forever))
        return out

    # ------------------------------------------------------------ copies on their way

    def charge(self, w: ConnectedWorker, key: str, label: str) -> None:
        """A copy of `key` goes to `w` from the source `label`."""
        if key not in w.charged:
            self.inflight[label] += 1
            self.moving[key] += 1
            w.charged[key] = label

    def uncharge(self, w: ConnectedWorker, key: str) -> None:
        """The copy of `key` on its way to `w` arrived or failed: its source is free."""
        label = w.charged.pop(key, None)
        if label is not None:
            self.inflight[label] -= 1
            self.moving[key] -= 1

    def arrived(self, w: ConnectedWorker, key: str, size: int, digest: str, seconds: float) -> None:
        """A transfer of `key` to `w` ended well after `seconds`."""
        self.uncharge(w, key)
        self.rate = blend_rate(self.rate, size, seconds)
        self.sizes[key] = max(size, self.sizes.get(key, 0))
        self.add(w, key, digest)

    def moving_keys(self) -> set[str]:
        return {k for k, n in self.moving.items() if n > 0}

    @staticmethod
    def receivers(key: str, asking: str, workers: Mapping[str, ConnectedWorker]) -> list[str]:
        """Workers whose copy of `key` is on its way: they forward it as it arrives."""
        return [wid for wid, w in workers.items() if key in w.charged and wid != asking]

    # ------------------------------------------------------------ what tasks say of files

    def note_inputs(self, tasks: Iterable[Task]) -> None:
        """Inputs with a path on this host can be served from there."""
        paths = self.paths
        for t in tasks:
            for f in t.inputs:
                if f.path is not None:
                    paths[f.key] = f.path
            if t.library is not None:
                for f in t.library.inputs:
                    if f.path is not None:
                        paths[f.key] = f.path
            for m in t.minis:
                for f in m.inputs:
                    if f.path is not None:
                        paths[f.key] = f.path

    def made(self, w: ConnectedWorker, task: Task, outputs) -> set[str]:
        """`task` ended on `w` with `outputs` ((key, size, hash, path) each): the keys a
        worker on this host already renamed to their paths (not in its cache)."""
        placed = set()
        for key, size, digest, path in outputs:
            self.sizes[key] = size
            if w.same_host and _is_output_at(task, key, path):
                placed.add(key)  # the worker renamed it to its path: it is not in its cache
                if digest:
                    self.hashes[key] = pack(digest)
            else:
                self.add(w, key, digest, task.cache_forever)
        # Kept on workers (and how to make them again) or at a path here. Where a file put
        # in place here is, the tasks that read it say (note_inputs): a million files that
        # nothing reads would hold their paths for the rest of the run.
        for f in task.outputs:
            if f.path is None:
                self.remote_only.add(f.key)
                self.producers[f.key] = task
            elif f.key not in placed:
                self.paths[f.key] = f.path
        return placed

    def hash_of(self, key: str) -> str:
        """The content hash of `key` a worker reported ("" if none has)."""
        return unpack(self.hashes.get(key, ""))

    def content_hashes(self) -> Mapping[str, str]:
        """Every content hash known, by key (read-only)."""
        return _Unpacked(self.hashes)

    def size_of(self, key: str, declared: int, path: str | None) -> int:
        """Bytes of a file: declared, learnt from an outcome, or (once) from its path here."""
        size = max(declared, self.sizes.get(key, 0))
        if size and key not in self.sizes:
            self.sizes[key] = size  # a copy on its way takes this much disk (placement)
        elif size == 0 and path is not None and key not in self.sizes:
            try:
                size = os.stat(path).st_size
            except OSError:
                size = 0
            self.sizes[key] = size
        return size


class _Unpacked(Mapping):
    """A table of packed hashes, read as text."""

    def __init__(self, table: Mapping[str, str | bytes]):
        self._table = table

    def __getitem__(self, key: str) -> str:
        return unpack(self._table[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)


def _is_output_at(task: Task, key: str, path: str) -> bool:
    """Is `path` where `task`'s output `key` belongs? (A loop: a generator costs more than
    the one or two outputs a task has.)"""
    for f in task.outputs:
        if f.key == key and f.path == path:
            return True
    return False
