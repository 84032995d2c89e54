"""Progress and summary: what the user sees while a workflow runs. The engine never prints.

`TtyReporter` keeps one live status line (done, running, waiting, failed, cached, ETA) on a
terminal; `PlainReporter` writes timestamped lines for logs and pipes; `FakeReporter` records
events for tests. `make_reporter` picks by whether the stream is a terminal.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Protocol, TextIO

__all__ = ["Reporter", "FakeReporter", "PlainReporter", "TtyReporter", "make_reporter",
           "summary_line"]


class Reporter(Protocol):
    def start(self, total: int, skipped: int, restoring: int) -> None: ...
    def started(self, name: str) -> None: ...
    def finished(self, name: str, result) -> None: ...
    def restored(self, name: str) -> None: ...
    def retrying(self, name: str, attempt: int, why: str) -> None: ...
    def failed(self, name: str, why: str, where: str) -> None: ...
    def withdrawn(self, name: str) -> None: ...  # started() earlier, but never ran
    def note(self, text: str) -> None: ...  # news from the manager: a worker joined, left
    def tick(self) -> None: ...
    def summary(self, outcome) -> None: ...


class FakeReporter:
    """Records every event as a tuple, for tests."""

    def __init__(self):
        self.events: list[tuple] = []

    def start(self, total, skipped, restoring):
        self.events.append(("start", total, skipped, restoring))

    def started(self, name):
        self.events.append(("started", name))

    def finished(self, name, result):
        self.events.append(("finished", name))

    def restored(self, name):
        self.events.append(("restored", name))

    def retrying(self, name, attempt, why):
        self.events.append(("retrying", name, attempt, why))

    def failed(self, name, why, where):
        self.events.append(("failed", name, why))

    def withdrawn(self, name):
        self.events.append(("withdrawn", name))

    def note(self, text):
        self.events.append(("note", text))

    def tick(self):
        pass

    def summary(self, outcome):
        self.events.append(("summary", outcome.exit_code))

    def names(self, kind: str) -> list[str]:
        return [e[1] for e in self.events if e[0] == kind]


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
        text = f"vinemake: nothing to do, {_n(outcome.skipped, 'rule')} up to date"
    return text


class _Counts:
    """Counters both real reporters keep."""

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.t0 = clock()
        self.total = self.done = self.running = self.failed = self.cached = 0

    def eta(self) -> str:
        if not self.done or self.done >= self.total:
            return "?"
        per = (self.clock() - self.t0) / self.done
        return f"{per * (self.total - self.done):.0f}s"


class PlainReporter:
    """Timestamped lines for logs, pipes and CI: one as each rule starts (as make echoes each
    command), one per failure or retry, and the summary. Lines are flushed by tick(), once per
    pass of the engine's loop, not one write per line: at 10k rules that write was a tenth of
    the manager process's time.
    """

    def __init__(self, out: TextIO, clock: Callable[[], float] = time.time):
        self.out = out
        self.clock = clock
        self.second = -1
        self.stamp = ""
        self.pending: list[str] = []

    def _line(self, text: str) -> None:
        now = int(self.clock())
        if now != self.second:
            self.second, self.stamp = now, time.strftime("%H:%M:%S", time.localtime(now))
        self.pending.append(f"{self.stamp} {text}\n")

    def start(self, total, skipped, restoring):
        if total or restoring:
            self._line(f"{_n(total, 'rule')} to run, {restoring} to restore, {skipped} up to date")
            self.tick()

    def started(self, name):
        self._line(f"start   {name}")

    def finished(self, name, result):
        pass

    def restored(self, name):
        self._line(f"cached  {name}")

    def retrying(self, name, attempt, why):
        self._line(f"retry   {name} after attempt {attempt}: {why}")

    def failed(self, name, why, where):
        self._line(f"FAILED  {name}: {why} (see {where}/INFO)")
        self.tick()

    def withdrawn(self, name):
        pass  # the summary counts them among "not run"

    def note(self, text):
        self._line(text)
        self.tick()

    def tick(self):
        if self.pending:
            self.out.write("".join(self.pending))
            self.pending.clear()
            self.out.flush()

    def summary(self, outcome):
        self.pending.append(summary_line(outcome) + "\n")
        self.tick()


class TtyReporter:
    """One live status line, redrawn at most a few times a second; failures stay above it."""

    def __init__(self, out: TextIO, clock: Callable[[], float] = time.monotonic):
        self.out = out
        self.n = _Counts(clock)
        self.last_draw = 0.0

    def start(self, total, skipped, restoring):
        self.n.total = total

    def started(self, name):
        self.n.running += 1

    def finished(self, name, result):
        self.n.running -= 1
        self.n.done += 1

    def restored(self, name):
        self.n.cached += 1

    def retrying(self, name, attempt, why):
        self.n.running -= 1

    def withdrawn(self, name):
        self.n.running -= 1
        self.n.total -= 1  # it will not run: neither running nor waiting

    def failed(self, name, why, where):
        self.n.running -= 1
        self.n.failed += 1
        self.out.write(f"\r\x1b[KFAILED {name}: {why} (see {where}/INFO)\n")
        self._draw(force=True)

    def note(self, text):
        self.out.write(f"\r\x1b[Kvinemake: {text}\n")
        self._draw(force=True)

    def status(self) -> str:
        n = self.n
        waiting = n.total - n.done - n.running - n.failed
        return (f"[{n.done}/{n.total}] running {n.running}, waiting {max(waiting, 0)}, "
                f"failed {n.failed}, cached {n.cached}, ETA {n.eta()}")

    def tick(self):
        self._draw()

    def _draw(self, force: bool = False):
        now = self.n.clock()
        if force or now - self.last_draw >= 0.2:
            self.last_draw = now
            self.out.write("\r\x1b[K" + self.status())
            self.out.flush()

    def summary(self, outcome):
        self.out.write("\r\x1b[K" + summary_line(outcome) + "\n")
        self.out.flush()


def make_reporter(out: TextIO | None = None) -> Reporter:
    out = out if out is not None else sys.stderr
    return TtyReporter(out) if out.isatty() else PlainReporter(out)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
