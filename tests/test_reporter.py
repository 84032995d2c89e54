"""Progress output, read from the run's events: plain timestamped lines off a terminal, one live
line on it that fits the terminal, failures in full, a summary."""

import io
import time

from vinemake.core.engine import RunOutcome
from vinemake.core.reporter import (
    PlainReporter,
    TtyReporter,
    make_reporter,
    summary_line,
)


class Clock:
    def __init__(self, now=0.0):
        self.now = now

    def __call__(self):
        return self.now


T0 = time.mktime((2026, 1, 2, 3, 4, 5, 0, 0, -1))


def plan(rid, label, action="run", command="make it"):
    return {"t": T0, "ev": "plan", "rule": rid, "label": label, "action": action,
            "command": command}


def end(rid, status="ok", t=T0, retrying=False, **kw):
    return {"t": t, "ev": "end", "rule": rid, "status": status, "retrying": retrying, **kw}


def feed(rep, *events):
    for ev in events:
        rep.event(ev)


def test_summary_lines():
    assert summary_line(RunOutcome(skipped=1)) == "vinemake: nothing to do, 1 rule up to date"
    assert summary_line(RunOutcome(ran=("a", "b"), restored=("c",), skipped=4, failed=("b",),
                                   not_run=2, wall_time_s=1.25)) == (
        "vinemake: ran 2, restored 1, up to date 4, failed 1 (b), not run 2 in 1.2 s")
    assert summary_line(RunOutcome(ran=("a",), stopped=130)).endswith("in 0.0 s (interrupted)")


def test_plain_lines_say_when_each_command_really_began_and_how_long_it_took():
    out = io.StringIO()
    rep = PlainReporter(out, Clock(T0))
    feed(rep, plan(0, "x"), plan(1, "y"), plan(2, "z", "skip"),
         {"t": T0, "ev": "submit", "rule": 0, "attempt": 1},
         {"t": T0, "ev": "submit", "rule": 1, "attempt": 1})
    rep.tick()
    assert out.getvalue().splitlines() == ["03:04:05 2 rules to run, 0 to restore, 1 up to date"]
    feed(rep, {"t": T0 + 2, "ev": "start", "rule": 0, "worker": "local"},
         end(0, t=T0 + 3, wall_s=1.04),
         {"t": T0 + 3, "ev": "start", "rule": 1, "worker": "local"})
    assert out.getvalue().count("\n") == 1  # written at the next tick, not line by line
    rep.tick()
    assert out.getvalue().splitlines()[1:] == [
        "03:04:07 start   x", "03:04:08 done    x (1.0 s)", "03:04:08 start   y"]


def test_the_plans_counts_head_the_run_though_its_plans_come_as_rules_are_reached():
    out = io.StringIO()
    rep = PlainReporter(out, Clock(T0))
    feed(rep, {"t": T0, "ev": "planned", "rules": 4, "run": 3, "restore": 0, "skip": 1},
         plan(0, "x"), {"t": T0, "ev": "submit", "rule": 0, "attempt": 1},
         plan(1, "y"), plan(2, "z", "skip"), {"t": T0 + 1, "ev": "start", "rule": 0,
                                               "worker": "local"})
    rep.tick()
    assert out.getvalue().splitlines() == ["03:04:05 3 rules to run, 0 to restore, 1 up to date",
                                           "03:04:06 start   x"]
    _, tty_rep = tty(80)
    feed(tty_rep, {"t": 0, "ev": "planned", "rules": 3, "run": 3, "restore": 0, "skip": 0},
         plan(0, "x"), {"t": 0, "ev": "start", "rule": 0, "worker": "w"})
    assert tty_rep.status().startswith("[0/3] running 1, waiting 2, failed 0")


def test_plain_start_names_the_worker_unless_it_is_the_one_local_worker():
    out = io.StringIO()
    rep = PlainReporter(out, Clock(T0))
    feed(rep, plan(0, "x"), plan(1, "y"),
         {"t": T0, "ev": "worker_join", "worker": "w1", "host": "10.0.0.1", "cores": 2},
         {"t": T0, "ev": "start", "rule": 0, "worker": "w1"},
         {"t": T0, "ev": "worker_join", "worker": "w2", "host": "10.0.0.2", "cores": 1},
         {"t": T0, "ev": "start", "rule": 1, "worker": "w2"})
    rep.tick()
    assert [line[9:] for line in out.getvalue().splitlines()][1:] == [
        "start   x on w1", "start   y on w2"]


