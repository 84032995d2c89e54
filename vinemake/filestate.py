"""Content keys of source files, memoised by stat so an unchanged file is never re-read.

The memo lives in `.vinemake/filestate`: one line per file, `size mtime_ns inode ctime_ns key
path`, rewritten atomically (temp + rename) after a run that learned something new. A file whose
four stat fields all match its line keeps its key without being opened; `touch` changes mtime,
so the file is re-hashed, finds the same content and keeps the same key. Each path is stat'ed
at most once per FileState (one per run).
"""

from __future__ import annotations

import os
import stat as statmod

import xxhash

from vinemake.errors import InputError
from vinemake.keys import source_key, tree_key

__all__ = ["FileState", "hash_file", "CHUNK"]

CHUNK = 1 << 20  # 1 MiB reads: large enough to amortise syscalls, small enough for the cache


def hash_file(path: str) -> str:
    """xxh3_128 hex digest of a file's content."""
    h = xxhash.xxh3_128()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


Signature = tuple[int, int, int, int]


class FileState:
    """Keys of source files and directories, memoised across runs in `memo_path`."""

    def __init__(self, memo_path: str | None):
        self.memo_path = memo_path
        self.memo: dict[str, tuple[Signature, str]] = _load(memo_path) if memo_path else {}
        self.stats: dict[str, os.stat_result | None] = {}
        self.reads = 0  # files actually opened and hashed this run
        self.dirty = False

    def stat(self, path: str) -> os.stat_result | None:
        """lstat-free stat of `path` (following links), once per run; None if absent."""
        if path in self.stats:
            return self.stats[path]
        try:
            st: os.stat_result | None = os.stat(path)
        except FileNotFoundError:
            st = None
        except NotADirectoryError:
            st = None
        self.stats[path] = st
        return st

    def key(self, path: str) -> str:
        """The content key of a file, or the tree key of a directory. InputError if absent."""
        st = self.stat(path)
        if st is None:
            raise InputError(f"source '{path}' does not exist")
        if statmod.S_ISDIR(st.st_mode):
            return self._dir_key(path)
        sig = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
        known = self.memo.get(path)
        if known is not None and known[0] == sig:
            return known[1]
        self.reads += 1
        key = source_key(hash_file(path))
        self.memo[path] = (sig, key)
        self.dirty = True
        return key

    def _dir_key(self, path: str) -> str:
        entries = []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                entries.append((os.path.relpath(full, path), self.key(full)))
        return tree_key(entries)

    def save(self) -> None:
        """Write the memo back if anything changed (atomic: temp + rename)."""
        if not self.memo_path or not self.dirty:
            return
        os.makedirs(os.path.dirname(self.memo_path) or ".", exist_ok=True)
        tmp = f"{self.memo_path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
            for path, ((size, mtime, ino, ctime), key) in self.memo.items():
                f.write(f"{size} {mtime} {ino} {ctime} {key} {path}\n")
        os.replace(tmp, self.memo_path)
        self.dirty = False


def _load(memo_path: str) -> dict[str, tuple[Signature, str]]:
    memo: dict[str, tuple[Signature, str]] = {}
    try:
        f = open(memo_path, encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return memo
    with f:
        for line in f:
            fields = line.rstrip("\n").split(" ", 5)
            if len(fields) != 6:
                continue  # a damaged line only costs one re-hash
            try:
                sig = (int(fields[0]), int(fields[1]), int(fields[2]), int(fields[3]))
            except ValueError:
                continue
            memo[fields[5]] = (sig, fields[4])
    return memo
