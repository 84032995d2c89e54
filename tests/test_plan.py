"""The plan: run / skip / restore with a Reason, from plain data only."""

import json

from vinemake.common.spec import FileRef, Location, RuleSpec
from vinemake.core.journal import replay
from vinemake.core.keys import compute_keys, source_key
from vinemake.core.plan import RESTORE, RUN, SKIP, PlanRule, make_plan


def rule(rid, targets, sources, command, **kw):
    return RuleSpec(id=rid, targets=tuple(FileRef(t, t) for t in targets),
                    sources=tuple(FileRef(s, s) for s in sources), command=command,
                    location=Location("Vinefile", rid + 1, 1), **kw)


CHAIN = [rule(0, ["x"], ["a"], "make x"), rule(1, ["y"], ["x"], "make y"),
         rule(2, ["z"], ["b"], "make z")]
SRC = {"a": source_key("a1"), "b": source_key("b1")}


def plan_rules(specs, keys):
    producer = {t.path: r.id for r in specs for t in r.targets}
    consumed = {producer[s.path] for r in specs for s in r.sources if s.path in producer}
    return {r.id: PlanRule(r.id, r.name, keys.key_of(r.id), keys.outputs_of(r.id), r.temp,
                           tuple((s.path, producer[s.path]) for s in r.sources
                                 if s.path in producer), r.id in consumed)
            for r in specs}


def built(specs, src, collected=()):
    """Journal lines and disk for a completed build of `specs`."""
    keys = compute_keys(specs, src)
    lines, disk = [], {}
    for r in specs:
        rk = keys.rules[r.id]
        outs = [] if r.temp else [[p, k, 1, 100 + r.id] for p, _, k in rk.outputs]
        lines.append(json.dumps({"ev": "done", "rule": rk.key, "name": r.name,
                                 "parts": rk.parts, "inputs": rk.inputs, "outputs": outs}))
        disk.update({p: (1, 100 + r.id) for p, _, _ in rk.outputs})
    lines += [json.dumps({"ev": "collected", "path": p}) for p in collected]
    for p in collected:
        disk[p] = None
    return lines, disk


def plan(specs, src, lines, disk, stored=frozenset()):
    keys = compute_keys(specs, src)
    return make_plan([r.id for r in specs], plan_rules(specs, keys), replay(lines), disk,
                     stored, keys.rules.__getitem__)


def texts(p):
    return {rid: (r.action, r.text) for rid, r in p.reasons.items()}


def test_first_build_runs_everything():
    p = plan(CHAIN, SRC, [], {})
    assert texts(p) == {0: (RUN, "never built"), 1: (RUN, "never built"),
                        2: (RUN, "never built")}


def test_second_run_with_nothing_changed_runs_nothing():
    lines, disk = built(CHAIN, SRC)
    p = plan(CHAIN, SRC, lines, disk)
    assert p.ids(RUN) == [] and {r.text for r in p.reasons.values()} == {"outputs current"}


def test_edited_command_reruns_that_rule_and_dependents_only():
    lines, disk = built(CHAIN, SRC)
    edited = [rule(0, ["x"], ["a"], "make x --fast")] + CHAIN[1:]
    assert texts(plan(edited, SRC, lines, disk)) == {
        0: (RUN, "command changed"), 1: (RUN, "input 'x' changed"), 2: (SKIP, "outputs current")}


def test_content_change_reruns_dependents():
    lines, disk = built(CHAIN, SRC)
    p = plan(CHAIN, dict(SRC, a=source_key("a2")), lines, disk)
    assert texts(p)[0] == (RUN, "input 'a' changed") and p.ids(RUN) == [0, 1]


def test_reordered_rules_rerun_nothing():
    lines, disk = built(CHAIN, SRC)
    moved = [rule(5, ["z"], ["b"], "make z"), rule(3, ["x"], ["a"], "make x"),
             rule(4, ["y"], ["x"], "make y")]
    assert plan(moved, SRC, lines, disk).ids(RUN) == []


def test_missing_or_modified_output_reruns_that_rule_only():
    lines, disk = built(CHAIN, SRC)
    p = plan(CHAIN, SRC, lines, dict(disk, x=None))
    assert texts(p)[0] == (RUN, "output 'x' missing") and p.ids(RUN) == [0]
    p = plan(CHAIN, SRC, lines, dict(disk, z=(5, 5)))
    assert texts(p)[2] == (RUN, "output 'z' modified since it was built")


