"""Directories only this user can write: the only places vinemake keeps caches it loads."""

from __future__ import annotations

import os

__all__ = ["private_dir"]


def private_dir(directory: str, mode: int | None = 0o700) -> bool:
    """True if `directory` is ours and nobody else may write to it; made with `mode` if missing
    (mode None: never made).

    A cache vinemake loads without checking every byte against its source (Lark's pickled
    grammar analysis, the parsed rules) is trusted like the Vinefile itself: so only from a
    directory another user cannot write, never the shared temporary directory.
    """
    try:
        if mode is not None:
            os.makedirs(directory, mode=mode, exist_ok=True)
        info = os.stat(directory)
    except OSError:
        return False
    return info.st_uid == os.getuid() and not info.st_mode & 0o022
