"""The run-event record: every event of a run, once, as data (DESIGN.md §3b).

One run writes `.vinemake/runs/<run-id>/events.jsonl`, one JSON object per line,
`{"t": <unix time>, "ev": "<kind>", ...}`, and each rule's stderr tail under `stderr/`. The
terminal display, --trace, `vinemake log`, `vinemake history`, the report and the status page
all read these events; none of them measures anything itself. Kinds and fields are listed in
docs/observing.md; readers ignore kinds and fields they do not know, and a truncated last line
(a killed run).

Writes are buffered and flushed at least every second (emit or tick) and at close, so a run
that is killed leaves a readable prefix. emit() may be called from any thread (the manager's
loop emits worker, start and transfer events); listeners run on the emitting thread and must
only take note, never write to the terminal.
"""

from __future__ import annotations

import collections
import json
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator

import orjson

from vinemake.common.paths import tree_bytes
from vinemake.core.statedir import NAME, RUNS_BYTES, RUNS_KEPT, StateDir

__all__ = ["EventLog", "NO_EVENTS", "start_run", "read_events", "read_ends", "runs",
           "run_id_for", "STDERR_TAIL_BYTES"]

FLUSH_S = 1.0
ENDS_BYTES = 1 << 16  # read_ends: how much of each end of a record it reads
STDERR_TAIL_BYTES = 8192  # what is kept of each rule's stderr: its end
# Four events or so per rule, on the engine's and the manager's threads: orjson encodes one
# several times faster than the json module (see docs/performance.md).
_OPTIONS = orjson.OPT_APPEND_NEWLINE

Listener = Callable[[dict], None]


