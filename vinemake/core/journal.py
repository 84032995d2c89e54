"""The journal: an append-only log in `.vinemake/` of every state change, keyed by rule key.

It is the truth for resume after a crash, for `--clean` (what this workflow created) and for
`--explain` (what a rule was built from last time). Each line is one JSON event:

    started    rule began running
    done       rule finished (ran or restored): its parts, inputs and outputs with their
               keys, the (size, mtime_ns) each output had when it was put in place and its
               content hash, and the content hash of each made input it read (`seen`)
    restat     an output's stat moved but its bytes did not (touched): its new stat
    failed     rule's command failed
    withdrawn  rule was submitted, then taken back before it started (a failure without -k)
    collected  an intermediate was deleted by garbage collection (it was made; it is gone)
    removed    --clean deleted a file this workflow made

Appends are buffered: written to the OS every quarter second (a kill -9 loses at most that)
and fsynced at start, at the end and every few seconds (a power cut loses at most that), never
per task.
A crash can tear the last line; reading skips any line that does not parse. Rule *keys*, not
positions, identify rules, so editing or reordering the Vinefile never attaches old state to
the wrong rule. When the log holds far more lines than live records it is rewritten compactly.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import field
from typing import NamedTuple

from vinemake.common.compactjson import compact
from vinemake.common.packed import pack, unpack
from vinemake.common.records import dataclass

__all__ = ["workflow_name", "RuleRecord", "FileRecord", "JournalState", "replay", "Journal",
           "SYNC_INTERVAL_S", "part_map", "PartsText"]

SYNC_INTERVAL_S = 3.0  # fsync: what survives a power cut
WRITE_INTERVAL_S = 0.25  # write to the OS: what survives kill -9


def _line(ev: dict) -> str:
    """One event as its JSON line (without the newline).

    Written by orjson where it can (two lines a rule, on the engine's thread): compactjson.
    """
    return compact(ev)[0].decode()


def _line_bytes(ev: dict) -> bytes:
    """_line() as the file holds it: compactjson's bytes are UTF-8 (orjson's) or ASCII (the
    json module's escapes), so they need no decoding here and no encoding at the write."""
    return compact(ev)[0]


def workflow_name(path: str, root: str) -> str:
    """How records name the workflow file that made them: relative to its directory."""
    return os.path.relpath(path, root)


_STAT = struct.Struct("<qq")  # size, mtime_ns
_DIGEST = 17  # a packed key or hash (common/packed.py)


class FileRecord:
    """A file this workflow put in place: its key, its stat when placed, and its rule.

    Immutable. Held as one bytes object when its key, rule and content hash pack (they do
    when vinemake made them): stat, key, rule, hash, about 100 bytes in all, where objects of
    each were 300 (a million files in a run, as many again in the journal replayed).
    """

    __slots__ = ("_held", "collected", "workflow")

    def __init__(self, key: str, size: int, mtime_ns: int, rule: str, collected: bool = False,
                 content: str = "", workflow: str = ""):
        k, r, c = pack(key), pack(rule), pack(content) if content else b""
        if type(k) is bytes and type(r) is bytes and type(c) is bytes:
            try:
                held: bytes | tuple = _STAT.pack(size, mtime_ns) + k + r + c
            except struct.error:  # a stat out of int64's range: kept as it is
                held = (key, size, mtime_ns, rule, content)
        else:
            held = (key, size, mtime_ns, rule, content)
        object.__setattr__(self, "_held", held)
        object.__setattr__(self, "collected", collected)
        object.__setattr__(self, "workflow", workflow)

    def __setattr__(self, name, value):
        raise AttributeError(f"FileRecord is immutable: {name}")

    def _fields(self) -> tuple:
        """(key, size, mtime_ns, rule, content)."""
        held = self._held
        if type(held) is tuple:
            return held
        size, mtime_ns = _STAT.unpack_from(held)
        digests = held[16:]
        return (unpack(digests[:_DIGEST]), size, mtime_ns, unpack(digests[_DIGEST:2 * _DIGEST]),
                unpack(digests[2 * _DIGEST:]) if len(digests) > 2 * _DIGEST else "")

    @property
    def key(self) -> str:
        held = self._held
        return held[0] if type(held) is tuple else unpack(held[16:16 + _DIGEST])

    @property
    def size(self) -> int:
        held = self._held
        return held[1] if type(held) is tuple else _STAT.unpack_from(held)[0]

    @property
    def mtime_ns(self) -> int:
        held = self._held
        return held[2] if type(held) is tuple else _STAT.unpack_from(held)[1]

    def stat_if(self, key: str) -> tuple[int, int] | None:
        """(size, mtime_ns) if the file's key is `key`, else None (one look at the packed
        record where `key`, size and mtime_ns would unpack it three times)."""
        held = self._held
        if type(held) is tuple:
            return (held[1], held[2]) if held[0] == key else None
        packed = pack(key)
        if type(packed) is not bytes or held[16:16 + _DIGEST] != packed:
            return None
        return _STAT.unpack_from(held)

    @property
    def rule(self) -> str:
        return self._fields()[3]

    @property
    def content(self) -> str:
        return self._fields()[4]

    def replaced(self, **changes) -> FileRecord:
        """A copy with `changes` (of the constructor's arguments)."""
        key, size, mtime_ns, rule, content = self._fields()
        now = {"key": key, "size": size, "mtime_ns": mtime_ns, "rule": rule,
               "collected": self.collected, "content": content, "workflow": self.workflow}
        now.update(changes)
        return FileRecord(**now)

    def _all(self) -> tuple:
        return (*self._fields(), self.collected, self.workflow)

    def __eq__(self, other) -> bool:
        return isinstance(other, FileRecord) and self._all() == other._all()

    def __hash__(self) -> int:
        return hash(self._all())

    def __repr__(self) -> str:
        key, size, mtime_ns, rule, content = self._fields()
        return (f"FileRecord(key={key!r}, size={size}, mtime_ns={mtime_ns}, rule={rule!r}, "
                f"collected={self.collected}, content={content!r}, workflow={self.workflow!r})")


@dataclass(frozen=True, slots=True)
class RuleRecord:
    """A rule's last completion: how (`ran` or `restored`), parts and inputs for --explain."""

    key: str
    name: str
    how: str = "ran"
    parts: object = ()  # PartsText as read back, or (name, digest) pairs: see part_map()
    inputs: tuple[tuple[str, str], ...] = ()
    outputs: tuple[str, ...] = ()
    seen: tuple[tuple[str, str], ...] = ()  # (made input, its content hash when this ran)
    workflow: str = ""  # the workflow file it belongs to ("" in journals older than that)


class PartsText(NamedTuple):
    """A record's parts as read back, `name=digest ...` cut after its first part: the rest
    (environment, resources, library, kind) is one string shared by every record that has
    it, so a replayed million records hold the command's digest each and little more."""

    first: str | bytes  # packed when it can be (`command=` and a digest: common/packed.py)
    rest: str

    def text(self) -> str:
        first = unpack(self.first)
        return f"{first} {self.rest}" if self.rest else first


def part_map(record: RuleRecord) -> dict[str, str]:
    """A record's parts as {name: digest}, whichever form they were written in."""
    parts = record.parts
    if isinstance(parts, PartsText):
        parts = parts.text()
    if isinstance(parts, str):
        return dict(p.split("=", 1) for p in parts.split())
    return dict(parts)  # type: ignore[arg-type]


def _written(parts) -> object:
    """Parts as the journal writes them: one string (or pairs, from old journals)."""
    return parts.text() if isinstance(parts, PartsText) else parts


@dataclass
class JournalState:
    """What replaying the journal says. `by_name` finds the last record of a targetless rule."""

    done: dict[str, RuleRecord] = field(default_factory=dict)
    files: dict[str, FileRecord] = field(default_factory=dict)
    by_name: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    incomplete: set[str] = field(default_factory=set)
    lines: int = 0
    # One object for each of the few values many records repeat (how, workflow, the parts
    # after the command's), instead of a copy per record parsed.
    shared: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def previous(self, name: str, first_output: str | None) -> RuleRecord | None:
        """The last completion of the rule that makes `first_output` (or is called `name`)."""
        if first_output is not None:
            rec = self.files.get(first_output)
            return self.done.get(rec.rule) if rec else None
        key = self.by_name.get(name)
        return self.done.get(key) if key else None


def replay(lines: Iterable[str]) -> JournalState:
    """The state after applying every well-formed event line, in order."""
    state = JournalState()
    for line in lines:
        state.lines += 1
        try:
            ev = json.loads(line)
            _apply(state, ev)
        except (ValueError, KeyError, TypeError, IndexError):
            continue  # a torn last line after kill -9, or damage: skip it
    return state


def _apply(state: JournalState, ev: dict) -> None:
    kind, key = ev["ev"], ev.get("rule")
    if kind == "started":
        state.incomplete.add(key)
    elif kind == "done":
        outputs = ev.get("outputs", ())
        shared = state.shared.setdefault
        wf = shared(ev.get("wf", ""), ev.get("wf", ""))
        parts = ev.get("parts", ())
        if isinstance(parts, str) and parts:
            first, _, rest = parts.partition(" ")
            parts = PartsText(pack(first), shared(rest, rest))
        inputs = ev.get("inputs")
        # parts and inputs are only read for the reason of a stale rule.
        state.done[key] = RuleRecord(key, ev["name"], shared(ev.get("how", "ran"),
                                                             ev.get("how", "ran")),
                                     parts, tuple(map(tuple, inputs)) if inputs else (),
                                     tuple(o[0] for o in outputs),
                                     tuple(map(tuple, ev.get("seen", ()))), wf)
        _apply_files(state, key, ev["name"], outputs, wf)
    elif kind == "failed":
        state.failed[key] = ev["name"]
        state.incomplete.discard(key)
    elif kind == "withdrawn":  # submitted, then taken back before it started
        state.incomplete.discard(key)
    elif kind == "collected":
        rec = state.files.get(ev["path"])
        if rec is not None:
            state.files[ev["path"]] = rec.replaced(collected=True)
    elif kind == "restat":
        rec = state.files.get(ev["path"])
        if rec is not None:
            state.files[ev["path"]] = rec.replaced(size=int(ev["size"]),
                                                   mtime_ns=int(ev["mtime"]))
    elif kind == "removed":
        state.files.pop(ev["path"], None)


def _apply_files(state: JournalState, key: str, name: str, outputs, wf: str) -> None:
    """What a `done` says of its files (and that the rule is neither running nor failed)."""
    for out in outputs:
        state.files[out[0]] = FileRecord(out[1], int(out[2]), int(out[3]), key, False,
                                         out[4] if len(out) > 4 else "", wf)
    if not outputs:
        state.by_name[name] = key
    state.incomplete.discard(key)
    state.failed.pop(key, None)


def _events(state: JournalState) -> Iterable[dict]:
    """Events that rebuild `state` alone: what compaction writes."""
    live = {r.rule for r in state.files.values()} | set(state.by_name.values())
    for key in live:
        rec = state.done.get(key)
        if rec is None:
            continue
        outs = [[p, state.files[p].key, state.files[p].size, state.files[p].mtime_ns,
                 state.files[p].content]
                for p in rec.outputs if p in state.files and state.files[p].rule == key]
        yield {"ev": "done", "rule": key, "name": rec.name, "how": rec.how,
               "parts": _written(rec.parts), "inputs": rec.inputs, "outputs": outs,
               "seen": rec.seen, "wf": rec.workflow}
    for path, frec in state.files.items():
        if frec.collected:
            yield {"ev": "collected", "path": path}
    for key, name in state.failed.items():
        yield {"ev": "failed", "rule": key, "name": name}
    for key in state.incomplete:
        yield {"ev": "started", "rule": key, "name": ""}


class Journal:
    """The journal file of one workflow: read once at open, then appended to."""

    def __init__(self, path: str, clock: Callable[[], float] = time.monotonic,
                 workflow: str = ""):
        self.path = path
        self.workflow = workflow  # written into each `done`: two Vinefiles may share a directory
        self.clock = clock
        # One growing buffer of whole lines, not a list of them: orjson hands back each line
        # in a bytes object as large as its working buffer (1-4 KiB by version, for ~100
        # bytes of line), held until the write (core/events.py buffers the same way).
        self.buffer = bytearray()
        # record() runs on the engine's thread; write() also on whichever thread flushes the
        # run's record, which must not get ahead of the journal.
        self._lock = threading.Lock()
        self.file = None
        self.last_sync = self.last_write = 0.0
        self._light = False  # the state no longer rebuilds the file (done(), keep_records())
        self._rests: dict[tuple, str] = {}  # _parts_text: all parts but the first, as text
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                self.state = replay(f)
        except FileNotFoundError:
            self.state = JournalState()

    def open(self) -> None:
        """Start appending; compact first if the log is mostly dead lines."""
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        st = self.state
        live = len({r.rule for r in st.files.values()} | set(st.by_name.values()))
        # After a run the log holds a `started` and a `done` line per rule: rewriting it to
        # one line per rule halves what every later run reads.
        if not self._light and st.lines > 1000 and \
                st.lines > 1.5 * live + sum(r.collected for r in st.files.values()):
            self._compact()
        self.file = open(self.path, "ab", buffering=0)
        self.sync()

    def _compact(self) -> None:
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
                for ev in _events(self.state):
                    f.write(_line(ev) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            os.unlink(tmp)  # the old journal stays, whole
            raise
        os.replace(tmp, self.path)

    def keep_records(self, keys: Iterable[str]) -> None:
        """Hold the rule records of `keys` only, for the rest of this run: the engine reads
        no other once its run has started (a replayed record is most of a kilobyte); later
        runs replay the file, which keeps them all."""
        done = self.state.done
        self.state.done = {k: done[k] for k in keys if k in done}
        self._light = True  # the state no longer rebuilds the file: never compacted from it

    def record(self, ev: dict) -> None:
        """Apply `ev` to the state now and buffer it for the file."""
        _apply(self.state, ev)
        self._append(_line_bytes(ev))

    def _append(self, line: bytes) -> None:
        with self._lock:
            self.buffer += line
            self.buffer += b"\n"

    def started(self, key: str, name: str) -> None:
        self.state.incomplete.add(key)  # (what record() would apply, without its dispatch)
        self._append(_line_bytes({"ev": "started", "rule": key, "name": name}))

    def done(self, key: str, name: str, how: str, parts, inputs, outputs, measured=(),
             seen=()) -> None:
        """`outputs` are (path, key, size, mtime_ns, content hash) of each file put in place;
        `seen` (path, content hash) of each made input the rule read.

        `parts` are written as one string, `name=digest ...`: a third cheaper to read back
        than a list of pairs, and every later run reads every line.
        """
        # The state keeps no rule record made now, only its files: the record says why a
        # rule is stale, and what a reader read, to the plans of later runs, which replay
        # the file; this run reads only the files' keys, stats and hashes (the record was
        # a third of a kilobyte a rule, for the rest of the run).
        _apply_files(self.state, key, name, outputs, self.workflow)
        self._light = True
        self._append(_line_bytes({
            "ev": "done", "rule": key, "name": name, "how": how,
            "parts": parts if isinstance(parts, str) else self._parts_text(parts),
            # (tuples as they come: JSON arrays either way, the same bytes)
            "inputs": inputs, "outputs": outputs, "measured": measured, "seen": seen,
            "wf": self.workflow}))

    def _parts_text(self, parts) -> str:
        """(name, digest) pairs as `name=digest ...`. Rules share all but their command's
        (the first): the rest is written once per shape, not once per rule."""
        if not parts:
            return ""
        rest = parts[1:]
        try:
            text = self._rests.get(rest)
        except TypeError:  # lists, not tuples: made each time
            text = "".join([f" {n}={d}" for n, d in rest])
        if text is None:
            if len(self._rests) >= 256:
                self._rests.clear()
            text = self._rests[rest] = "".join([f" {n}={d}" for n, d in rest])
        name, value = parts[0]
        return f"{name}={value}{text}"

    def failed(self, key: str, name: str, status: str, exit_code: int | None) -> None:
        self.record({"ev": "failed", "rule": key, "name": name, "status": status,
                     "exit": exit_code})

    def withdrawn(self, key: str, name: str) -> None:
        self.record({"ev": "withdrawn", "rule": key, "name": name})

    def collected(self, path: str) -> None:
        self.record({"ev": "collected", "path": path})

    def restat(self, path: str, size: int, mtime_ns: int) -> None:
        """`path` was touched: same bytes, new stat."""
        self.record({"ev": "restat", "path": path, "size": size, "mtime": mtime_ns})

    def removed(self, path: str) -> None:
        self.record({"ev": "removed", "path": path})

    def tick(self) -> None:
        """Write or sync what is due: the engine calls this on every pass of its loop."""
        if not self.buffer or self.file is None:
            return
        now = self.clock()
        if now - self.last_sync >= SYNC_INTERVAL_S:
            self.sync()
        elif now - self.last_write >= WRITE_INTERVAL_S:
            self.write()
            self.last_write = now

    def write(self) -> None:
        """Append what is buffered to the file (no fsync); from any thread."""
        with self._lock:
            if self.buffer and self.file is not None:
                self._write()

    def _write(self) -> None:
        """Append the buffer whole, or not at all: a write that fails (a full disk) is cut
        off again, so no torn line is followed by more lines, and the error names the file.
        The caller holds the lock."""
        data = bytes(self.buffer)  # a copy: the buffer cannot be cleared while it is viewed
        fd = self.file.fileno()
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError as e:
            os.ftruncate(fd, size)
            raise OSError(e.errno, e.strerror, self.path) from None
        self.buffer.clear()

    def sync(self) -> None:
        """Write the buffer and fsync."""
        if self.file is None:
            return
        self.write()
        try:
            os.fsync(self.file.fileno())
        except OSError as e:
            raise OSError(e.errno, e.strerror, self.path) from None
        self.last_sync = self.last_write = self.clock()

    def close(self) -> None:
        try:
            self.sync()
        finally:
            if self.file is not None:
                self.file.close()
                self.file = None