def test_stored_outputs_are_restored():
    keys = compute_keys(CHAIN, SRC)
    stored = {k for rk in keys.rules.values() for _, _, k in rk.outputs}
    p = plan(CHAIN, SRC, [], {}, stored)
    assert texts(p)[1] == (RESTORE, "restored from cache (never built)")
    assert p.ids(RUN) == []


def test_failed_and_interrupted_rules_say_so():
    keys = compute_keys(CHAIN, SRC)
    lines = [json.dumps({"ev": "failed", "rule": keys.rules[0].key, "name": "x"}),
             json.dumps({"ev": "started", "rule": keys.rules[2].key, "name": "z"})]
    t = texts(plan(CHAIN, SRC, lines, {}))
    assert t[0] == (RUN, "failed last time") and t[2] == (RUN, "interrupted last time")


def test_collected_intermediate_is_not_rebuilt_unless_a_consumer_runs():
    lines, disk = built(CHAIN, SRC, collected=["x"])
    assert plan(CHAIN, SRC, lines, disk).ids(RUN) == []
    p = plan(CHAIN, SRC, lines, dict(disk, y=None))
    assert texts(p) == {0: (RUN, "intermediate 'x' needed by 'y'"),
                        1: (RUN, "output 'y' missing"), 2: (SKIP, "outputs current")}


def test_temp_outputs_are_made_only_for_a_consumer_that_runs():
    specs = [rule(0, ["t"], ["a"], "make t", temp=True), rule(1, ["y"], ["t"], "make y")]
    lines, disk = built(specs, SRC)
    assert plan(specs, SRC, lines, disk).ids(RUN) == []
    p = plan(specs, SRC, lines, dict(disk, y=None))
    assert texts(p)[0] == (RUN, "intermediate 't' needed by 'y'")
    keys = compute_keys(specs, SRC)
    stored = {keys.rules[1].outputs[0][2]}
    p = plan(specs, dict(SRC), [], {}, stored)
    assert texts(p) == {0: (SKIP, "temporary outputs not needed (never built)"),
                        1: (RESTORE, "restored from cache (never built)")}


def test_a_reader_of_bytes_that_changed_since_it_ran_runs_again():
    """A producer run again with the same key made other bytes, and vinemake stopped before
    their reader ran: the reader's record of what it read says it is stale."""
    keys = compute_keys(CHAIN, SRC)
    x = keys.rules[0]
    y = keys.rules[1]
    def done(rk, name, outs, seen):
        return json.dumps({"ev": "done", "rule": rk.key, "name": name, "parts": rk.parts,
                           "inputs": rk.inputs, "outputs": outs, "seen": seen})
    lines = [done(x, "x", [["x", x.outputs[0][2], 1, 100, "old"]], []),
             done(y, "y", [["y", y.outputs[0][2], 1, 101]], [["x", "old"]])]
    disk = {"x": (1, 100), "y": (1, 101)}
    assert texts(plan(CHAIN[:2], SRC, lines, disk))[1] == (SKIP, "outputs current")
    lines.append(done(x, "x", [["x", x.outputs[0][2], 1, 100, "new"]], []))
    assert texts(plan(CHAIN[:2], SRC, lines, disk)) == {
        0: (SKIP, "outputs current"),
        1: (RUN, "input 'x' has other bytes than when it last ran")}


class Asked(dict):
    """PlanRules that note which rules were asked for."""

    def __init__(self, *a):
        super().__init__(*a)
        self.asked = set()

    def __getitem__(self, rid):
        self.asked.add(rid)
        return super().__getitem__(rid)


def test_a_first_build_decides_the_rules_that_cannot_be_temporary_without_asking():
    specs = [rule(0, ["t"], ["a"], "make t", temp=True), rule(1, ["y"], ["t"], "make y"),
             rule(2, ["u"], ["a"], "make u", temp=True), rule(3, ["x"], ["b"], "make x")]
    keys = compute_keys(specs, SRC)
    full = plan_rules(specs, keys)
    ids = [r.id for r in specs]
    whole = make_plan(ids, full, replay([]), {}, frozenset(), keys.rules.__getitem__)
    asked = Asked(full)
    first = make_plan(ids, asked, replay([]), {}, frozenset(), keys.rules.__getitem__,
                      lambda rid: full[rid].producers, first_temps={0, 2})
    assert texts(first) == texts(whole) == {
        0: (RUN, "intermediate 't' needed by 'y'"), 1: (RUN, "never built"),
        2: (RUN, "never built"), 3: (RUN, "never built")}
    assert first.order == whole.order and list(first.reasons) == ids
    assert asked.asked == {0, 1, 2}  # the temporary ones, and y to name it as t's reader
