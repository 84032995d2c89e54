"""The manager's news (a worker joined or left, a connection refused) shown through the reporter.

The manager and the worker providers log on their own threads; what they log is queued here and
handed to the reporter on the engine's thread at its next tick, so a line of news never writes
across the live status line (or between a plain reporter's buffered lines).
"""

from __future__ import annotations

import logging
import queue
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Notices", "noticing", "Reporting"]


class Notices(logging.Handler):
    """A logging handler that queues each record's message for the engine's thread."""

    def __init__(self, level: int):
        super().__init__(level)
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()

    def emit(self, record: logging.LogRecord) -> None:
        self._queue.put(record.getMessage())

    def drain(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out


@contextmanager
def noticing(joins: bool) -> Iterator[Notices]:
    """Collect what vinemake's components log during a run: warnings, and with `joins` each
    worker that joins (not for -T local: vinemake started that worker itself). What is left
    uncollected at the end is printed."""
    notices = Notices(logging.INFO if joins else logging.WARNING)
    logger = logging.getLogger("vinemake")
    old = logger.level, logger.propagate
    logger.addHandler(notices)
    logger.setLevel(notices.level)
    logger.propagate = False
    try:
        yield notices
    finally:
        logger.removeHandler(notices)
        logger.setLevel(old[0])
        logger.propagate = old[1]
        for text in notices.drain():
            sys.stderr.write(f"vinemake: {text}\n")


class Reporting:
    """A reporter that also shows the notices, on the thread that ticks it."""

    def __init__(self, reporter, notices: Notices):
        self._reporter = reporter
        self._notices = notices

    def __getattr__(self, name: str):
        return getattr(self._reporter, name)

    def tick(self) -> None:
        self._deliver()
        self._reporter.tick()

    def summary(self, outcome) -> None:
        self._deliver()
        self._reporter.summary(outcome)

    def _deliver(self) -> None:
        for text in self._notices.drain():
            self._reporter.note(text)
