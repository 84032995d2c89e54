"""The cache store: finished outputs kept by output key, restored instead of recomputed.

Layout: `<root>/<2 hex>/<key>`, the file or directory, hard-linked or copied from the output,
with a stamp (`size mtime_ns content-hash` of the entry when stored) in its `user.vinemake` extended
attribute, or in `<key>.stamp` where the filesystem has no user xattrs. The xattr is there for
speed: setting one costs a small fraction of creating a file.

Inserting a file is one `link` (atomic: it either creates the name or finds it taken), so
concurrent writers sharing a `--cache-dir` never expose a half-written entry; copies and
directories are built under a temporary name and renamed. Entries of one key come from one
provenance, so two racing writers store the same bytes; the first link wins and stamps it.

A hard link shares its inode with the output, so an output edited in place silently changes
the stored bytes: the stamp catches that (size or mtime moved; for a directory, of anything
inside, since its files are links too) and the entry is discarded.

Nothing but `vinemake cache prune` (prune.py) evicts entries; a run holds the entries it
restores in a lease (lease.py) so a prune never takes one from under it.
"""

from __future__ import annotations

import errno
import os
import stat
import time
import uuid

from vinemake.common.linking import NO_LINK, copy_tree, link_or_copy_tree
from vinemake.common.paths import remove_path
from vinemake.core.filestate import output_stat
from vinemake.core.lease import Lease, make_shared_dir

__all__ = ["Store"]

ABANDONED_S = 60.0


