"""Hard link where the file system allows it, copy where it does not."""

from __future__ import annotations

import errno
import os
import shutil

__all__ = ["link_or_copy", "link_or_copy_tree", "copy_tree", "NO_LINK"]

# Refusals that mean "this file system (or pair of them) cannot link here", not a real error:
# across devices, link counts at their limit, links not permitted or not supported.
NO_LINK = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES, errno.ENOTSUP)


def link_or_copy(src: str, dst: str, follow_symlinks: bool = True) -> None:
    """Hard-link the file `src` at `dst`; copy it (with its times) when no link can be made.

    `follow_symlinks=False` links (or copies) a symlink itself rather than what it names.
    """
    try:
        os.link(src, dst, follow_symlinks=follow_symlinks)
    except OSError as e:
        if e.errno not in NO_LINK:
            raise
        shutil.copy2(src, dst, follow_symlinks=follow_symlinks)


def link_or_copy_tree(src: str, dst: str) -> None:
    """`link_or_copy` for a file, a symlink (kept as one) or a whole directory tree."""
    if os.path.isdir(src) and not os.path.islink(src):
        shutil.copytree(src, dst, symlinks=True, copy_function=link_or_copy)
    else:
        link_or_copy(src, dst, follow_symlinks=False)


def copy_tree(src: str, dst: str) -> None:
    """Copy (never link) a file, a symlink (kept as one) or a whole directory tree, with times."""
    if os.path.isdir(src) and not os.path.islink(src):
        shutil.copytree(src, dst, symlinks=True)
    else:
        shutil.copy2(src, dst, follow_symlinks=False)