class EventLog:
    """Appends events to one run's events.jsonl (`path`), or keeps them in `kept` (path None).

    `stderr_dir` is where keep_stderr() writes each rule's tail; None keeps none.
    """

    def __init__(self, path: str | None = None, stderr_dir: str | None = None,
                 clock: Callable[[], float] = time.time, run_id: str = ""):
        self.path = path
        self.run_id = run_id
        self.stderr_dir = stderr_dir
        self.clock = clock
        self.started = clock()
        self.kept: list[dict] = []
        self._listeners: list[Listener] = []
        self._membership: list[dict] = []  # worker_join and worker_leave so far, for replay
        self._watchers: list[Listener] = []  # of worker_join and worker_leave only
        self._before: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        # One growing buffer, not a list of lines: orjson hands back each line in a bytes
        # object as large as its working buffer (1-4 KiB by version, for ~100 bytes of line),
        # and a second's lines held that way took several KiB a rule and scattered the heap.
        self._buffer = bytearray()
        self._flushed = clock()
        self._file = open(path, "ab") if path else None

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(event)` for every event emitted from now on."""
        self._listeners.append(listener)

    def watch_workers(self, listener: Listener) -> None:
        """Call `listener(event)` for each worker_join and worker_leave, first for those
        emitted already (a manager started early may have workers before its listener
        exists; one may come twice: handle it so), and for no other event: a run emits
        several events a task that such a listener would only look at."""
        with self._lock:
            past = list(self._membership)
            self._watchers.append(listener)
        for ev in past:
            listener(ev)

    def before_flush(self, write: Callable[[], None]) -> None:
        """Call `write()` before each flush writes what was emitted until then: the engine
        writes its journal first, so no event on disk is ahead of the journal."""
        self._before.append(write)

    def emit(self, kind: str, /, t: float | None = None, **fields) -> None:
        """Record one event of `kind` at time `t` (now, unless the event came with its own)."""
        self.emit_event({"t": self.clock() if t is None else t, "ev": kind, **fields})

    def emit_event(self, ev: dict) -> None:
        """emit() of an event made whole by the caller, `{"t": t or None, "ev": kind, ...}`
        (None: now): for the engine's several events a task, whose fields passed as keywords
        were copied twice, into the call's dict and into the event's."""
        if ev["t"] is None:
            ev["t"] = self.clock()  # (in its place: the first key, as emit() writes it)
        kind = ev["ev"]
        membership = kind == "worker_join" or kind == "worker_leave"
        if membership:
            with self._lock:
                self._membership.append(ev)
        if self._file is None:
            self.kept.append(ev)
        else:
            line = orjson.dumps(ev, default=str, option=_OPTIONS)
            with self._lock:
                self._buffer += line
            if ev["t"] - self._flushed >= FLUSH_S:
                self.flush()
        for listener in self._listeners:
            listener(ev)
        if membership:
            for listener in self._watchers:
                listener(ev)

    def tick(self) -> None:
        """Flush if the last flush is a second old (the engine calls this every pass)."""
        if self._buffer and self.clock() - self._flushed >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            self._flushed = self.clock()
            if not self._buffer or self._file is None:
                return
            data, self._buffer = self._buffer, bytearray()
            for write in self._before:
                try:
                    write()
                except OSError:
                    pass  # the journal's own thread meets the same error, and says so
            self._file.write(data)
            self._file.flush()

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def keep_stderr(self, rule_dir: str, text: str) -> None:
        """Keep the end of a rule's stderr as its last one (nothing is written for none)."""
        if self.stderr_dir is None or not text:
            return
        os.makedirs(self.stderr_dir, exist_ok=True)
        with open(os.path.join(self.stderr_dir, rule_dir), "w", encoding="utf-8") as f:
            f.write(text[-STDERR_TAIL_BYTES:])


class _NoEvents(EventLog):
    """Records nothing (a run without a state directory, most unit tests)."""

    def emit(self, kind: str, /, t: float | None = None, **fields) -> None:
        pass

    def emit_event(self, ev: dict) -> None:
        pass

    def subscribe(self, listener: Listener) -> None:
        pass

    def watch_workers(self, listener: Listener) -> None:
        pass

    def before_flush(self, write: Callable[[], None]) -> None:
        pass


NO_EVENTS = _NoEvents()


# What run_id_for and start_run name a run (a second run in the same second adds `-n`);
# anything else under runs/ is not a run of vinemake's.
RUN_ID = re.compile(r"\d{8}T\d{6}-\d+(-\d+)?")


def run_id_for(now: float, pid: int) -> str:
    """`YYYYmmddTHHMMSS-pid` of a UTC start time (runs() orders runs by start)."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"-{pid}"


def start_run(root: str, clock: Callable[[], float] = time.time) -> EventLog:
    """A new run's record under `root`'s state directory; the oldest beyond RUNS_KEPT go."""
    state = StateDir(root)
    base = run_id_for(clock(), os.getpid())
    run_id, n = base, 1
    while os.path.exists(state.run(run_id)):  # a second run in the same second, same process
        n += 1
        run_id = f"{base}-{n}"
    os.makedirs(state.run(run_id))
    log = EventLog(state.events(run_id), state.stderr(run_id), clock, run_id)
    for old in _beyond_keeping(state, runs(root)[:-1]):
        shutil.rmtree(state.run(old), ignore_errors=True)
    return log


def _beyond_keeping(state: StateDir, earlier: list[str], kept: int = RUNS_KEPT - 1,
                    budget: int = RUNS_BYTES) -> list[str]:
    """The runs before this one to remove: beyond the newest `kept`, and each older than
    those newer runs whose records hold `budget` bytes already."""
    total = 0
    for i in range(len(earlier) - 1, -1, -1):
        if len(earlier) - i > kept or total >= budget:
            return earlier[:i + 1]
        total += tree_bytes(state.run(earlier[i]))  # its record and stderr tails
    return []


def runs(root: str) -> list[str]:
    """The run-ids recorded under the workflow directory `root` (or its `.vinemake`), oldest
    first: the last is the newest."""
    state = _state(root)
    try:
        names = os.listdir(state.runs)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = [n for n in names if RUN_ID.fullmatch(n) and os.path.isfile(state.events(n))]
    per_second = collections.Counter(n[:15] for n in found)
    return sorted(found, key=lambda n: _start_order(state, n, per_second[n[:15]] > 1))


def _start_order(state: StateDir, run_id: str, shared: bool) -> tuple:
    """Where `run_id` sorts: by its second, then, within a second several runs began in,
    by its first event's time. Not by the pid as text: pids pass 999 -> 1000 and wrap to
    300, so a later run may have the pid that sorts first."""
    pid, _, n = run_id[16:].partition("-")
    return run_id[:15], _began(state.events(run_id)) if shared else 0.0, int(pid), int(n or 1)


def _began(path: str) -> float:
    """The time of a record's first event; a run whose first event is not written yet
    began after every run that has one."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            ev = _event(f.readline())
    except OSError:
        ev = None
    return math.inf if ev is None else ev["t"]


def _a_time(t) -> bool:
    """Every reader does arithmetic on `t`: an event without a real one cannot be placed."""
    return isinstance(t, (int, float)) and not isinstance(t, bool)


def _state(root: str) -> StateDir:
    root = os.path.abspath(root)
    if os.path.basename(root) == NAME:
        root = os.path.dirname(root)  # given the state directory itself
    return StateDir(root)


def read_events(path: str, wanted: Callable[[str], bool] | None = None) -> list[dict]:
    """Every event in an events.jsonl; a line that is not a whole JSON object (the last one
    of a run that was killed mid-write), or whose kind is not a string or time not a number,
    is skipped. `wanted(line)`, if given, picks the lines worth parsing (a reader looking for
    one rule in a record of millions)."""
    return list(iter_events(path, wanted))


def iter_events(path: str, wanted: Callable[[str], bool] | None = None) -> Iterator[dict]:
    """read_events() one event at a time: a reader that keeps only what it needs of each
    (a report of a run of millions of events) never holds them all."""
    try:
        f = open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    with f:
        for line in f:
            if wanted is not None and not wanted(line):
                continue
            ev = _event(line)
            if ev is not None:
                yield ev


def read_ends(path: str) -> list[dict]:
    """The events on the first line and in the last ENDS_BYTES of an events.jsonl: the run's
    start, and its end or the last thing it did, whatever the size of the record (a run of a
    million rules records four million events). The whole record when it is that small."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return []
    with f:
        size = os.fstat(f.fileno()).st_size
        if size <= 2 * ENDS_BYTES:
            lines = f.read().splitlines()
        else:
            lines = [f.readline()]
            f.seek(size - ENDS_BYTES)
            lines += f.read().splitlines()[1:]  # the first is the end of a line cut
    return [ev for ev in map(_event, lines) if ev is not None]


def _event(line: str) -> dict | None:
    """The event on one line, or None for a line that is not one (see read_events)."""
    try:  # orjson wrote it and reads it several times faster; json what orjson refuses
        ev = orjson.loads(line)  # (NaN, in a hand-edited record)
    except ValueError:
        try:
            ev = json.loads(line)
        except ValueError:
            return None
    if isinstance(ev, dict) and isinstance(ev.get("ev"), str) and _a_time(ev.get("t")):
        return ev
    return None
