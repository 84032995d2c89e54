"""What is at a path, a file, a link (never what it points to) or a whole tree: removing it,
and the bytes it holds."""

from __future__ import annotations

import os
import shutil

__all__ = ["remove_path", "tree_bytes"]


def remove_path(path: str) -> None:
    """Remove a file, link or directory tree if it exists; a missing path is fine.

    Worker sandboxes are usually empty or flat once outputs moved out, and shutil.rmtree's
    careful descent costs more than running a small task; so flat directories go the short
    way. Inside a nested tree, entries that cannot be removed are left (rmtree's
    ignore_errors): the caller asked for a clean-up, not a guarantee.
    """
    try:
        os.rmdir(path)
        return
    except FileNotFoundError:
        return
    except NotADirectoryError:  # a file, or a link (to a directory too)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    except OSError:  # not empty (or not ours to remove: the walk below says which)
        pass
    if os.path.islink(path):
        os.unlink(path)
        return
    nested = False
    try:
        with os.scandir(path) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    nested = True
                else:
                    os.unlink(entry.path)
    except OSError:
        nested = True  # let rmtree do what can be done
    if nested:
        shutil.rmtree(path, ignore_errors=True)
    else:
        os.rmdir(path)


def tree_bytes(path: str) -> int:
    """Bytes of the files under directory `path` (links counted as links; a file that goes
    while it is counted counts nothing)."""
    total = 0
    for where, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(where, name)).st_size
            except OSError:
                pass
    return total
