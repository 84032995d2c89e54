"""Content keys of source files, memoised by stat so an unchanged file is never re-read.

The memo lives in `.vinemake/filestate`: a header, then one line per file,
`size mtime_ns inode ctime_ns key path`, rewritten atomically (temp + rename) after a run that
learned something new. A file whose four stat fields all match its line keeps its key without
being opened; `touch` changes mtime, so the file is re-hashed, finds the same content and keeps
the same key. ctime catches what mtime alone misses: a rewrite that restores the old mtime
(`cp -p` over the file, `touch -d`). Each path is stat'ed at most once per FileState (one per
run).

The run itself moves ctime: the worker on this host hard-links inputs into each task's sandbox,
and a link (and its removal) changes the file's ctime. So after a run, `refresh()` re-stats
every source and records the new ctime of each whose size, mtime and inode did not move;
without it every source would be re-read on every run. The one thing this leaves unseen is an
mtime-preserving rewrite *during* a run, which make and ninja never see at all.

A file hashed within its timestamps' granularity of being changed is "racy" (git's word):
another change in the same tick would leave size, mtime and ctime as recorded. A kernel
stamps with a clock that moves a tick (1-10 ms) at a time; some file systems keep whole
seconds (ext3, ext4 with 128-byte inodes; FAT two). Such a file's key is kept for this run
only, not in the memo, and no up-to-date snapshot is written: the next run hashes it again.
"""

from __future__ import annotations

import functools
import os
import re
import stat as statmod
import time
from collections.abc import Iterable, Mapping

import xxhash

from vinemake.common.errors import InputError
from vinemake.common.hashing import hash_file, source_key, tree_key

__all__ = ["output_stat", "stat_or_none", "FileState", "racy", "snapshot_digest", "write_snapshot",
           "snapshot_matches"]

def output_stat(path: str, st: os.stat_result) -> tuple[int, int]:
    """The (size, mtime_ns) the journal keeps for an output, given its stat.

    A file's own. A directory's stat does not move when a file inside is edited in place, so
    a directory output is judged by what is inside: the newest mtime of it and everything in
    it, and its bytes as a negative size, -(1 + total), which no plain stat can match (the
    up-to-date snapshot stats paths plainly, so a directory output never takes its fast path).
    """
    if not statmod.S_ISDIR(st.st_mode):
        return st.st_size, st.st_mtime_ns
    total, newest = 0, st.st_mtime_ns
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                inner = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            newest = max(newest, inner.st_mtime_ns)
            if not statmod.S_ISDIR(inner.st_mode):
                total += inner.st_size
    return -1 - total, newest


