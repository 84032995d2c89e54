"""File names vinemake makes from user text (rule and target names) that fit any filesystem.

A rule named by a 300-character target, or by 60 CJK characters quoted into 540 bytes, is
longer than the 255 bytes most filesystems allow in one name. Such a name keeps a readable
head and ends in a hash of the whole, so two long names never meet.
"""

from __future__ import annotations

import re

import xxhash

__all__ = ["fit", "quoted", "flat", "MAX_NAME"]

MAX_NAME = 200  # bytes: under every common filesystem's 255, with room for a suffix
_HASH = 16  # hex digits of the whole name's hash kept at the end of a shortened one
_SAFE = " .,_-+=@"
_PART_ESCAPE = re.compile(r"%[0-9A-Fa-f]?\Z")
_NOTHING_TO_QUOTE = re.compile(r"[A-Za-z0-9~ .,_+=@-]*\Z")  # quote()'s own safe set and _SAFE


def fit(name: str, limit: int = MAX_NAME) -> str:
    """`name` if it fits in `limit` bytes, else its head, `-` and a hash of all of it."""
    data = name.encode("utf-8", "surrogateescape")
    if len(data) <= limit:
        return name
    head = data[:limit - _HASH - 1].decode("utf-8", "ignore")  # never half a character
    head = _PART_ESCAPE.sub("", head)  # nor half a %XX escape
    return f"{head}-{xxhash.xxh3_64_hexdigest(data)}"


def quoted(name: str) -> str:
    """One path component for `name` (slashes and the unusual quoted), fitted."""
    if _NOTHING_TO_QUOTE.match(name):
        return fit(name)  # the common case, and quote() costs more than a small task's dispatch
    from urllib.parse import quote  # here: a run whose names need none never loads it

    return fit(quote(name, safe=_SAFE))


def flat(path: str) -> str:
    """One path component for a relative path (`sub/x.txt` → `sub_x.txt`), fitted: how a
    failed rule's outputs are named beside its INFO record."""
    return fit(path.replace("/", "_"))
