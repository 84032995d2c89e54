"""`vinemake log RULE|FILE`: a rule's last run, from the recorded runs, newest first.

It shows the rule's command, why it ran (`--explain`'s reason), where and when, how it ended,
what it measured against what it declared, where its inputs came from, and its stderr (the
end of it, kept for every rule). A rule up to date in the newest runs is looked up in older
ones, back to the last run that did something with it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from vinemake.common.errors import InputError
from vinemake.common.suggest import did_you_mean
from vinemake.core.engine import failed_dir_name
from vinemake.core.events import read_events, runs
from vinemake.core.graph import norm
from vinemake.core.statedir import StateDir
from vinemake.face.history import going_on
from vinemake.face.runview import human_bytes
from vinemake.face.trace import rule_rows, stamp

__all__ = ["show_log", "log_text", "find_rule"]

_DID = ("ran", "failed", "restored", "withdrawn", "interrupted")


def find_rule(rows: list[dict], name: str) -> dict | None:
    """The row whose rule is `name`: its label, one of its outputs, or `Vinefile:LINE`."""
    for row in rows:
        plan = row["plan"]
        if name == plan.get("label") or name in (plan.get("outputs") or ()):
            return row
    return None


def show_log(root: str, name: str) -> str:
    """The text `vinemake log NAME` prints for the workflow in `root`."""
    root = os.path.abspath(root)
    ids = runs(root)
    if not ids:
        raise InputError("no run recorded here yet")
    state = StateDir(root)
    wanted = _as_path(root, name)
    up_to_date_since = None
    not_reached_by = None  # the run going on, when it has not reached the rule yet
    for run_id in reversed(ids):
        events = read_events(state.events(run_id), _OneRule((wanted, name)))
        rows = rule_rows(events)
        row = find_rule(rows, wanted) or find_rule(rows, name)
        live = going_on(events)
        if row is None:
            # A run going on records each rule's plan as it reaches it (a few thousand a
            # second): a rule not reached yet is looked up in the runs before it.
            if live and run_id == ids[-1]:
                not_reached_by = run_id
            continue
        if live and row["status"] in ("interrupted", "not run"):  # this run goes on now
            row["status"] = "running" if row["start"] is not None else "waiting"
        if row["status"] in _DID or (live and row["status"] != "up to date"):
            tail = _read(state.stderr(run_id, failed_dir_name(row["label"])))
            return log_text(run_id, row, tail, up_to_date_since, not_reached_by)
        up_to_date_since = up_to_date_since or run_id
    plans = read_events(state.events(ids[-1]), lambda line: '"ev":"plan"' in line)
    known = [ev.get("label") for ev in plans]
    if up_to_date_since:
        raise InputError(f"'{name}' was up to date in every run recorded (the oldest kept "
                         f"is {ids[0]})")
    if not_reached_by:
        raise InputError(f"no rule '{name}' in the runs recorded here, nor yet in the run going "
                         f"on ({not_reached_by}), which records its rules as it reaches them: "
                         f"ask again later{did_you_mean(name, known)}")
    raise InputError(f"no rule '{name}' in the runs recorded here{did_you_mean(name, known)}")


class _OneRule:
    """Picks the lines of a run's record that `vinemake log NAME` reads, without parsing the
    others (a record of a million rules holds four million): the run's start and end, copies
    to workers, the plan of the rule called or making one of `names`, and that rule's events
    after it (a rule's plan is recorded before any other event of it)."""

    def __init__(self, names):
        self.names = set(names)
        self.quoted = [json.dumps(n, ensure_ascii=False) for n in self.names]
        self.mine: str | None = None  # `"rule":ID,` once its plan is found

    def __call__(self, line: str) -> bool:
        if '"ev":"run_' in line or '"ev":"transfer"' in line:
            return True
        if self.mine is not None:
            return self.mine in line
        if '"ev":"plan"' not in line or not any(q in line for q in self.quoted):
            return False
        try:
            plan = json.loads(line)
        except ValueError:
            return False
        if plan.get("label") in self.names or self.names & set(plan.get("outputs") or ()):
            self.mine = f'"rule":{plan.get("rule")},'
            return True
        return False


def _as_path(root: str, name: str) -> str:
    """`./out.txt`, `/abs/wf/out.txt` as the workflow names it: `out.txt`."""
    full = os.path.abspath(name)
    if full.startswith(root + os.sep):
        return norm(os.path.relpath(full, root))
    return name


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def log_text(run_id: str, row: Mapping, stderr: str, up_to_date_since: str | None,
             not_reached_by: str | None = None) -> str:
    """What is known of one rule's run, as `vinemake log` prints it; `not_reached_by`: the
    run going on, which has not reached the rule yet."""
    plan, end = row["plan"], row["end_event"]
    lines = [f"rule:      {row['label']} ({plan.get('location', '-')})",
             f"run:       {run_id}: {row['status']}"
             + (f", up to date since run {up_to_date_since}" if up_to_date_since else "")
             + (f"; the run going on ({not_reached_by}) has not reached it yet"
                if not_reached_by else ""),
             f"why:       {plan.get('action', '-')}, {plan.get('reason', '-')}",
             f"command:   {plan.get('command', '-')}"]
    if row["status"] == "restored":
        lines.append("           (restored from the cache: not run)")
        return "\n".join(lines) + "\n"
    where = row["worker"] or "-"
    if row["host"] and row["host"] != row["worker"]:
        where += f" ({row['host']})"
    lines += [f"worker:    {where}, attempt {row['attempt'] or '-'}",
              f"submitted: {stamp(row['submit'])}",
              f"started:   {stamp(row['start'])}",
              f"ended:     {stamp(row['end'])}"]
    how = end.get("message") or ("exit code 0" if end.get("status") == "ok" else "-")
    lines.append(f"outcome:   {how}")
    lines += _resources(plan.get("resources") or {}, end)
    if row["input_bytes"] is not None:
        lines.append(f"inputs:    {human_bytes(row['input_bytes'])}: "
                     f"{human_bytes(row['from_manager'])} from the manager, "
                     f"{human_bytes(row['from_peer'])} from peers, "
                     f"{human_bytes(row['from_cache'])} already there")
    if stderr:
        lines.append("stderr:")
        lines += [f"  {line}" for line in stderr.rstrip("\n").splitlines()]
    else:
        lines.append("stderr:    (empty)")
    if end.get("info"):
        lines.append(f"info:      {end['info']}")
    return "\n".join(lines) + "\n"


def _resources(declared: Mapping, end: Mapping) -> list[str]:
    wall, cpu = end.get("wall_s"), end.get("cpu_s")
    cores = round(cpu / wall, 2) if wall and cpu is not None else None
    rows = [("cores", declared.get("cores"), cores, ""),
            ("memory", declared.get("memory_mb"), end.get("mem_peak_mb"), " MB"),
            ("disk", declared.get("disk_mb"), end.get("disk_mb"), " MB"),
            ("wall time", declared.get("wall_time_s"), wall, " s")]
    out = ["resources: declared   measured"]
    for name, want, got, unit in rows:
        out.append(f"  {name:<9} {_num(want, unit):<10} {_num(got, unit)}")
    return out


def _num(x, unit: str) -> str:
    if x is None:
        return "-"
    return f"{x:g}{unit}"