def stat_or_none(path: str) -> os.stat_result | None:
    """stat of `path` (following links); None if there is nothing there."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


Signature = tuple[int, int, int, int]  # size, mtime_ns, inode, ctime_ns
MEMO_HEADER = "vinemake-filestate 2\n"


def signature(st: os.stat_result) -> Signature:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


RACY_NS = 20_000_000  # a coarse kernel clock's tick (HZ=100) and its lag behind the real time
RACY_SECONDS_NS = 3_000_000_000  # whole-second stamps: two seconds for FAT, and a margin


def racy(mtime_ns: int, now_ns: int) -> bool:
    """Could a change made after `now_ns` still be stamped `mtime_ns`?"""
    whole_seconds = mtime_ns % 1_000_000_000 == 0
    return mtime_ns > now_ns - (RACY_SECONDS_NS if whole_seconds else RACY_NS)


class FileState:
    """Keys of source files and directories, memoised across runs in `memo_path`."""

    def __init__(self, memo_path: str | None):
        self.memo_path = memo_path
        self.memo: dict[str, tuple[Signature, str]] = _load(memo_path) if memo_path else {}
        self.stats: dict[str, os.stat_result | None] = {}
        self.reads = 0  # files actually opened and hashed this run
        self.dirty = False
        self.racy: set[str] = set()  # hashed too soon after a change to be memoised (racy())

    def stat(self, path: str) -> os.stat_result | None:
        """lstat-free stat of `path` (following links), once per run; None if absent."""
        if path in self.stats:
            return self.stats[path]
        st = self.stats[path] = stat_or_none(path)
        return st

    def key(self, path: str) -> str:
        """The content key of a file, or the tree key of a directory. InputError if absent."""
        st = self.stat(path)
        if st is None:
            raise InputError(f"source '{path}' does not exist")
        if statmod.S_ISDIR(st.st_mode):
            return self._dir_key(path)
        sig = signature(st)
        known = self.memo.get(path)
        if known is not None and known[0] == sig:
            return known[1]
        self.reads += 1
        key = source_key(hash_file(path)[1])
        self.memo[path] = (sig, key)
        self.dirty = True
        if racy(st.st_mtime_ns, time.time_ns()):
            self.racy.add(path)
        return key

    def _dir_key(self, path: str) -> str:
        entries = []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                entries.append((os.path.relpath(full, path), self.key(full)))
        return tree_key(entries)

    def refresh(self) -> None:
        """After a run: take the ctime its own links gave each file whose content stat held.

        A file whose size, mtime or inode moved keeps its old signature (and stat), so the
        next run re-hashes it.
        """
        for path, st in self.stats.items():
            known = self.memo.get(path)
            if st is None or known is None or known[0] != signature(st):
                continue
            try:
                now = os.stat(path)
            except OSError:
                continue
            if now.st_ctime_ns != st.st_ctime_ns and signature(now)[:3] == known[0][:3]:
                self.memo[path] = (signature(now), known[1])
                self.stats[path] = now
                self.dirty = True

    def save(self) -> None:
        """Write the memo back if anything changed (atomic: temp + rename)."""
        if not self.memo_path or not self.dirty:
            return
        os.makedirs(os.path.dirname(self.memo_path) or ".", exist_ok=True)
        tmp = f"{self.memo_path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(MEMO_HEADER)
            for path, ((size, mtime, ino, ctime), key) in self.memo.items():
                if path not in self.racy:
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
        if f.readline() != MEMO_HEADER:
            return memo  # an older format or a damaged file: every source is re-hashed once
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


# --- the up-to-date snapshot -----------------------------------------------------------------
#
# Why: a no-op rerun of a 100k-rule workflow spends seconds parsing, keying and replaying the
# journal only to conclude that nothing changed, where `make -q` takes a fraction of a second.
# After a run that finished cleanly, the engine writes the stat of every file that decided it
# (sources as stat'ed *before* the run, with the ctime the run's own links gave them; outputs
# as placed) under a digest of the Vinefile's bytes, the environment variables the file could
# read (every variable whose name appears in it as a word: a superset of what `$NAME` and
# `export NAME` can reach, and blind to the COLUMNS or OLDPWD that change between shells) and
# the options that shape the run.
# The next run checks the digest and re-stats each file; if everything matches, nothing can
# have changed and it stops before parsing. Any difference, any failure, any directory source
# (whose nested files a stat of the directory does not cover) means: take the full path.


_WORD = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")


@functools.lru_cache(maxsize=2)
def _words(vinefile: bytes) -> frozenset[str]:
    # A run takes the digest before parsing and again before and after planning: the same
    # bytes each time, and finding the words of a large Vinefile is worth doing once.
    return frozenset(w.decode() for w in _WORD.findall(vinefile))


_WORD_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_DIGITS = frozenset(b"0123456789")
_FEW = 1000  # occurrences of a name worth checking one by one
# (Vinefile digest, name) -> is it one of the Vinefile's words: a run asks three times
_MENTIONED: dict[tuple[str, str], bool] = {}


def _mentions(vinefile: bytes, name: str) -> bool:
    """Is `name` one of the Vinefile's words (`_WORD.findall`)? Asked per variable of the
    environment: finding every word of a million-rule Vinefile costs seconds and hundreds
    of MB, and most names never occur in it at all."""
    key = name.encode("utf-8", "surrogateescape")
    if not _WORD.fullmatch(key):
        return False
    i = vinefile.find(key)
    seen = 0
    while i >= 0:
        end = i + len(key)
        if end == len(vinefile) or vinefile[end] not in _WORD_BYTES:
            # findall's words skip the digits that open a run of word characters
            start = i
            while start > 0 and vinefile[start - 1] in _DIGITS:
                start -= 1
            if start == 0 or vinefile[start - 1] not in _WORD_BYTES:
                return True
        seen += 1
        if seen > _FEW:
            return name in _words(vinefile)
        i = vinefile.find(key, i + 1)
    return False


def snapshot_digest(vinefile: bytes, environ: Mapping[str, str], options: str) -> str:
    text = xxhash.xxh3_128_hexdigest(vinefile)
    if len(_MENTIONED) > 4096:
        _MENTIONED.clear()
    read = []
    for k, v in environ.items():
        mentioned = _MENTIONED.get((text, k))
        if mentioned is None:
            mentioned = _MENTIONED[(text, k)] = _mentions(vinefile, k)
        if mentioned:
            read.append((k, v))
    read.sort()
    h = xxhash.xxh3_128()
    for part in (vinefile, repr(read).encode("utf-8", "surrogateescape"), options.encode()):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def write_snapshot(path: str, digest: str, sources: Iterable[tuple[str, os.stat_result]],
                   outputs: Iterable[tuple[str, int, int]], rules: int = 0) -> None:
    """Record `digest`, each source's stat and each output's (size, mtime_ns), atomically.

    Paths are absolute. Lines: `s size mtime_ns inode ctime_ns path`, `o size mtime_ns path`.
    """
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(f"vinemake-snapshot 2 {digest} {rules}\n")
        f.writelines(f"s {st.st_size} {st.st_mtime_ns} {st.st_ino} {st.st_ctime_ns} {p}\n"
                     for p, st in sources)
        f.writelines(f"o {size} {mtime} {p}\n" for p, size, mtime in outputs)
    os.replace(tmp, path)


def snapshot_matches(path: str, digest: str) -> int | None:
    """The number of rules recorded if every file still has its stat under `digest`, else None."""
    try:
        f = open(path, encoding="utf-8", errors="surrogateescape")
    except OSError:
        return None
    stat = os.stat
    with f:
        head = f.readline().split()
        if len(head) != 4 or head[:3] != ["vinemake-snapshot", "2", digest]:
            return None
        for line in f:
            source = line.startswith("s ")
            fields = line[:-1].split(" ", 5 if source else 3)
            try:
                st = stat(fields[-1])
                if source:
                    same = (st.st_size == int(fields[1]) and st.st_mtime_ns == int(fields[2])
                            and st.st_ino == int(fields[3])
                            and st.st_ctime_ns == int(fields[4]))
                else:
                    same = st.st_size == int(fields[1]) and st.st_mtime_ns == int(fields[2])
            except (OSError, ValueError, IndexError):
                return None
            if not same:
                return None
    return int(head[3])
