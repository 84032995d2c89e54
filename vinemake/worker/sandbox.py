"""A task's private directory: input names checked, inputs linked in, outputs found afterwards.

The manager's word is not trusted here: a sandbox name that is absolute, climbs out with `..`,
or holds a NUL is refused before anything touches the disk, so no task can write outside the
worker's workspace whatever arrives on the wire.
"""

from __future__ import annotations

import os
import shutil

from vinemake.common.linking import link_or_copy

__all__ = ["SandboxError", "check_name", "check_key", "link_in", "tree_size"]


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
