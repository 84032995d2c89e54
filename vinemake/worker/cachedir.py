"""The worker's cache: files named by key, with size, content hash and the forever flag.

Ordinary entries live under the run directory and go when the worker exits. `@cache forever`
entries live in `forever/` under --workdir with a small `.meta` file beside each, and are found
again when a worker starts in the same workdir, so a restarted worker still has them.
"""

from __future__ import annotations

import json
import os
import threading

from vinemake.common.paths import remove_path
from vinemake.common.records import dataclass
from vinemake.worker.sandbox import check_key

__all__ = ["Entry", "CacheDir"]


@dataclass(frozen=True)
class Entry:
    key: str
    path: str
    size: int
    hash: str
    forever: bool = False


class CacheDir:
    """Key → file. Insertion renames a finished file in, so an entry is always complete."""

    def __init__(self, run_dir: str, forever_dir: str):
        self.run_dir = run_dir
        self.forever_dir = forever_dir
        self._files = os.path.join(run_dir, "cache")
        os.makedirs(self._files, exist_ok=True)
        os.makedirs(forever_dir, exist_ok=True)
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}
        self._load_forever()

    def _load_forever(self) -> None:
        for name in os.listdir(self.forever_dir):
            if not name.endswith(".meta"):
                continue
            key = name[:-5]
            path = os.path.join(self.forever_dir, key)
            try:
                with open(os.path.join(self.forever_dir, name)) as f:
                    meta = json.load(f)
                check_key(key)
                if os.path.exists(path):
                    self._entries[key] = Entry(key, path, int(meta["size"]), str(meta["hash"]),
                                               True)
            except (OSError, ValueError, KeyError, TypeError, Exception):
                continue  # a damaged entry is simply not cached

    def get(self, key: str) -> Entry | None:
        with self._lock:
            return self._entries.get(key)

    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._entries.values())

    def path_for(self, key: str, forever: bool = False) -> str:
        return os.path.join(self.forever_dir if forever else self._files, check_key(key))

    def insert(self, src: str, key: str, size: int, digest: str, forever: bool = False) -> Entry:
        """Rename `src` into the cache as `key` (replacing an older entry)."""
        dest = self.path_for(key, forever)
        old = self.get(key)
        if old is not None and old.path != dest:
            self.remove(key)
        if os.path.isdir(dest):
            remove_path(dest)
        os.rename(src, dest)
        entry = Entry(key, dest, size, digest, forever)
        if forever:
            tmp = dest + ".meta.tmp"
            with open(tmp, "w") as f:
                json.dump({"size": size, "hash": digest}, f)
            os.rename(tmp, dest + ".meta")
        with self._lock:
            self._entries[key] = entry
        return entry

    def remove(self, key: str) -> None:
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is None:
            return
        remove_path(entry.path)
        if entry.forever:
            remove_path(entry.path + ".meta")