class Store:
    """A directory of key-named entries (`.vinemake/cache`, or a shared `--cache-dir`)."""

    def __init__(self, root: str, shared: bool = False):
        self.root = root
        # A shared store restores by copy: a hard link would give two workflows one inode, and
        # an edit in place in one would change the other's output.
        self.shared = shared
        self._prefix = os.path.join(root, "")
        self.made_dirs: set[str] = set()
        self.lease = Lease(root)

    def hold(self, keys) -> None:
        """Keep `keys` from being pruned until release() (or this process ends)."""
        self.lease.hold(keys)

    def release(self) -> None:
        self.lease.release()

    def shard(self, key: str) -> str:
        """The directory that holds `key`'s entry (one of up to 256)."""
        return f"{self._prefix}{key.rsplit('-', 1)[-1][:2]}"

    def _entry(self, key: str) -> str:
        return f"{self.shard(key)}/{key}"

    def has(self, key: str) -> bool:
        """Is a whole, unmodified entry stored under `key`?"""
        return self._valid(self._entry(key))

    def contents(self, keys) -> set[str]:
        """Which of `keys` are stored."""
        return {k for k in keys if self.has(k)}

    def insert(self, key: str, path: str, lstat: os.stat_result | None = None,
               content: str = "") -> bool:
        """Keep the file or directory at `path` under `key`. False if already stored.

        `lstat`: the caller's fresh `os.lstat(path)`, which spares taking it again;
        `content`: the hash of its bytes, if known (content() gives it back)."""
        parent = self.shard(key)
        entry = f"{parent}/{key}"
        if self._place(path, entry, lstat, content, parent):
            return True
        if not self._abandoned(entry):
            return False
        self._drop(entry)
        return self._place(path, entry, None, content, parent)

    def content(self, key: str) -> str:
        """The content hash stored with `key`'s entry ("" if none or not known)."""
        fields = (_read_stamp(self._entry(key)) or "").split()
        return fields[2] if len(fields) > 2 else ""

    def _abandoned(self, entry: str) -> bool:
        """An entry left without a stamp by a writer that died between link and stamp.

        A live writer stamps within microseconds of linking (linking sets the ctime), so only
        an old stampless entry is taken to be abandoned.
        """
        if _read_stamp(entry) is not None:
            return False
        try:
            return time.time() - os.lstat(entry).st_ctime > ABANDONED_S
        except FileNotFoundError:
            return False

    def _place(self, path: str, entry: str, lstat: os.stat_result | None, content: str,
               parent: str) -> bool:
        """Link (or copy) `path` to `entry`, in the directory `parent`, and stamp it."""
        if parent not in self.made_dirs:
            make_shared_dir(self.root, parent)
            self.made_dirs.add(parent)
        linked = False
        try:
            if lstat is None:
                lstat = os.lstat(path)
            if stat.S_ISDIR(lstat.st_mode):  # a directory, not a link to one
                self._build_then_rename(path, entry)
            else:
                try:
                    os.link(path, entry, follow_symlinks=False)
                    linked = True
                except OSError as e:
                    if e.errno not in NO_LINK:
                        raise
                    self._build_then_rename(path, entry)
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                return False  # stored before, or by another writer just now
            raise
        # A hard link is the same inode: its stat is the one in hand. A copy has its own.
        if linked:  # (a file: output_stat's own stat, without the call)
            size, mtime = lstat.st_size, lstat.st_mtime_ns
        else:  # a directory: what is inside (its files are links)
            size, mtime = output_stat(entry, os.lstat(entry))
        _write_stamp(entry, f"{size} {mtime} {content}".rstrip())
        return True

    def _build_then_rename(self, path: str, entry: str) -> None:
        tmp = os.path.join(os.path.dirname(entry), f".tmp-{uuid.uuid4().hex}")
        try:
            link_or_copy_tree(path, tmp)
            if os.path.lexists(entry):
                raise FileExistsError(errno.EEXIST, "stored already", entry)
            os.rename(tmp, entry)
        finally:
            remove_path(tmp)

    def _valid(self, entry: str) -> bool:
        stamp = _read_stamp(entry)
        try:
            size, mtime = (int(x) for x in stamp.split()[:2])  # type: ignore[union-attr]
            st = os.lstat(entry)
        except (AttributeError, OSError, ValueError):
            return False
        if output_stat(entry, st) != (size, mtime):
            self._drop(entry)  # edited in place through a link
            return False
        return True

    def restore(self, key: str, dest: str) -> bool:
        """Put the entry for `key` at `dest` (atomically). False if absent or damaged."""
        entry = self._entry(key)
        if not self._valid(entry):
            return False
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
        tmp = f"{dest}.vinemake-{uuid.uuid4().hex[:8]}"
        (copy_tree if self.shared else link_or_copy_tree)(entry, tmp)
        _touch(entry)
        if os.path.isdir(dest) and not os.path.islink(dest):
            remove_path(dest)
        os.replace(tmp, dest)
        if os.path.lexists(tmp):  # dest was a link to the entry already: rename did nothing
            remove_path(tmp)
        return True

    def remove(self, key: str) -> None:
        self._drop(self._entry(key))

    def _drop(self, entry: str) -> None:
        remove_path(entry + ".stamp")
        remove_path(entry)


def _touch(entry: str) -> None:
    """Mark the entry used now (its ctime, which prune reads), keeping the mtime its stamp
    holds; another user's entry stays as it is."""
    try:
        st = os.lstat(entry)
        os.utime(entry, ns=(time.time_ns(), st.st_mtime_ns), follow_symlinks=False)
    except OSError:
        pass


_XATTR = "user.vinemake"


def _write_stamp(entry: str, stamp: str) -> None:
    try:
        os.setxattr(entry, _XATTR, stamp.encode(), follow_symlinks=False)
    except OSError:  # no user xattrs here (tmpfs, NFS, a symlink): a stamp file instead
        with open(entry + ".stamp", "w") as f:
            f.write(stamp + "\n")


def _read_stamp(entry: str) -> str | None:
    try:
        return os.getxattr(entry, _XATTR, follow_symlinks=False).decode()
    except FileNotFoundError:
        return None  # no entry (the common case when planning a first build)
    except OSError:
        pass
    try:
        with open(entry + ".stamp") as f:
            return f.read()
    except OSError:
        return None


