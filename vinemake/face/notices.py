"""The manager's news (a worker joined or left, a connection refused) shown through the reporter.

The manager and the worker providers log on their own threads. Until the reporter is there,
what they log is queued; from then on each message goes to the reporter as it is logged, into
the same list of lines as the run's events (written at the reporter's next tick, so a line of
news never writes across the live status line), so `worker w1 joined` comes before the first
`start ... on w1`. After the summary, news is printed directly again.
"""

from __future__ import annotations

import logging
import queue
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Notices", "noticing", "Reporting"]


class Notices(logging.Handler):
    """A logging handler that queues each record's message, or hands it to `forward()`'s
    reporter while there is one."""

    def __init__(self, level: int):
        super().__init__(level)
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._to: Callable[[str], None] | None = None

    def emit(self, record: logging.LogRecord) -> None:  # called under the handler's lock
        if self._to is None:
            self._queue.put(record.getMessage())
        else:
            self._to(record.getMessage())

    def forwarding(self) -> bool:
        return self._to is not None

    def forward(self, to: Callable[[str], None] | None) -> None:
        """From now on hand each message to `to` (None: queue again), what is queued first."""
        with self.lock:
            if to is not None:
                for text in self.drain():
                    to(text)
            self._to = to

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
    """A reporter that also shows the notices, in order with the run's events, until its
    summary."""

    def __init__(self, reporter, notices: Notices):
        self._reporter = reporter
        self._notices = notices
        notices.forward(reporter.note)  # note() only queues a line: safe from any thread

    def __getattr__(self, name: str):
        return getattr(self._reporter, name)

    def summary(self, outcome) -> None:
        self._notices.forward(None)  # nothing ticks after the summary: later news is printed
        self._reporter.summary(outcome)

    def close(self) -> None:
        """After a run that ended without its summary (an error): write what was handed over."""
        if self._notices.forwarding():
            self._notices.forward(None)
            self._reporter.tick()
