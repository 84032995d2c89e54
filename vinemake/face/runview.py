"""What a run's recorded events show: the data of the HTML report, the live page and `status`.

`run_view(events)` is pure: it turns the event record of one run (core/events.py; its kinds
are listed in docs/observing.md) into plain JSON-ready data — a summary, timeline bars packed
into worker slots, rules with their keys (the page draws provenance from them) and declared
against measured resources, workers, transfers, failures, and what is running, waiting or
being copied now (a transfer is in flight from its `transfer_start` until the `transfer` of the
same file to the same worker).
It measures nothing; a field missing from an event is shown as unknown and an unknown kind of
event is ignored, so a report can be made from an older or a killed run.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping

__all__ = ["run_view", "suggest", "human_bytes"]

# The timeline's kinds (TaskVine's figure of a mixed workflow) by a plan's kind of rule; the
# others are "transfer" and "restore".
_TASK_KIND = {"command": "command", "local": "command", "call": "function call",
              "library": "library start"}
# A rule's list of files longer than this is cut, the rest counted: the page stays small.
MAX_FILES = 20
RESTORE_LANE = "manager"


def run_view(events: Iterable[Mapping], now: float | None = None) -> dict:
    """The report's data for one run's `events`.

    Rules are columns (`rules["label"][i]`); a bar's `rule` is such a row, or None.

    `now` (the live page's clock) closes the bars of tasks still running; without it they end
    at the last recorded event, as after a run that was killed.
    """
    acc = _Accumulated()
    for ev in events:
        kind = ev.get("ev")
        handler = _HANDLERS.get(kind)
        if handler is None or (kind in _OF_A_RULE and not isinstance(ev.get("rule"), int)):
            continue  # a kind this reader does not know, or a rule's event naming none
        _time(acc, ev)
        handler(acc, ev)
    t0 = acc.start_t if acc.start_t is not None else (acc.first_t or 0.0)
    end_t = acc.last_t if now is None else max(now, acc.last_t or now)
    rules = _rules(acc)
    bars, lanes = _timeline(acc, t0, end_t, {rid: i for i, rid in enumerate(rules["id"])})
    return {
        "run": _run(acc, t0, end_t, live=now is not None),
        "summary": _summary(acc, t0, end_t, live=now is not None),
        "rules": rules,
        "lanes": lanes,
        "bars": bars,
        "categories": _categories(rules),
        "workers": _workers(acc, t0),
        "transfers": _transfers(acc),
        "failures": _failures(acc),
        "running": [_now_row(acc, rid, t0, "start") for rid in sorted(acc.running)],
        "waiting": [_now_row(acc, rid, t0, "submit") for rid in sorted(acc.waiting)],
        "in_flight": _in_flight(acc, t0),
    }


class _Accumulated:
    """Everything read from the events, as it was recorded (one pass)."""

    def __init__(self):
        self.start: Mapping = {}
        self.end: Mapping | None = None
        self.start_t: float | None = None
        self.first_t: float | None = None
        self.last_t: float | None = None
        self.plans: dict[int, Mapping] = {}
        self.counted: Mapping | None = None  # the `planned` event: the plan's counts
        self.submitted: dict[int, float] = {}
        self.started: dict[int, Mapping] = {}  # the attempt running now, by rule
        self.tasks: list[tuple[Mapping, Mapping]] = []  # (start, end) of every attempt
        self.last_end: dict[int, Mapping] = {}
        self.restores: list[Mapping] = []
        self.transfers: list[Mapping] = []
        self.failed_transfers: list[Mapping] = []
        self.cached_inputs = 0  # inputs found in their worker's cache, over all attempts
        self.moving: dict[tuple, Mapping] = {}  # (key, to_worker) -> its transfer_start
        self.libraries: list[Mapping] = []
        self.workers: dict[str, dict] = {}
        self.cache: dict[str, list] = defaultdict(list)
        self.running: set[int] = set()
        self.waiting: set[int] = set()


def _time(acc: _Accumulated, ev: Mapping) -> None:
    t = ev.get("t")
    if isinstance(t, (int, float)):
        if acc.first_t is None:
            acc.first_t = t
        acc.last_t = t if acc.last_t is None else max(acc.last_t, t)


# What the view reads of the events it keeps one of per rule (a report of a million-rule run
# holds these, not whole events); a repeated short text is kept once.
_PLAN_KEPT = ("label", "category", "kind", "action", "reason", "key", "inputs", "outputs",
              "files", "resources", "command", "location")
_START_KEPT = ("t", "rule", "worker")
_END_KEPT = ("t", "rule", "status", "worker", "attempt", "wall_s", "cpu_s", "mem_peak_mb",
             "disk_mb")
_SHARED = frozenset({"category", "kind", "action", "reason", "worker", "status", "host"})


def _kept(ev: Mapping, names: tuple, trim=None) -> dict:
    """`ev`'s fields among `names` (those present), shared texts interned, `trim`med."""
    kept = {}
    for name in names:
        if name in ev:
            value = ev[name]
            kept[name] = sys.intern(value) if name in _SHARED and type(value) is str else value
    return trim(kept) if trim else kept


def _plan_fields(plan: dict) -> dict:
    """A plan as the view shows it: its inputs capped, its command cut, the keys of only the
    files shown, the declared resources only."""
    if "inputs" in plan:
        plan["inputs"] = _capped(plan["inputs"])
    if "command" in plan:
        plan["command"] = _short(plan["command"])
    files = plan.get("files")
    if isinstance(files, Mapping):
        shown = [*(plan.get("inputs") or ()), *_capped(plan.get("outputs"))]
        plan["files"] = {p: files[p] for p in shown if type(p) is str and p in files}
    res = plan.get("resources")
    if isinstance(res, Mapping):
        plan["resources"] = {k: res[k] for k in DECLARED if res.get(k) is not None}
    return plan


def _on_run_start(acc, ev):
    acc.start, acc.start_t = ev, ev.get("t")


def _on_run_end(acc, ev):
    acc.end = ev


def _on_plan(acc, ev):
    acc.plans[ev["rule"]] = _kept(ev, _PLAN_KEPT, _plan_fields)


def _on_planned(acc, ev):
    acc.counted = ev


def _on_submit(acc, ev):
    rid = ev.get("rule")
    acc.submitted[rid] = ev.get("t")
    if rid not in acc.running:
        acc.waiting.add(rid)


def _on_held_back(acc, ev):
    """Submitted ahead of what makes its inputs, never started: as if not submitted."""
    rid = ev.get("rule")
    acc.submitted.pop(rid, None)
    acc.waiting.discard(rid)


def _on_start(acc, ev):
    rid = ev.get("rule")
    acc.started[rid] = _kept(ev, _START_KEPT)
    cached = ev.get("cached")
    acc.cached_inputs += len(cached) if isinstance(cached, list) else 0
    acc.running.add(rid)
    acc.waiting.discard(rid)


def _on_end(acc, ev):
    rid = ev.get("rule")
    if ev.get("status") != "failed":  # a failure's row shows the whole of its end
        ev = _kept(ev, _END_KEPT)
    start = acc.started.pop(rid, None)
    if start is not None:
        acc.tasks.append((start, ev))
    acc.last_end[rid] = ev
    acc.running.discard(rid)
    acc.waiting.discard(rid)


def _on_restore(acc, ev):
    acc.restores.append(ev)


def _on_transfer_start(acc, ev):
    acc.moving[(ev.get("key"), ev.get("to_worker"))] = ev


def _on_transfer(acc, ev):
    # a transfer that failed moved nothing: drawn (as failed), not counted
    (acc.failed_transfers if ev.get("ok") is False else acc.transfers).append(ev)
    acc.moving.pop((ev.get("key"), ev.get("to_worker")), None)


def _on_library(acc, ev):
    acc.libraries.append(ev)


def _on_worker_join(acc, ev):
    w = acc.workers.setdefault(ev.get("worker"), {})
    w.update(host=ev.get("host"), cores=ev.get("cores"), memory_mb=ev.get("memory_mb"),
             disk_mb=ev.get("disk_mb"), joined=ev.get("t"))


def _on_worker_leave(acc, ev):
    w = acc.workers.setdefault(ev.get("worker"), {})
    w.update(left=ev.get("t"), reason=ev.get("reason"))
    for copy in [c for c in acc.moving if c[1] == ev.get("worker")]:
        del acc.moving[copy]  # it will never arrive


def _on_cache(acc, ev):
    acc.cache[ev.get("worker")].append((ev.get("t"), ev.get("bytes")))


_HANDLERS = {"run_start": _on_run_start, "run_end": _on_run_end, "plan": _on_plan,
             "planned": _on_planned,
             "submit": _on_submit, "held_back": _on_held_back, "start": _on_start,
             "end": _on_end, "restore": _on_restore,
             "transfer_start": _on_transfer_start, "transfer": _on_transfer,
             "library_start": _on_library,
             "worker_join": _on_worker_join, "worker_leave": _on_worker_leave,
             "cache": _on_cache}
_OF_A_RULE = frozenset({"plan", "submit", "held_back", "start", "end", "restore"})


# --- the parts of the view ----------------------------------------------------------------


def _rel(t, t0: float) -> float | None:
    return None if not isinstance(t, (int, float)) else round(t - t0, 3)


def _label(acc: _Accumulated, rid) -> str:
    plan = acc.plans.get(rid)
    return plan.get("label", f"rule {rid}") if plan else f"rule {rid}"


def _run(acc: _Accumulated, t0: float, end_t, live: bool) -> dict:
    s = acc.start
    return {"id": s.get("run"), "vinefile": s.get("vinefile"), "root": s.get("root"),
            "host": s.get("host"), "batch_type": s.get("batch_type"), "argv": s.get("argv"),
            "start": t0, "end": end_t, "live": live and acc.end is None}


def _counts(acc: _Accumulated) -> dict:
    """The run's own counts when it recorded them, else counted from what was recorded."""
    if acc.end and isinstance(acc.end.get("counts"), Mapping):
        return dict(acc.end["counts"])
    final = defaultdict(int)
    for ev in acc.last_end.values():
        final[ev.get("status")] += 1
    return {"ran": final["ok"], "restored": len({r.get("rule") for r in acc.restores}),
            "skipped": _planned(acc).get("skip", 0),
            "failed": final["failed"], "withdrawn": final["withdrawn"]}


def _summary(acc: _Accumulated, t0: float, end_t, live: bool) -> dict:
    if acc.end is not None:
        outcome, duration = acc.end.get("outcome"), acc.end.get("duration_s")
    else:  # still going, or killed before it could record its end
        outcome, duration = ("running" if live else "unfinished"), None
    if duration is None and end_t is not None:
        duration = round(end_t - t0, 3)
    moved = _bytes_by_source(acc.transfers)
    return {
        "outcome": outcome, "exit": acc.end.get("exit") if acc.end else None,
        "duration_s": duration, "counts": _counts(acc),
        "planned": _planned(acc), "tasks": len(acc.tasks),
        "cpu_s": round(sum(_num(e.get("cpu_s")) for _, e in acc.tasks), 3),
        "bytes_moved": sum(b for src, b in moved.items() if src != "cache"),
        "bytes_by_source": moved,
        "cache_hits": {"restored": len(acc.restores),
                       "worker_cache": acc.cached_inputs + sum(
                           1 for t in acc.transfers if t.get("source") == "cache")},
        "workers": len(acc.workers),
        "running": len(acc.running), "waiting": len(acc.waiting),
        "in_flight": len(_moving(acc)),
    }


def _planned(acc: _Accumulated) -> dict:
    """Rules by action: the plan's own counts (a run records each rule's plan as it reaches
    it, so a run going on or killed has not recorded them all), else the plans counted."""
    if acc.counted is not None:
        got = {a: acc.counted.get(a) for a in ("run", "restore", "skip")}
        if all(isinstance(n, int) and n >= 0 for n in got.values()):
            return {a: n for a, n in got.items() if n}
    planned = defaultdict(int)
    for p in acc.plans.values():
        planned[p.get("action", "run")] += 1
    return dict(planned)


def _num(x) -> float:
    return x if isinstance(x, (int, float)) else 0.0


def _bytes_by_source(transfers: Iterable[Mapping]) -> dict:
    by = defaultdict(int)
    for t in transfers:
        by[t.get("source") or "unknown"] += int(_num(t.get("size")))
    return dict(by)


# --- the timeline -------------------------------------------------------------------------


def _timeline(acc: _Accumulated, t0: float, end_t, row: Mapping) -> tuple[dict, list]:
    """Bars in columns (lane, start, end, kind, rule row, status, label) and the lane names.

    Each worker's bars are packed into slots, first fit by start time: a slot is a lane, so
    the figure shows how full each worker was, as TaskVine's does.
    """
    by_worker: dict[str, list] = defaultdict(list)
    for start, end in acc.tasks:
        _add(by_worker, start.get("worker"), start.get("t"), _ended(start, end),
             _TASK_KIND.get(_plan_kind(acc, start.get("rule")), "command"),
             row.get(start.get("rule")), end.get("status"), "")
    for rid, start in acc.started.items():
        _add(by_worker, start.get("worker"), start.get("t"), end_t,
             _TASK_KIND.get(_plan_kind(acc, rid), "command"), row.get(rid), "running", "")
    for lib in acc.libraries:
        _add(by_worker, lib.get("worker"), lib.get("start", lib.get("t")),
             lib.get("end", lib.get("t")), "library start", None, "ok",
             str(lib.get("library", "")))
    for tr in acc.transfers + acc.failed_transfers:
        _add(by_worker, tr.get("to_worker"), tr.get("start", tr.get("t")),
             tr.get("end", tr.get("t")), "transfer", None,
             "failed" if tr.get("ok") is False else tr.get("source") or "",
             f"{tr.get('file', '')} ({human_bytes(tr.get('size'))} from {_source(tr)})")
    for rs in acc.restores:
        _add(by_worker, RESTORE_LANE, rs.get("t"), rs.get("t"), "restore",
             row.get(rs.get("rule")), "ok", "")
    columns = {name: [] for name in ("lane", "start", "end", "kind", "rule", "status", "label")}
    lanes: list[str] = []
    for worker in _worker_order(acc, by_worker):
        slots: list[float] = []  # the end of the last bar in each slot
        first_lane = len(lanes)
        for start, end, kind, rid, status, label in sorted(by_worker[worker],
                                                           key=lambda b: (b[0], b[1])):
            slot = next((i for i, free in enumerate(slots) if free <= start), len(slots))
            if slot == len(slots):
                slots.append(end)
                lanes.append(f"{worker} #{slot + 1}")
            slots[slot] = end
            for name, value in zip(columns, (first_lane + slot, _rel(start, t0),
                                             _rel(end, t0), kind, rid, status, label),
                                   strict=True):
                columns[name].append(value)
    return columns, lanes


def _ended(start: Mapping, end: Mapping):
    """When a task's command ended: its start plus the wall time the worker measured, when
    known (the `end` event is when the manager heard of it, which can be later: a worker
    reports finished commands in batches)."""
    t, wall = end.get("t"), end.get("wall_s")
    if isinstance(wall, (int, float)) and isinstance(start.get("t"), (int, float)):
        return min(t, start["t"] + wall) if isinstance(t, (int, float)) else start["t"] + wall
    return t


def _plan_kind(acc: _Accumulated, rid) -> str:
    plan = acc.plans.get(rid)
    return plan.get("kind", "command") if plan else "command"


def _add(by_worker, worker, start, end, kind, rid, status, label) -> None:
    if not isinstance(start, (int, float)):
        return
    end = end if isinstance(end, (int, float)) and end >= start else start
    by_worker[str(worker) if worker is not None else RESTORE_LANE].append(
        (start, end, kind, rid, status, label))


def _worker_order(acc: _Accumulated, by_worker) -> list[str]:
    """Workers in the order they joined; the manager's own lane (restores) first."""
    joined = {str(w): info.get("joined") or 0 for w, info in acc.workers.items()}
    return sorted(by_worker, key=lambda w: (w != RESTORE_LANE, joined.get(w, math.inf), w))


def _source(tr: Mapping) -> str:
    src = tr.get("source") or "?"
    return f"{src} {tr['from_worker']}" if src == "peer" and tr.get("from_worker") else src


def human_bytes(n) -> str:
    """`1.5 MB`: decimal units, as the page shows them."""
    if n is None:
        return "-"
    n = _num(n)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""  # pragma: no cover


# --- rules and resources ------------------------------------------------------------------

DECLARED = ("cores", "memory_mb", "disk_mb", "wall_time_s")
_MEASURED = (("cores", None, 2), ("cpu_s", "cpu_s", 3), ("memory_mb", "mem_peak_mb", 1),
             ("disk_mb", "disk_mb", 1), ("wall_time_s", "wall_s", 3))
_RULE_COLUMNS = ("id", "label", "category", "kind", "action", "reason", "key", "inputs",
                 "outputs", "input_keys", "output_keys", "status", "worker", "attempt",
                 "command", "location")


def _rules(acc: _Accumulated) -> dict:
    """Every planned rule, in columns (a 10,000-rule page stays small): what it is, what it
    declared, and what its last run measured (None where it did not run)."""
    cols: dict = {name: [] for name in _RULE_COLUMNS}
    made = {out for plan in acc.plans.values() for out in plan.get("outputs") or ()}
    declared: dict = {name: [] for name in DECLARED}
    measured: dict = {name: [] for name, _, _ in _MEASURED}
    for rid, plan in acc.plans.items():
        end = acc.last_end.get(rid) or {}
        for name, value in (
                ("id", rid), ("label", plan.get("label", f"rule {rid}")),
                ("category", plan.get("category")), ("kind", plan.get("kind")),
                ("action", plan.get("action")), ("reason", plan.get("reason")),
                ("key", plan.get("key")), ("inputs", list(plan.get("inputs") or ())),
                ("outputs", list(plan.get("outputs") or ())),
                ("input_keys", _keys_of(plan, list(plan.get("inputs") or ()), made)),
                ("output_keys", _keys_of(plan, _capped(plan.get("outputs")))),
                ("status", end.get("status")), ("worker", end.get("worker")),
                ("attempt", end.get("attempt")), ("command", plan.get("command")),
                ("location", plan.get("location"))):
            cols[name].append(value)
        res = plan.get("resources") or {}
        for name in DECLARED:
            declared[name].append(res.get(name))
        for name, value in _measured(end).items():
            measured[name].append(value)
    cols["declared"], cols["measured"] = declared, measured
    return cols


def _keys_of(plan: Mapping, paths: list, made=frozenset()) -> list | None:
    """The keys of `paths`, some of a rule's inputs or outputs (its plan's `files`), in
    order; None for a file in `made`: its producer's row has its key (the page looks it up
    there)."""
    keys = plan.get("files")
    if not isinstance(keys, Mapping):
        return None
    return [None if p in made else keys.get(p) for p in paths]


def _short(text, most: int = 300):
    """A command as the page shows it: long ones are cut (the Vinefile has them whole)."""
    if not isinstance(text, str) or len(text) <= most:
        return text
    return text[:most] + " ..."


def _capped(paths) -> list:
    paths = list(paths or ())
    if len(paths) <= MAX_FILES:
        return paths
    return paths[:MAX_FILES] + [f"... and {len(paths) - MAX_FILES} more"]


def _measured(end: Mapping) -> dict:
    wall, cpu = end.get("wall_s"), end.get("cpu_s")
    out = {"cores": cpu / wall if isinstance(cpu, (int, float)) and wall else None}
    for name, field, digits in _MEASURED:
        value = out[name] if field is None else end.get(field)
        out[name] = round(value, digits) if isinstance(value, (int, float)) else None
    return out


def _categories(rules: Mapping) -> list[dict]:
    """Per category: the largest declared and measured of each resource, and what to ask for."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, category in enumerate(rules["category"]):
        groups[category or "default"].append(i)
    out = []
    for name in sorted(groups):
        rows = groups[name]
        ran = [i for i in rows if rules["status"][i] is not None]
        declared = {k: _most(rules["declared"][k][i] for i in rows) for k in DECLARED}
        measured = {k: _most(rules["measured"][k][i] for i in ran) for k in DECLARED}
        out.append({"name": name, "rules": len(rows), "ran": len(ran),
                    "declared": declared, "measured": measured, "suggest": suggest(measured)})
    return out


def _most(values) -> float | None:
    known = [v for v in values if isinstance(v, (int, float))]
    return max(known) if known else None


def suggest(measured: Mapping) -> dict:
    """What to declare next time from the largest measured use: whole cores, and a margin
    above the peaks (a quarter for memory and disk, half for wall time: a rerun on other
    inputs or a busier node varies more in time than in size)."""
    def up(value, factor):
        return None if value is None else max(1, math.ceil(value * factor))

    return {"cores": up(measured.get("cores"), 1.0),
            "memory_mb": up(measured.get("memory_mb"), 1.25),
            "disk_mb": up(measured.get("disk_mb"), 1.25),
            "wall_time_s": up(measured.get("wall_time_s"), 1.5)}


# --- workers, transfers, failures, now ------------------------------------------------------


def _workers(acc: _Accumulated, t0: float) -> list[dict]:
    tasks: dict[str, int] = defaultdict(int)
    busy: dict[str, float] = defaultdict(float)
    for start, end in acc.tasks:
        worker = str(start.get("worker"))
        tasks[worker] += 1
        busy[worker] += max(0.0, _num(_ended(start, end)) - _num(start.get("t")))
    running = defaultdict(int)
    for start in acc.started.values():
        running[str(start.get("worker"))] += 1
    names = {str(w) for w in acc.workers} | set(tasks) | {str(w) for w in acc.cache}
    rows = []
    for name in names:
        info = acc.workers.get(name, {})
        series = acc.cache.get(name, [])
        rows.append({"id": name, "host": info.get("host"), "cores": info.get("cores"),
                     "memory_mb": info.get("memory_mb"), "disk_mb": info.get("disk_mb"),
                     "joined": _rel(info.get("joined"), t0), "left": _rel(info.get("left"), t0),
                     "reason": info.get("reason"), "tasks": tasks[name],
                     "busy_s": round(busy[name], 3), "running": running[name],
                     "cache_bytes": series[-1][1] if series else None,
                     "cache": [[_rel(t, t0), b] for t, b in series]})
    rows.sort(key=lambda w: (w["joined"] is None, w["joined"] or 0, w["id"]))
    return rows


def _transfers(acc: _Accumulated) -> dict:
    per_worker: dict[str, dict] = defaultdict(lambda: defaultdict(int))
    for tr in acc.transfers:
        to = tr.get("to_worker")  # none: an output on its way back to the manager
        per_worker[RESTORE_LANE if to is None else str(to)][tr.get("source") or "unknown"] \
            += int(_num(tr.get("size")))
    return {"count": len(acc.transfers), "failed": len(acc.failed_transfers),
            "by_source": _bytes_by_source(acc.transfers),
            "per_worker": {w: dict(by) for w, by in sorted(per_worker.items())}}


def _failures(acc: _Accumulated) -> list[dict]:
    rows = []
    for rid, end in sorted(acc.last_end.items(), key=lambda kv: str(kv[0])):
        if end.get("status") != "failed":
            continue
        plan = acc.plans.get(rid, {})
        rows.append({"rule": rid, "label": _label(acc, rid), "command": plan.get("command"),
                     "location": plan.get("location"), "worker": end.get("worker"),
                     "host": end.get("host"), "exit": end.get("exit"),
                     "signal": end.get("signal"), "attempt": end.get("attempt"),
                     "message": end.get("message"), "stderr": end.get("stderr") or ""})
    return rows


def _now_row(acc: _Accumulated, rid, t0: float, since: str) -> dict:
    ev = acc.started.get(rid, {}) if since == "start" else {}
    t = ev.get("t") if since == "start" else acc.submitted.get(rid)
    return {"rule": rid, "label": _label(acc, rid), "worker": ev.get("worker"),
            "since": _rel(t, t0)}


def _moving(acc: _Accumulated) -> list[Mapping]:
    """The transfers started and not ended; none once the run ended."""
    return [] if acc.end is not None else list(acc.moving.values())


def _in_flight(acc: _Accumulated, t0: float) -> list[dict]:
    rows = [{"file": tr.get("file") or tr.get("key"), "from": _source(tr),
             "to": tr.get("to_worker"), "size": tr.get("size"),
             "since": _rel(tr.get("start", tr.get("t")), t0)} for tr in _moving(acc)]
    rows.sort(key=lambda r: (r["since"] is None, r["since"] or 0, str(r["file"])))
    return rows
