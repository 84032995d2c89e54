"""Moving files for the manager: which source serves an input, the transfer log, atomic installs.

Sources are chosen so copies spread as a tree: a peer worker already holding the file is
preferred to the manager, the least busy first, and no source serves more than `limit`
transfers at once; when every source is busy the task waits for one to free up (by then the
file usually has more holders). A worker still receiving a large file counts as a source too
(after complete holders): it forwards the chunks as they land, so copies flow down a pipeline
instead of waiting for whole files hop by hop. Every transfer is logged as one tab-separated line:

    source  dest  key  bytes  start  end  ok

(start/end are Unix times), which the benchmark reads.
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
import threading
from collections.abc import Iterable, Mapping

from vinemake.common.linking import link_or_copy
from vinemake.common.paths import remove_path

__all__ = ["MANAGER", "choose_sources", "TransferLog", "install", "install_bytes"]

MANAGER = "manager"
_tmp_counter = itertools.count()


def choose_sources(holders: Iterable[str], inflight: Mapping[str, int], limit: int,
                   manager_has: bool, peers: bool = True, moving: int = 0,
                   receivers: Iterable[str] = ()) -> list[str] | None:
    """Sources to try in order, or None when all are busy (wait); [] when there is none. Pure.

    `moving` is how many copies of the file are on their way to workers now. With peer
    transfers the manager sends a file out once: while a copy is moving or a peer holds it,
    other workers wait for a peer, so the manager's link carries each file once.
    `receivers` are workers receiving the file now, which forward it as it arrives
    (cut-through): sources too, after every complete holder.
    """
    holders = sorted(holders) if peers else []
    receivers = sorted(set(receivers) - set(holders)) if peers else []
    candidates = holders + receivers
    if manager_has:
        if peers and (candidates or moving):
            if not candidates:
                return None
        else:
            candidates.append(MANAGER)
    if not candidates:
        return []
    free = [s for s in candidates if inflight.get(s, 0) < limit]
    if not free:
        return None
    # Complete holders first, then receivers, then the manager, the one source everyone
    # shares; the least busy first within each.
    rank = {s: i for i, group in enumerate((holders, receivers)) for s in group}
    free.sort(key=lambda s: (rank.get(s, 2), inflight.get(s, 0)))
    return free + [s for s in candidates if s not in free]


class TransferLog:
    """Appends one line per transfer to the manager's transfer log."""

    HEADER = "source\tdest\tkey\tbytes\tstart\tend\tok\n"

    def __init__(self, path: str, listener=None):
        self.listener = listener  # called with each record's fields too (the run's events)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self._f = open(path, "a", buffering=1)
        self._lock = threading.Lock()
        if self._f.tell() == 0:
            self._f.write(self.HEADER)

    def record(self, source: str, dest: str, key: str, size: int, start: float, end: float,
               ok: bool = True) -> None:
        with self._lock:
            self._f.write(f"{source}\t{dest}\t{key}\t{size}\t{start:.6f}\t{end:.6f}\t"
                          f"{'ok' if ok else 'failed'}\n")
        if self.listener is not None:
            self.listener(source, dest, key, size, start, end, ok)

    def close(self) -> None:
        with self._lock:
            self._f.close()


def install(src: str, target: str, move: bool = False) -> None:
    """Put `src` at `target` atomically: a temp name in target's directory, then rename.

    Links where it can (same filesystem), copies where it cannot; `move` renames `src` itself
    (a file just received). Parent directories are created. A directory target is replaced.
    """
    parent = os.path.dirname(target) or "."
    tmp = os.path.join(parent, f".{os.path.basename(target)}.vinemake-{os.getpid()}-"
                               f"{next(_tmp_counter)}")
    if not move and _fast_link(src, tmp, target):
        return
    os.makedirs(parent, exist_ok=True)
    try:
        if move:
            try:
                os.rename(src, tmp)
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
                shutil.move(src, tmp)
        elif os.path.isdir(src):
            shutil.copytree(src, tmp, copy_function=link_or_copy)
        else:
            link_or_copy(src, tmp)
        if os.path.isdir(tmp) and os.path.isdir(target) and not os.path.islink(target):
            remove_path(target)
        os.rename(tmp, target)
    except BaseException:
        remove_path(tmp)
        raise


def install_bytes(data: bytes, target: str) -> None:
    """Write `data` at `target` atomically (a small output that came inside a message).

    An empty file where there is nothing yet is made in place: making it is atomic in itself,
    and a null task's output then costs one new name, not a temporary's and a rename.
    """
    if not data and _make_empty(target):
        return
    parent = os.path.dirname(target) or "."
    tmp = os.path.join(parent, f".{os.path.basename(target)}.vinemake-{os.getpid()}-"
                               f"{next(_tmp_counter)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileNotFoundError:
        os.makedirs(parent, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            os.rename(tmp, target)
        except IsADirectoryError:  # a directory in the way (a link to one is replaced)
            remove_path(target)
            os.rename(tmp, target)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def _make_empty(target: str) -> bool:
    """Create `target` as an empty file if nothing is there and its directory exists."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except OSError:  # something in the way, or no directory: the general path sees to it
        return False
    os.close(fd)
    return True


def _fast_link(src: str, tmp: str, target: str) -> bool:
    """The common case in two system calls: a file, linked, renamed over a file or nothing.

    False (with nothing left behind) when the general path is needed: a directory, another
    filesystem, a parent directory to create, a directory in the way.
    """
    try:
        os.link(src, tmp)
    except OSError:
        return False
    try:
        os.rename(tmp, target)
    except OSError:
        os.unlink(tmp)
        return False
    return True
