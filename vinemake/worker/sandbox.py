"""A task's private directory: input names checked, inputs linked in, outputs found afterwards.

The manager's word is not trusted here: a sandbox name that is absolute, climbs out with `..`,
or holds a NUL is refused before anything touches the disk, so no task can write outside the
worker's workspace whatever arrives on the wire.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import struct
import sys

from vinemake.common.linking import link_or_copy

__all__ = ["SandboxError", "check_name", "check_key", "is_empty", "link_in", "tree_size"]


class SandboxError(Exception):
    """A name or file the worker refuses to use."""


def check_name(name: str) -> str:
    """`name` if it is a safe relative path inside a sandbox, else SandboxError."""
    if "/" not in name and name not in ("", ".", "..") and "\0" not in name:
        return name  # the usual plain name (the checks below say the same, slower)
    if not name or "\0" in name:
        raise SandboxError(f"unsafe sandbox name {name!r}: empty or contains NUL")
    if name.startswith("/"):
        raise SandboxError(f"unsafe sandbox name {name!r}: absolute path")
    parts = name.split("/")
    if ".." in parts:
        raise SandboxError(f"unsafe sandbox name {name!r}: climbs out with '..'")
    if all(p in ("", ".") for p in parts):
        raise SandboxError(f"unsafe sandbox name {name!r}: names the sandbox itself")
    return name


def check_key(key: str) -> str:
    """`key` if it can be a file name in the cache (no separators, no leading dot)."""
    if not key or key[0] == "." or "/" in key or "\0" in key or len(key) > 200:
        raise SandboxError(f"unsafe cache key {key!r}")
    return key


def link_in(src: str, sandbox: str, name: str) -> None:
    """Hard-link `src` (a file, or a directory recursively) at `name` inside `sandbox`.

    Falls back to copying across filesystems or where links are refused.
    """
    dest = os.path.join(sandbox, check_name(name))
    parent = os.path.dirname(dest)
    if parent != sandbox:
        os.makedirs(parent, exist_ok=True)
    if os.path.isdir(src):
        shutil.copytree(src, dest, copy_function=link_or_copy, dirs_exist_ok=True)
    else:
        link_or_copy(src, dest)


def _getdents64():
    """glibc's getdents64 (2.30 and later), or None: then is_empty says False."""
    if sys.platform != "linux":
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).getdents64
    except (AttributeError, OSError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
    call.restype = ctypes.c_ssize_t
    return call


_GETDENTS = _getdents64()
_DIRENT = struct.Struct("=QqHB")  # linux_dirent64: inode, offset, record length, type; name
_DENTS_BUF = 512  # "." and ".." and the longest name's record fit


def is_empty(fd: int) -> bool:
    """Does the directory open as `fd` hold nothing? False also when it cannot tell (no
    getdents64 here, an error, a directory removed meanwhile): the caller then looks by
    its path.

    Reads of the open directory where listing it by path also opens, stats and closes it,
    for each of the many tasks that leave their sandbox empty (their outputs moved out).
    """
    if _GETDENTS is None:
        return False
    try:
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        return False
    buf = ctypes.create_string_buffer(_DENTS_BUF)
    n = _GETDENTS(fd, buf, _DENTS_BUF)
    if n <= 0:  # an error, or a directory removed meanwhile (not even "." is listed)
        return False
    raw = buf.raw
    at = 0
    while at < n:
        length = _DIRENT.unpack_from(raw, at)[2]
        name = raw[at + _DIRENT.size:raw.index(b"\0", at + _DIRENT.size)]
        if name not in (b".", b".."):
            return False
        at += length
    # Only the dots so far: empty if nothing follows (a file system may hand out fewer
    # entries per read than fit).
    return _GETDENTS(fd, buf, _DENTS_BUF) == 0


def tree_size(path: str) -> int:
    """Bytes in the files under `path` (a file's own size if it is one)."""
    try:
        if not os.path.isdir(path):
            return os.stat(path).st_size
    except OSError:
        return 0
    total = 0
    stack = [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return total