def test_a_failure_shows_its_command_where_it_ran_how_it_ended_its_stderr_and_info():
    out = io.StringIO()
    rep = PlainReporter(out, Clock(T0))
    feed(rep, plan(0, "out.txt", command="python3 count.py in.txt > out.txt"),
         {"t": T0, "ev": "start", "rule": 0, "worker": "w1", "host": "10.0.0.1"},
         end(0, "failed", retrying=True, attempt=1, message="exit code 1"),
         end(0, "failed", worker="w1", host="10.0.0.1", exit=1, message="exit code 1",
             stderr="Traceback (most recent call last):\nNameError: name 'x' is not defined",
             info="/nowhere/.vinemake/failed/out.txt/INFO"))
    rep.summary(RunOutcome(failed=("out.txt",)))
    assert [line[9:] if line[:2].isdigit() else line for line in out.getvalue().splitlines()] \
        == ["1 rule to run, 0 to restore, 0 up to date",
            "start   out.txt on w1",
            "retry   out.txt after attempt 1: exit code 1",
            "FAILED  out.txt: exit code 1",
            "  command: python3 count.py in.txt > out.txt",
            "  ran on:  worker w1 (10.0.0.1)",
            "  stderr (last lines):",
            "    Traceback (most recent call last):",
            "    NameError: name 'x' is not defined",
            "  see /nowhere/.vinemake/failed/out.txt/INFO",
            "vinemake: ran 0, restored 0, up to date 0, failed 1 (out.txt) in 0.0 s"]


def test_the_first_line_counts_restored_rules_apart_from_up_to_date_ones_as_the_summary_does():
    out = io.StringIO()
    rep = PlainReporter(out, Clock(T0))
    feed(rep, plan(0, "a", "restore"), plan(1, "b", "restore"), plan(2, "c", "skip"),
         {"t": T0, "ev": "restore", "rule": 0}, {"t": T0, "ev": "restore", "rule": 1})
    rep.summary(RunOutcome(restored=("a", "b"), skipped=1))
    assert [line[9:] if line[:2].isdigit() else line for line in out.getvalue().splitlines()] \
        == ["0 rules to run, 2 to restore, 1 up to date", "cached  a", "cached  b",
            "vinemake: ran 0, restored 2, up to date 1 in 0.0 s"]


def tty(width, clock=None, transfers=lambda: 0):
    out = io.StringIO()
    return out, TtyReporter(out, clock or Clock(), width=lambda: width, transfers=transfers)


def test_the_live_line_counts_only_commands_that_really_began_as_running():
    clock = Clock()
    out, rep = tty(120, clock, transfers=lambda: 3)
    feed(rep, *(plan(i, f"r{i}") for i in range(4)),
         {"t": 0, "ev": "worker_join", "worker": "w1"},
         *({"t": 0, "ev": "submit", "rule": i, "attempt": 1} for i in range(4)),
         {"t": 0, "ev": "start", "rule": 0, "worker": "w1"},
         {"t": 0, "ev": "start", "rule": 1, "worker": "w1"})
    assert rep.status() == ("[0/4] running 2, waiting 2, failed 0, workers 1, transfers 3, "
                            "ETA ?")
    clock.now = 2.0
    feed(rep, end(0))
    assert rep.status() == ("[1/4] running 1, waiting 2, failed 0, workers 1, transfers 3, "
                            "ETA 6s")
    rep.tick()
    assert out.getvalue() == "\r\x1b[K" + rep.status()
    rep.tick()  # redrawn at most every 0.2 s
    assert out.getvalue().count("\r") == 1


def test_the_live_line_never_exceeds_a_narrow_terminal():
    out, rep = tty(40)
    feed(rep, *(plan(i, f"r{i}") for i in range(1000)),
         *({"t": 0, "ev": "start", "rule": i, "worker": "w"} for i in range(130)),
         end(999, "failed"))
    assert rep.status() == "[0/1000] run 130 wait 869 fail 1 wk 0 eta ?"[:39]
    assert len(rep.status()) <= 39
    _, tiny = tty(12)
    feed(tiny, plan(0, "x"))
    assert len(tiny.status()) <= 11


def test_a_withdrawn_rule_is_neither_running_nor_waiting():
    _, rep = tty(120)
    feed(rep, *(plan(i, f"r{i}") for i in range(3)),
         *({"t": 0, "ev": "start", "rule": i, "worker": "w"} for i in range(2)),
         end(0, "failed", message="exit code 1"), end(2, "withdrawn"))
    assert rep.status().startswith("[0/2] running 1, waiting 0, failed 1")


def test_messages_and_failures_are_written_above_the_live_line():
    out, rep = tty(80)
    feed(rep, plan(0, "x"), end(0, "failed", message="exit code 2"))
    rep.note("lost worker w1: connection reset")
    rep.tick()
    assert out.getvalue().split("\r\x1b[K")[1:-1] == [
        "FAILED  x: exit code 2\n", "  command: make it\n",
        "vinemake: lost worker w1: connection reset\n"]


def test_news_from_the_manager_is_a_timestamped_line_in_the_plain_log():
    out = io.StringIO()
    rep = PlainReporter(out, Clock(T0))
    rep.note("worker w1 joined from 10.0.0.1")
    rep.tick()
    assert out.getvalue() == "03:04:05 worker w1 joined from 10.0.0.1\n"


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_make_reporter_picks_by_terminal():
    assert isinstance(make_reporter(Tty()), TtyReporter)
    assert isinstance(make_reporter(io.StringIO()), PlainReporter)
