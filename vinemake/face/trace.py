"""`--trace FILE`: one tab-separated row per rule of a run, read from its recorded events.

Like Nextflow's trace file: what each rule did (ran, restored, up to date, failed, withdrawn),
its attempt, where and when it ran, what it measured, and the bytes of its inputs by where they
came from. `rule_rows(events)` is pure (also what `vinemake log` reads); `write_trace` writes.
Times are local `YYYY-mm-dd HH:MM:SS.mmm`; an unknown value is `-`.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping

__all__ = ["rule_rows", "trace_text", "write_trace", "COLUMNS", "STATUS", "stamp"]

COLUMNS = ("rule", "label", "key", "status", "attempt", "worker", "host", "submit", "start",
           "end", "wall_s", "cpu_s", "mem_peak_mb", "disk_mb", "bytes_read", "bytes_written",
           "input_bytes", "from_manager", "from_peer", "from_cache", "exit", "signal",
           "reason")

# What became of a rule, from its last event of the run.
STATUS = {"ok": "ran", "failed": "failed", "lost": "failed", "withdrawn": "withdrawn"}


def stamp(t) -> str:
    """A unix time as local `2026-12-07 07:30:01.123`, or `-`."""
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1000):03d}"


def rule_rows(events: Iterable[Mapping]) -> list[dict]:
    """One dict per planned rule (in plan order) with the COLUMNS' values (None: unknown) and
    `plan`, `end`: its plan event and last end event."""
    plans: dict = {}
    submits: dict = {}
    starts: dict = {}
    ends: dict = {}
    restored: set = set()
    transfers: dict = defaultdict(list)  # (to_worker, key) -> transfer events
    for ev in events:
        kind, rid = ev.get("ev"), ev.get("rule")
        if kind == "plan":
            plans[rid] = ev
        elif kind == "submit":
            submits[rid] = ev
        elif kind == "held_back":  # submitted ahead, never started: as if not submitted
            submits.pop(rid, None)
        elif kind == "start":
            starts[rid] = ev
        elif kind == "end":
            ends[rid] = ev
        elif kind == "restore":
            restored.add(rid)
        elif kind == "transfer" and ev.get("ok", True):
            transfers[ev.get("to_worker"), ev.get("key")].append(ev)
    claimed: set = set()
    rows = []
    for rid in sorted(plans, key=lambda r: (starts[r]["t"] if r in starts else float("inf"))):
        rows.append(_row(plans[rid], submits.get(rid), starts.get(rid), ends.get(rid),
                         rid in restored, transfers, claimed))
    order = {rid: i for i, rid in enumerate(plans)}
    rows.sort(key=lambda row: order[row["rule"]])
    return rows


def _row(plan: Mapping, submit, start, end, restored: bool, transfers, claimed: set) -> dict:
    end = end or {}
    if restored:
        status = "restored"
    elif end:
        status = STATUS.get(end.get("status"), "failed")
    elif start or submit:
        status = "interrupted"
    elif plan.get("action") == "skip":
        status = "up to date"
    else:
        status = "not run"
    worker = (start or end).get("worker") if (start or end) else None
    row = {"rule": plan.get("rule"), "label": plan.get("label"), "key": plan.get("key"),
           "status": status, "attempt": end.get("attempt") or (start or {}).get("attempt"),
           "worker": worker, "host": (start or end).get("host") if (start or end) else None,
           "submit": submit and submit["t"], "start": start and start["t"],
           "end": end.get("t"), "reason": plan.get("reason"), "plan": plan, "end_event": end}
    for field in ("wall_s", "cpu_s", "mem_peak_mb", "disk_mb", "bytes_read", "bytes_written",
                  "exit", "signal"):
        row[field] = end.get(field)
    row.update(_inputs(plan, worker, start, end, transfers, claimed))
    return row


def _inputs(plan: Mapping, worker, start, end: Mapping, transfers, claimed: set) -> dict:
    """Bytes of the rule's inputs received on its worker before it began, by source; what
    was there already (its cache, or linked on the manager's host) is `from_cache`."""
    got = {"manager": 0, "peer": 0}
    if start is None:
        return {"input_bytes": end.get("input_bytes"), "from_manager": None,
                "from_peer": None, "from_cache": None}
    files = plan.get("files") or {}
    for path in plan.get("inputs") or ():
        for tr in transfers.get((worker, files.get(path)), ()):
            if id(tr) in claimed or tr.get("end", tr["t"]) > start["t"] + 1.0:
                continue
            claimed.add(id(tr))  # the first rule there to read it received it
            if tr.get("source") in ("manager", "peer"):  # (a URL or @mini: not received)
                got[tr["source"]] += tr.get("size") or 0
    total = end.get("input_bytes")
    cache = None if total is None else max(total - got["manager"] - got["peer"], 0)
    return {"input_bytes": total, "from_manager": got["manager"], "from_peer": got["peer"],
            "from_cache": cache}


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value % 1 else str(int(value))
    return str(value).replace("\t", " ").replace("\n", " ")


def trace_text(events: Iterable[Mapping]) -> str:
    """The trace: a header row, then one row per rule."""
    lines = ["\t".join(COLUMNS)]
    for row in rule_rows(events):
        cells = dict(row)
        for field in ("submit", "start", "end"):
            cells[field] = stamp(row[field]) if row[field] is not None else None
        lines.append("\t".join(_cell(cells[c]) for c in COLUMNS))
    return "\n".join(lines) + "\n"


def write_trace(path: str, events: Iterable[Mapping]) -> None:
    """Write the trace at `path` atomically (a temporary name, then rename)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(trace_text(events))
    os.replace(tmp, path)
