"""`vinemake cache prune`: evict store entries by age and total size, never a held one.

A store is emptied only by this explicit command, never by a workflow's `--clean`: a shared
`--cache-dir` serves other workflows and users. An entry's age is the time since it was last
stored or restored (its ctime: storing links it, restoring touches it). `--older-than` removes
entries older than that; `--max-size` then removes the oldest until the rest fit. An entry a
running workflow holds (lease.py) is never removed, whatever its age. Leftovers of writers
that died mid-insert (`.tmp-*` older than a minute) go too.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Set

from vinemake.common.paths import remove_path, tree_bytes
from vinemake.common.records import dataclass
from vinemake.core.lease import LEASES, LOCK, held_keys, store_lock
from vinemake.core.store import ABANDONED_S, Store

__all__ = ["Entry", "Pruned", "choose", "prune", "foreign"]

SHARD = re.compile(r"[0-9a-f]{2}")  # Store.shard's folders
# What a shard holds: entries named by key (kind-algorithm-digest, in the folder of the
# digest's first two digits), their stamps, and copies being stored.
ENTRY = re.compile(r"[a-z]+-[a-z0-9_]+-(?P<shard>[0-9a-f]{2})[0-9a-f]{14,}(\.stamp)?|\.tmp-\w+")


@dataclass(frozen=True)
class Entry:
    key: str
    size: int  # bytes
    age_s: float


@dataclass(frozen=True)
class Pruned:
    """What a prune removed and kept, for its one line of report."""

    removed: int = 0
    removed_bytes: int = 0
    kept: int = 0
    kept_bytes: int = 0
    held: int = 0  # kept because a running workflow holds them (and would have gone)

    def line(self, root: str) -> str:
        return (f"vinemake cache prune: removed {self.removed} entries ({_mb(self.removed_bytes)})"
                f" from {root}; kept {self.kept} ({_mb(self.kept_bytes)}), {self.held} of "
                f"them held by running workflows")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def choose(entries: Iterable[Entry], held: Set[str], older_than_s: float | None,
           max_bytes: int | None) -> tuple[list[Entry], int]:
    """Pure: the entries to remove, oldest first, and how many held ones would have gone."""
    by_age = sorted(entries, key=lambda e: -e.age_s)
    victims: list[Entry] = []
    keep: list[Entry] = []
    blocked: set[str] = set()  # a held entry both limits would remove counts once
    for e in by_age:
        if older_than_s is not None and e.age_s > older_than_s:
            if e.key in held:
                blocked.add(e.key)
                keep.append(e)
            else:
                victims.append(e)
        else:
            keep.append(e)
    if max_bytes is not None:
        total = sum(e.size for e in keep)
        for e in list(keep):
            if total <= max_bytes:
                break
            if e.key in held:
                blocked.add(e.key)
                continue
            victims.append(e)
            keep.remove(e)
            total -= e.size
    return victims, len(blocked)


def foreign(root: str) -> str | None:
    """The first path in `root` that no store holds (a store holds its shards of key-named
    entries, its leases and its lock), or None: pruning anything else would delete files
    that are not entries."""
    for name in sorted(os.listdir(root)):
        if name in (LEASES, LOCK):
            continue
        folder = os.path.join(root, name)
        if not SHARD.fullmatch(name) or not os.path.isdir(folder):
            return name
        for entry in sorted(os.listdir(folder)):
            shape = ENTRY.fullmatch(entry)
            if shape is None or shape["shard"] not in (None, name):
                return f"{name}/{entry}"
    return None


def prune(root: str, older_than_s: float | None, max_bytes: int | None,
          now: float | None = None) -> Pruned:
    """Evict from the store at `root`; see the module docstring."""
    if not os.path.isdir(root):
        return Pruned()
    now = time.time() if now is None else now
    store = Store(root)
    with store_lock(root, exclusive=True):
        held = held_keys(root)
        entries = list(_entries(root, now))
        victims, blocked = choose(entries, held, older_than_s, max_bytes)
        for e in victims:
            store.remove(e.key)
    gone = {e.key for e in victims}
    kept = [e for e in entries if e.key not in gone]
    return Pruned(len(victims), sum(e.size for e in victims), len(kept),
                  sum(e.size for e in kept), blocked)


def _entries(root: str, now: float) -> Iterable[Entry]:
    for shard in sorted(os.listdir(root)):
        folder = os.path.join(root, shard)
        if not SHARD.fullmatch(shard) or not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if name.startswith(".tmp-"):
                if now - st.st_ctime > ABANDONED_S:
                    remove_path(path)  # a writer died while copying it in
                continue
            if name.endswith(".stamp"):
                continue
            yield Entry(name, _size(path, st), now - st.st_ctime)


def _size(path: str, st: os.stat_result) -> int:
    if not os.path.isdir(path) or os.path.islink(path):
        return st.st_size
    return tree_bytes(path)
