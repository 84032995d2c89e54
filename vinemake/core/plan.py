"""The plan: which rules run, which are skipped and which are restored, with a Reason for each.

Pure: it reads plain data (keys computed now, the journal's state, the stat of each target,
which output keys the store holds) and does no I/O.

A rule is *current* when the journal has a completion with the key computed now, each made
input it read still has the bytes it read then (keys name provenance: a producer run again
with the same key may have made other bytes), and each of its outputs on this host is at its
path with the (size, mtime_ns) recorded when it was put there (a touched output whose bytes
did not change was given its new stat before planning: edits.py). A stale rule whose outputs
are all in the store is restored instead of run. Outputs that never reach this host (`@temp`)
or were garbage-collected are not needed unless a rule that runs reads them: a backward pass in
reverse topological order makes their producers run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Set
from typing import NamedTuple

from vinemake.common.records import dataclass
from vinemake.core.journal import JournalState, part_map
from vinemake.core.keys import Output, RuleKey

__all__ = ["PlanRule", "Reason", "Plan", "make_plan", "RUN", "SKIP", "RESTORE"]

RUN, SKIP, RESTORE = "run", "skip", "restore"


class PlanRule(NamedTuple):
    """What the plan needs of a rule: its key, its outputs (path, sandbox, key), and
    `producers`, (input path, producing rule id). The parts and inputs its key was made of
    are asked for (`full_key`) only to say what changed since a previous build.

    A NamedTuple, made when the plan asks for it: a million are not held at once."""

    id: int
    name: str
    key: str
    outputs: tuple[Output, ...]
    temp: bool = False
    producers: tuple[tuple[str, int], ...] = ()
    consumed: bool = False  # some other rule reads one of its outputs (asked if temp only)


class Reason(NamedTuple):
    """What is done with a rule and why. The same Reason is shared by every rule it fits."""

    action: str
    text: str


_NEVER_BUILT = Reason(RUN, "never built")
_CURRENT = Reason(SKIP, "outputs current")


@dataclass(frozen=True)
class Plan:
    """An action and a Reason for every selected rule, in topological order."""

    order: tuple[int, ...]
    reasons: Mapping[int, Reason]

    def action(self, rid: int) -> str:
        return self.reasons[rid].action

    def ids(self, action: str) -> list[int]:
        return [rid for rid in self.order if self.reasons[rid].action == action]


Stat = tuple[int, int] | None  # (size, mtime_ns) of a target, None if absent


def make_plan(order: Sequence[int], rules: Mapping[int, PlanRule], journal: JournalState,
              disk: Mapping[str, Stat], stored: Set[str],
              full_key: Callable[[int], RuleKey],
              producers: Callable[[int], Sequence[tuple[str, int]]] | None = None,
              first_temps: Set[int] | None = None) -> Plan:
    """Decide every rule in `order` (topological, the selected rules only).

    `producers(rid)`, if given, stands for each PlanRule's own `producers`: asked only of
    rules that run while another does not. `first_temps`, given when nothing is recorded
    (no journal record, no store), holds the rules that may be temporary: every other rule
    is never built and runs, decided so without asking `rules` for it (a first build)."""
    if first_temps is None:
        reasons: dict[int, Reason] = {}
        todo: Sequence[int] | Set[int] = order
    else:
        reasons = dict.fromkeys(order, _NEVER_BUILT)
        todo = [rid for rid in first_temps if rid in reasons]
    others = 0  # rules that will not run: only their outputs can be missing for a runner
    for rid in todo:
        rule = rules[rid]
        why = staleness(rule, journal, disk, full_key)
        if why is None:
            reason = _CURRENT
        elif _restorable(rule, stored):
            reason = Reason(RESTORE, f"restored from cache ({why})")
        elif rule.temp and rule.outputs and rule.consumed:
            reason = Reason(SKIP, f"temporary outputs not needed ({why})")
        else:
            reason = _NEVER_BUILT if why == "never built" else Reason(RUN, why)
        others += reason.action != RUN
        reasons[rid] = reason
    if others:
        _pull_needed_inputs(order, rules, journal, reasons,
                            producers or (lambda rid: rules[rid].producers))
    return Plan(tuple(order), reasons)


def staleness(rule: PlanRule, journal: JournalState, disk: Mapping[str, Stat],
              full_key: Callable[[int], RuleKey]) -> str | None:
    """Why `rule` must be brought up to date, or None if it is current."""
    done = journal.done.get(rule.key) if journal.done else None
    if done is None:
        first = rule.outputs[0][0] if rule.outputs else None
        prev = journal.previous(rule.name, first) if journal.files or journal.by_name else None
        return _what_changed(rule, prev, journal, full_key)
    for path, content in done.seen:
        now = journal.files.get(path)
        if now is not None and now.content != content:
            return f"input '{path}' has other bytes than when it last ran"
    if rule.temp:
        return None
    for path, _, okey in rule.outputs:
        rec = journal.files.get(path)
        if rec is None:
            return f"output '{path}' missing"  # removed by --clean
        if rec.key != okey:
            return f"output '{path}' was made by another rule"
        if rec.collected:
            continue  # deleted by -g ref_cnt; pulled back only if a running rule needs it
        stat = disk.get(path)
        if stat is None:
            return f"output '{path}' missing"
        if stat != (rec.size, rec.mtime_ns):
            return f"output '{path}' modified since it was built"
    return None


def _what_changed(rule: PlanRule, prev, journal: JournalState,
                  full_key: Callable[[int], RuleKey]) -> str:
    if prev is None:
        if rule.key in journal.failed:
            return "failed last time"
        if rule.key in journal.incomplete:
            return "interrupted last time"
        return "never built"
    key = full_key(rule.id)
    before = part_map(prev)
    for name, value in key.parts:
        if before.get(name) != value:
            return f"{name} changed"
    old_inputs = dict(prev.inputs)
    for path, ikey in key.inputs:
        if path not in old_inputs:
            return f"input '{path}' added"
        if old_inputs[path] != ikey:
            return f"input '{path}' changed"
    now = {p for p, _ in key.inputs}
    for path in old_inputs:
        if path not in now:
            return f"input '{path}' removed"
    return "inputs renamed in the sandbox or outputs changed"


def _restorable(rule: PlanRule, stored: Set[str]) -> bool:
    outs = rule.outputs
    return bool(outs) and not rule.temp and all(k in stored for _, _, k in outs)


def _available(producer: PlanRule, path: str, reasons: Mapping[int, Reason],
               journal: JournalState) -> bool:
    """Will `path`, made by `producer`, be on this host for a consumer that runs?"""
    action = reasons[producer.id].action
    if action in (RUN, RESTORE):
        return not producer.temp
    if producer.temp:
        return False
    if action == SKIP and producer.key not in journal.done:
        return False  # skipped as "not needed" without ever being built
    rec = journal.files.get(path)
    return rec is not None and not rec.collected


def _pull_needed_inputs(order, rules, journal, reasons: dict[int, Reason],
                        producers: Callable[[int], Sequence[tuple[str, int]]]) -> None:
    """Make producers run when a running rule reads an output that is not on this host."""
    for rid in reversed(order):
        if reasons[rid].action != RUN:
            continue
        for path, pid in producers(rid):
            if pid not in reasons or reasons[pid].action == RUN:
                continue
            if not _available(rules[pid], path, reasons, journal):
                reasons[pid] = Reason(RUN, f"intermediate '{path}' needed by '{rules[rid].name}'")
