"""What the user sees while a workflow runs, read from the run's events. The engine never prints.

Reporters are listeners of the run's record (core/events.py): `event()` takes note of each
event on whatever thread emitted it (the manager's loop emits starts) and writes nothing;
`tick()`, on the engine's thread, writes what is due. The manager's and the backends' news
(face/notices.py) comes through `note()` on the engine's thread, so nothing writes across the
live line.

`TtyReporter` keeps one live status line (done, running, waiting, failed, workers, transfers
in flight, ETA) that never exceeds the terminal's width; `PlainReporter` writes timestamped
lines for logs and pipes: each rule's start (when its command really began, and on which
worker, unless -T local's only one) and its end with its wall time. Both print a failed rule's
command, where it ran, how it ended, the end of its stderr and its INFO file. `FakeReporter`
records what it was told, for tests.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Protocol, TextIO

__all__ = ["Reporter", "FakeReporter", "PlainReporter", "TtyReporter", "make_reporter",
           "summary_line", "nothing_to_do_line", "failure_text"]


class Reporter(Protocol):
    def event(self, ev: dict) -> None: ...  # any thread; writes nothing
    def note(self, text: str) -> None: ...  # news from the manager: a worker joined, left
    def tick(self) -> None: ...  # the engine's thread: write what is due
    def summary(self, outcome) -> None: ...


def summary_line(outcome) -> str:
    """`vinemake: ran 3, restored 1, up to date 5, failed 1 (x.out) in 2.1 s`."""
    parts = [f"ran {len(outcome.ran)}", f"restored {len(outcome.restored)}",
             f"up to date {outcome.skipped}"]
    if outcome.failed:
        parts.append(f"failed {len(outcome.failed)} ({', '.join(outcome.failed)})")
    if outcome.not_run:
        parts.append(f"not run {outcome.not_run}")
    text = f"vinemake: {', '.join(parts)} in {outcome.wall_time_s:.1f} s"
    if outcome.stopped:
        text += " (interrupted)"
    if outcome.uncached:
        text += f"; {_n(outcome.uncached, 'output')} could not be kept in the cache store"
    if not outcome.ran and not outcome.restored and not outcome.failed and not outcome.stopped:
        text = nothing_to_do_line(outcome.skipped)
    return text


def nothing_to_do_line(rules: int) -> str:
    """`vinemake: nothing to do, 5 rules up to date`: the summary of a run that ran nothing."""
    return f"vinemake: nothing to do, {_n(rules, 'rule')} up to date"


def failure_text(label: str, ev: dict, command: str | None) -> list[str]:
    """The lines that explain a failed rule: as make, ninja and Snakemake show it."""
    lines = [f"FAILED  {label}: {ev.get('message') or ev.get('status')}"]
    if command:
        lines.append(f"  command: {command}")
    where = _where(ev)
    if where:
        lines.append(f"  ran on:  {where}")
    stderr = (ev.get("stderr") or "").rstrip("\n")
    if stderr:
        lines.append("  stderr (last lines):")
        lines += [f"    {line}" for line in stderr.splitlines()]
    if ev.get("info"):
        lines.append(f"  see {_relative(ev['info'])}")
    return lines


def _where(ev: dict) -> str:
    worker, host = ev.get("worker"), ev.get("host")
    if not worker:
        return ""
    if worker == "local" and not host:
        return "this host"
    return f"worker {worker} ({host})" if host and host != worker else f"worker {worker}"


def _relative(path: str) -> str:
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


class _Run:
    """What both reporters know of the run so far, from its events (thread-safe enough: the
    manager's loop only adds starts and workers, each one assignment)."""

    def __init__(self):
        # By rule id, the label and command of its plan event (strings the rules hold
        # anyway), not the event, which is a kilobyte a rule: a gigabyte at a million rules.
        self._labels: list[str | None] = []
        self._commands: list[str | None] = []
        self._restores: set[int] = set()  # planned to be restored
        self.actions = {"run": 0, "restore": 0, "skip": 0}
        self.counted = False  # the actions came counted (a `planned` event)
        self.total = self.done = self.failed = 0
        self.running: dict[int, str] = {}  # rule -> worker, between start and end
        self.workers: set[str] = set()  # connected now
        self.workers_seen: set[str] = set()
        self.headed = False

    def _planned(self, rid) -> bool:
        return isinstance(rid, int) and 0 <= rid < len(self._labels) and \
            self._labels[rid] is not None

    def label(self, rid) -> str:
        return self._labels[rid] if self._planned(rid) else f"rule {rid}"

    def command(self, rid) -> str | None:
        return self._commands[rid] if self._planned(rid) else None

    def take(self, ev: dict) -> None:
        kind = ev["ev"]
        if kind == "plan":
            rid = ev["rule"]
            if isinstance(rid, int) and rid >= 0:
                if rid >= len(self._labels):
                    grow = rid + 1 - len(self._labels)
                    self._labels += [None] * grow
                    self._commands += [None] * grow
                self._labels[rid] = ev.get("label", "")
                self._commands[rid] = ev.get("command")
                if ev.get("action") == "restore":
                    self._restores.add(rid)
            if not self.counted:  # a record without its plan's counts: count the plans
                self.actions[ev.get("action", "run")] = self.actions.get(ev.get("action"), 0) + 1
                if ev.get("action") == "run":
                    self.total += 1
        elif kind == "planned":
            self.counted = True
            self.actions = {a: _count(ev.get(a)) for a in ("run", "restore", "skip")}
            self.total = self.actions["run"]
        elif kind == "submit":
            if ev["rule"] in self._restores and ev.get("attempt") == 1:
                self._restores.discard(ev["rule"])  # (once: a held rule is submitted again)
                self.total += 1  # its outputs were not in the cache after all: it runs
        elif kind == "start":
            self.running[ev["rule"]] = ev.get("worker", "")
        elif kind == "end":
            self.running.pop(ev["rule"], None)
            if ev.get("retrying") or "retrying" not in ev:
                return  # another attempt follows
            status = ev.get("status")
            if status == "ok":
                self.done += 1
            elif status == "withdrawn":
                self.total -= 1  # it will not run: neither running nor waiting
            else:
                self.failed += 1
        elif kind == "worker_join":
            self.workers.add(ev.get("worker", ""))
            self.workers_seen.add(ev.get("worker", ""))
        elif kind == "worker_leave":
            self.workers.discard(ev.get("worker", ""))

    def heading(self) -> str | None:
        """`3 rules to run, 1 to restore, 5 up to date`: the plan, counted as the summary."""
        run, restore = self.actions.get("run", 0), self.actions.get("restore", 0)
        if not (run or restore):
            return None
        return (f"{_n(run, 'rule')} to run, {restore} to restore, "
                f"{self.actions.get('skip', 0)} up to date")


def _count(n) -> int:
    return n if isinstance(n, int) and n >= 0 else 0


class _Lines:
    """Lines waiting for the next tick (any thread adds, the engine's thread writes)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._lines: list[str] = []

    def add(self, text: str) -> None:
        with self._lock:
            self._lines.append(text)

    def take(self) -> list[str]:
        with self._lock:
            out, self._lines = self._lines, []
        return out


class PlainReporter:
    """Timestamped lines for logs, pipes and CI: a rule's start as its command really begins
    (as make echoes each command), its end with its wall time, failures in full, the summary.
    Lines are written by tick(), once per pass of the engine's loop, not one write per line:
    at 10k rules that write was a tenth of the manager process's time.
    """

    def __init__(self, out: TextIO, clock: Callable[[], float] = time.time):
        self.out = out
        self.clock = clock
        self.run = _Run()
        self.lines = _Lines()
        self._second = -1
        self._stamp = ""
        # Rules handed over ahead of the rules making their inputs (a `submit` naming
        # `after`): rule -> those whose ends are not written yet, and its start event when it
        # came first (its worker started it as they succeeded, before their results came
        # here); written after their ends. `_readers`: rule -> the rules waiting for its end.
        self._after: dict[int, list] = {}
        self._readers: dict[int, list[int]] = {}

    def _line(self, text: str, t: float | None = None) -> None:
        now = int(self.clock() if t is None else t)
        if now != self._second:  # (a race between threads costs a wrong stamp, no more)
            self._second, self._stamp = now, time.strftime("%H:%M:%S", time.localtime(now))
        self.lines.add(f"{self._stamp} {text}")

    def event(self, ev: dict) -> None:
        run = self.run
        run.take(ev)
        kind = ev["ev"]
        if not run.headed and kind not in ("plan", "planned", "run_start", "worker_join"):
            run.headed = True  # the plan is whole once the first rule is acted on
            heading = run.heading()
            if heading:
                self._line(heading)
        if kind == "start":
            waiting = self._after.get(ev["rule"])
            if waiting is None:
                self._started(ev)
            else:
                waiting[1] = ev
        elif kind == "restore":
            self._line(f"cached  {run.label(ev['rule'])}", ev["t"])
        elif kind == "end":
            self._ended(ev)
            if self._readers:
                self._after_end(ev["rule"])
        elif kind == "submit" and ev.get("after"):
            self._after[ev["rule"]] = [set(ev["after"]), None]
            for p in ev["after"]:
                self._readers.setdefault(p, []).append(ev["rule"])
        elif kind == "held_back":
            self._after.pop(ev["rule"], None)

    def _started(self, ev: dict) -> None:
        # where, unless it is the one worker of -T local (or a LOCAL rule)
        worker = ev.get("worker")
        where = f" on {worker}" if worker != "local" or len(self.run.workers_seen) > 1 else ""
        self._line(f"start   {self.run.label(ev['rule'])}{where}", ev["t"])

    def _after_end(self, rid: int) -> None:
        """`rid` ended: the rules handed over behind it wait no more for it (a start that
        waited for nothing else is written now)."""
        for d in self._readers.pop(rid, ()):
            entry = self._after.get(d)
            if entry is None:
                continue  # came back (held_back), or no longer waiting
            entry[0].discard(rid)
            if not entry[0]:
                del self._after[d]
                if entry[1] is not None:
                    self._started(entry[1])

    def _ended(self, ev: dict) -> None:
        label = self.run.label(ev["rule"])
        status = ev.get("status")
        if status == "ok":
            self._line(f"done    {label} ({_seconds(ev.get('wall_s'))})", ev["t"])
        elif ev.get("retrying") or "retrying" not in ev:
            self._line(f"retry   {label} after attempt {ev.get('attempt')}: "
                       f"{ev.get('message')}", ev["t"])
        elif status != "withdrawn":
            first, *rest = failure_text(label, ev, self.run.command(ev["rule"]))
            self._line(first, ev["t"])
            for line in rest:
                self.lines.add(line)

    def note(self, text: str) -> None:
        self._line(text)

    def tick(self) -> None:
        lines = self.lines.take()
        if lines:
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()

    def summary(self, outcome) -> None:
        for _, ev in self._after.values():  # what they waited for never ended (a stop)
            if ev is not None:
                self._started(ev)
        self._after.clear()
        self.lines.add(summary_line(outcome))
        self.tick()


class TtyReporter:
    """One live status line, redrawn at most five times a second and cut to the terminal's
    width (a line that wraps cannot be redrawn in place: it piles up); failures and messages
    are written above it."""

    def __init__(self, out: TextIO, clock: Callable[[], float] = time.monotonic,
                 width: Callable[[], int] | None = None,
                 transfers: Callable[[], int] = lambda: 0):
        self.out = out
        self.clock = clock
        self.width = width or (lambda: _terminal_width(out))
        self.transfers = transfers  # in flight now (the manager's count)
        self.run = _Run()
        self.lines = _Lines()
        self.t0 = clock()
        self.last_draw = 0.0
        self.over = False  # after the summary: messages only, no live line

    def event(self, ev: dict) -> None:
        self.run.take(ev)
        if ev["ev"] == "end" and ev.get("retrying") is False and ev.get("status") not in (
                "ok", "withdrawn"):
            for line in failure_text(self.run.label(ev["rule"]), ev,
                                     self.run.command(ev["rule"])):
                self.lines.add(line)

    def note(self, text: str) -> None:
        self.lines.add(f"vinemake: {text}")

    def status(self) -> str:
        r = self.run
        running = len(r.running)
        waiting = max(r.total - r.done - r.failed - running, 0)
        long = [f"[{r.done}/{r.total}]", f"running {running},", f"waiting {waiting},",
                f"failed {r.failed},", f"workers {len(r.workers)},",
                f"transfers {self.transfers()},", f"ETA {self.eta()}"]
        text = " ".join(long)
        width = max(self.width() - 1, 10)  # the last column would wrap on some terminals
        if len(text) <= width:
            return text
        short = [f"[{r.done}/{r.total}]", f"run {running}", f"wait {waiting}"]
        short += [f"fail {r.failed}"] if r.failed else []
        short += [f"wk {len(r.workers)}"]
        short += [f"xfer {self.transfers()}"] if self.transfers() else []
        short += [f"eta {self.eta()}"]
        return " ".join(short)[:width]

    def eta(self) -> str:
        r = self.run
        if not r.done or r.done >= r.total:
            return "?"
        per = (self.clock() - self.t0) / r.done
        return f"{per * (r.total - r.done - r.failed):.0f}s"

    def tick(self) -> None:
        lines = self.lines.take()
        if lines:  # above the live line; a long one may wrap: it is not redrawn
            self.out.write("".join(f"\r\x1b[K{line}\n" for line in lines))
            self._draw(force=True)
        else:
            self._draw()

    def _draw(self, force: bool = False) -> None:
        now = self.clock()
        if self.over:
            self.out.flush()
        elif force or now - self.last_draw >= 0.2:
            self.last_draw = now
            self.out.write("\r\x1b[K" + self.status())
            self.out.flush()

    def summary(self, outcome) -> None:
        lines = self.lines.take()
        self.out.write("".join(f"\r\x1b[K{line}\n" for line in lines))
        self.out.write("\r\x1b[K" + summary_line(outcome) + "\n")
        self.out.flush()
        self.over = True


class FakeReporter:
    """Records what it is told, as tuples, for tests."""

    def __init__(self):
        self.events: list[tuple] = []
        self.run = _Run()

    def event(self, ev: dict) -> None:
        self.run.take(ev)
        kind = ev["ev"]
        label = self.run.label(ev.get("rule"))
        if kind == "start":
            self.events.append(("started", label))
        elif kind == "restore":
            self.events.append(("restored", label))
        elif kind == "end":
            status = ev.get("status")
            if ev.get("retrying"):
                self.events.append(("retrying", label, ev.get("attempt"), ev.get("message")))
            elif status == "ok":
                self.events.append(("finished", label))
            elif status == "withdrawn":
                self.events.append(("withdrawn", label))
            else:
                self.events.append(("failed", label, ev.get("message")))

    def note(self, text: str) -> None:
        self.events.append(("note", text))

    def tick(self) -> None:
        pass

    def summary(self, outcome) -> None:
        self.events.append(("summary", outcome.exit_code))

    def names(self, kind: str) -> list[str]:
        return [e[1] for e in self.events if e[0] == kind]


def make_reporter(out: TextIO | None = None, transfers: Callable[[], int] = lambda: 0
                  ) -> Reporter:
    out = out if out is not None else sys.stderr
    return TtyReporter(out, transfers=transfers) if out.isatty() else PlainReporter(out)


def _terminal_width(out: TextIO) -> int:
    try:
        return os.get_terminal_size(out.fileno()).columns or 80
    except (OSError, ValueError, AttributeError):
        return 80


def _seconds(s) -> str:
    if s is None:
        return "?"
    return f"{s:.1f} s" if s < 60 else f"{int(s // 60)} min {s % 60:.0f} s"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
