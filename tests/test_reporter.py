"""Progress output: plain timestamped lines off a terminal, one live line on it, a summary."""

import io
import time

from vinemake.core.engine import RunOutcome
from vinemake.core.reporter import PlainReporter, TtyReporter, make_reporter, summary_line


class Clock:
    def __init__(self, now=0.0):
        self.now = now

    def __call__(self):
        return self.now


def test_summary_lines():
    assert summary_line(RunOutcome(skipped=1)) == "vinemake: nothing to do, 1 rule up to date"
    assert summary_line(RunOutcome(ran=("a", "b"), restored=("c",), skipped=4, failed=("b",),
                                not_run=2, wall_time_s=1.25)) == (
        "vinemake: ran 2, restored 1, up to date 4, failed 1 (b), not run 2 in 1.2 s")
    assert summary_line(RunOutcome(ran=("a",), stopped=130)).endswith("in 0.0 s (interrupted)")


def test_plain_reporter_writes_timestamped_lines():
    out = io.StringIO()
    stamp = time.mktime((2026, 1, 2, 3, 4, 5, 0, 0, -1))
    rep = PlainReporter(out, Clock(stamp))
    rep.start(total=1, skipped=0, restoring=0)
    rep.started("x")
    rep.finished("x", None)
    assert out.getvalue().count("\n") == 1  # "start" waits for the next tick
    rep.failed("x", "exit code 3", ".vinemake/failed/x")
    rep.summary(RunOutcome(failed=("x",)))
    assert out.getvalue().splitlines() == [
        "03:04:05 1 rule to run, 0 to restore, 0 up to date",
        "03:04:05 start   x",
        "03:04:05 FAILED  x: exit code 3 (see .vinemake/failed/x/INFO)",
        "vinemake: ran 0, restored 0, up to date 0, failed 1 (x) in 0.0 s",
    ]


def test_tty_status_line_counts_and_eta():
    clock = Clock()
    out = io.StringIO()
    rep = TtyReporter(out, clock)
    rep.start(total=4, skipped=0, restoring=1)
    rep.restored("r")
    for name in "abc":
        rep.started(name)
    clock.now = 2.0
    rep.finished("a", None)
    assert rep.status() == "[1/4] running 2, waiting 1, failed 0, cached 1, ETA 6s"
    rep.tick()
    assert out.getvalue() == "\r\x1b[K[1/4] running 2, waiting 1, failed 0, cached 1, ETA 6s"
    rep.tick()  # redrawn at most every 0.2 s
    assert out.getvalue().count("\r") == 1


def test_tty_status_line_stops_counting_a_withdrawn_rule_as_running():
    rep = TtyReporter(io.StringIO(), Clock())
    rep.start(total=3, skipped=0, restoring=0)
    for name in "abc":
        rep.started(name)
    rep.failed("a", "exit code 1", "/x")
    rep.withdrawn("b")
    assert rep.status().startswith("[0/2] running 1, waiting 0, failed 1")


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_make_reporter_picks_by_terminal():
    assert isinstance(make_reporter(Tty()), TtyReporter)
    assert isinstance(make_reporter(io.StringIO()), PlainReporter)
