"""`vinemake history`: the runs recorded for a workflow, oldest first (as `nextflow log`).

One line per run: its run-id, when it started, how long it took, its outcome and its counts,
and the command line. A run without a `run_end` (killed, or going on now) shows as `running`
while its process lives on this host, else `killed`. Read from the events; measures nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping

from vinemake.common.process import still_running
from vinemake.core.events import read_ends, runs
from vinemake.core.statedir import StateDir

__all__ = ["history_text", "run_line", "show_history", "going_on"]

HEAD = ("RUN", "STARTED", "DURATION", "OUTCOME", "RAN", "RESTORED", "UP TO DATE", "FAILED",
        "COMMAND")


def run_line(run_id: str, events: Iterable[Mapping], alive=lambda start: False) -> tuple:
    """The columns of HEAD for one run's events."""
    start = end = None
    last = None
    for ev in events:
        last = ev["t"] if last is None else max(last, ev["t"])
        if ev.get("ev") == "run_start":
            start = ev
        elif ev.get("ev") == "run_end":
            end = ev
    t0 = start["t"] if start else None
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t0)) if t0 else "-"
    command = " ".join(["vinemake", *start.get("argv", [])]) if start else "-"
    if end is None:
        outcome = "running" if start and alive(start) else "killed"
        counts: Mapping = {}
        duration = (last - t0) if t0 is not None and last is not None else None
    else:
        outcome, counts, duration = end.get("outcome", "-"), end.get("counts") or {}, \
            end.get("duration_s")
    return (run_id, started, _duration(duration), outcome,
            *(str(counts.get(k, "-")) for k in ("ran", "restored", "skipped", "failed")),
            command)


def history_text(lines: list[tuple]) -> str:
    """HEAD and `lines`, in columns."""
    rows = [HEAD, *lines]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEAD) - 1)]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True))
                   + "  " + r[-1] + "\n" for r in rows)


def show_history(root: str) -> str:
    """The history of the workflow in `root`: its table, or a line saying there is none."""
    ids = runs(root)
    if not ids:
        return "vinemake: no run recorded here yet\n"
    state = StateDir(os.path.abspath(root))
    # Only the ends of each record: its start, and its end or its last event.
    return history_text([run_line(i, read_ends(state.events(i)), _alive) for i in ids])


def going_on(events: list[Mapping]) -> bool:
    """Is the run of these events going on now (no end recorded, its process alive here)?"""
    start = next((e for e in events if e.get("ev") == "run_start"), None)
    return (start is not None and not any(e.get("ev") == "run_end" for e in events)
            and _alive(start))


def _alive(start: Mapping) -> bool:
    """Is the process that wrote this run_start event still running (its pid not reused)?"""
    ident = start.get("process")  # records before it name the pid alone
    return still_running(ident if isinstance(ident, str) else str(start.get("pid")))


def _duration(s) -> str:
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"
