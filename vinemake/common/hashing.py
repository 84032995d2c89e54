"""Content hashes: the canonical encoding keys are made of, and xxh3_128 of files and trees.

One place for every hash vinemake takes: provenance keys (core/keys.py) are built from
`encode` and `digest`, a source's key from its content hash, and a directory's from its
files' keys; workers hash outputs with the same functions, so a directory output's hash and
a source directory's key are the same digest.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection, Iterable

import xxhash

__all__ = ["ALGORITHM", "CHUNK", "encode", "digest", "raw_digest", "hex_digest", "source_key",
           "tree_digest", "tree_key", "hash_file", "hash_tree", "streaming"]

ALGORITHM = "xxh3_128"
CHUNK = 1 << 20  # reads of 1 MiB: large enough to amortise syscalls, small enough for the cache

Field = str | bytes | int | float | None | tuple


def encode(*fields: Field) -> bytes:
    """An unambiguous byte string for nested fields: each one tagged and length-prefixed."""
    parts: list[str] = []
    _encode_into(parts, fields)
    return "".join(parts).encode("utf-8", "surrogateescape")


def _encode_into(parts: list[str], value: Field) -> None:
    # Netstring-like in str form: the tag and the length (in characters) before each value.
    kind = type(value)
    if kind is str:
        parts.append(f"S{len(value)}:")  # type: ignore[arg-type]
        parts.append(value)  # type: ignore[arg-type]
    elif kind is tuple:
        parts.append(f"T{len(value)}:")  # type: ignore[arg-type]
        for item in value:  # type: ignore[union-attr]
            _encode_into(parts, item)
    elif value is None:
        parts.append("N")
    elif kind is bytes:
        text = value.decode("latin-1")  # type: ignore[union-attr]
        parts.append(f"B{len(text)}:")
        parts.append(text)
    else:
        text = repr(value)
        parts.append(f"I{len(text)}:")
        parts.append(text)


def digest(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


# digest() as 16 bytes and as hex, bound straight to xxhash: keying a million rules calls
# them three times a rule, and a Python wrapper's call costs as much as a short hash.
raw_digest = xxhash.xxh3_128_digest
hex_digest = xxhash.xxh3_128_hexdigest


def streaming():
    """A content hash fed piece by piece (`update`, `hexdigest`): bytes that arrive over the
    network (a URL document) hash as the same bytes in a file would."""
    return xxhash.xxh3_128()


def source_key(content_hex: str) -> str:
    """The key of a source file from the xxh3_128 hex digest of its content."""
    return f"file-{ALGORITHM}-{content_hex}"


def tree_digest(entries: Iterable[tuple[str, str]]) -> str:
    """The digest of a directory from its files' (relative name, key) entries, in any order."""
    return digest(encode("tree", tuple(sorted(entries))))


def tree_key(entries: Iterable[tuple[str, str]]) -> str:
    """The key of a source directory from its files' (relative name, key) entries."""
    return f"file-{ALGORITHM}-{tree_digest(entries)}"




_EMPTY = xxhash.xxh3_128().hexdigest()  # the content hash of an empty file


def hash_file(path: str) -> tuple[int, str]:
    """(size, xxh3_128 hex) of a file, read in CHUNK-sized pieces."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _hash_fd(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _hash_fd(fd: int, size_hint: int) -> tuple[int, str]:
    # Plain reads of the size first: a buffered file object and a 1 MiB read cost more than
    # hashing the small file most tasks write.
    h = xxhash.xxh3_128()
    size = 0
    want = min(size_hint + 1, CHUNK)
    while chunk := os.read(fd, want):
        h.update(chunk)
        size += len(chunk)
        want = CHUNK
    return size, h.hexdigest()


def hash_tree(path: str, skip: Collection[str] = ()) -> tuple[int, str]:
    """(bytes, hash) of a file, or of a directory: "dir-" and the digest whose source key
    (`file-xxh3_128-...`) a directory with the same files gets as a source. `skip` names
    paths inside the directory (relative to it) to leave out, files or whole directories.

    An empty file is not opened: its hash is known (a stat where opening, reading and
    closing it cost three more calls, for each of the many tasks that make one)."""
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        if not st.st_size and stat.S_ISREG(st.st_mode):
            return 0, _EMPTY
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return _hash_fd(fd, st.st_size)
        finally:
            os.close(fd)
    entries = []
    total = 0
    for root, dirs, files in os.walk(path):
        if skip:
            dirs[:] = [d for d in dirs if os.path.relpath(os.path.join(root, d), path)
                       not in skip]
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            relative = os.path.relpath(full, path)
            if relative in skip:
                continue
            size, content = hash_file(full)
            total += size
            entries.append((relative, source_key(content)))
    return total, "dir-" + tree_digest(entries)
