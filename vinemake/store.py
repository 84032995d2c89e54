"""The cache store: finished outputs kept by output key, restored instead of recomputed.

Layout: `<root>/<2 hex>/<key>/data` (the file or directory) and `<root>/<2 hex>/<key>/stamp`
(`size mtime_ns` of data when stored). An entry is inserted as a temporary directory renamed
into place in one step, so concurrent writers (several workflows sharing `--cache-dir`) never
expose a half-written entry: the loser of a race finds the name taken and drops its copy.

Files are hard-linked where the store and the workflow share a filesystem, else copied. A hard
link shares its inode with the output, so an output edited in place would silently change the
stored bytes: the stamp catches that (the mtime moves) and the entry is discarded, not served.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid

__all__ = ["Store"]


class Store:
    """A directory of key-named entries (`.vinemake/cache`, or a shared `--cache-dir`)."""

    def __init__(self, root: str):
        self.root = root

    def _entry(self, key: str) -> str:
        return os.path.join(self.root, key.rsplit("-", 1)[-1][:2], key)

    def has(self, key: str) -> bool:
        """Is a whole, unmodified entry stored under `key`?"""
        return self._valid(self._entry(key))

    def contents(self, keys) -> set[str]:
        """Which of `keys` are stored."""
        return {k for k in keys if self.has(k)}

    def _valid(self, entry: str) -> bool:
        try:
            with open(os.path.join(entry, "stamp")) as f:
                size, mtime = (int(x) for x in f.read().split())
            st = os.lstat(os.path.join(entry, "data"))
        except (OSError, ValueError):
            return False
        if (st.st_size, st.st_mtime_ns) != (size, mtime):
            shutil.rmtree(entry, ignore_errors=True)  # edited in place through a link
            return False
        return True

    def insert(self, key: str, path: str) -> bool:
        """Keep the file or directory at `path` under `key`. False if already stored."""
        entry = self._entry(key)
        if os.path.exists(entry):
            return False
        parent = os.path.dirname(entry)
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".tmp-{uuid.uuid4().hex}")
        os.mkdir(tmp)
        try:
            _link_or_copy(path, os.path.join(tmp, "data"))
            st = os.lstat(os.path.join(tmp, "data"))
            with open(os.path.join(tmp, "stamp"), "w") as f:
                f.write(f"{st.st_size} {st.st_mtime_ns}\n")
            os.rename(tmp, entry)
            return True
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                return False  # another writer stored it first
            raise

    def restore(self, key: str, dest: str) -> bool:
        """Put the entry for `key` at `dest` (atomically). False if absent or damaged."""
        entry = self._entry(key)
        if not self._valid(entry):
            return False
        data = os.path.join(entry, "data")
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
        tmp = f"{dest}.vinemake-{uuid.uuid4().hex[:8]}"
        _link_or_copy(data, tmp)
        if os.path.isdir(dest) and not os.path.islink(dest):
            shutil.rmtree(dest)
        os.replace(tmp, dest)
        return True

    def remove(self, key: str) -> None:
        shutil.rmtree(self._entry(key), ignore_errors=True)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _link_or_copy(src: str, dst: str) -> None:
    if os.path.isdir(src) and not os.path.islink(src):
        shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
        return
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copy2(src, dst, follow_symlinks=False)
