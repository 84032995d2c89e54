"""The engine loop, driven by a scripted FakeExecutor that records what it was asked to run."""

import dataclasses
import os

import pytest

from vinemake.common.amounts import excess
from vinemake.common.errors import InputError
from vinemake.common.paths import remove_path
from vinemake.common.spec import Category, FileRef, Location, Resources, RuleSpec, Workflow
from vinemake.common.task import Measured, TaskResult
from vinemake.core.collection import Collection
from vinemake.core.engine import (
    PLAN_AHEAD,
    Engine,
    EngineOptions,
    effective_resources,
    failed_dir_name,
)
from vinemake.core.events import EventLog
from vinemake.core.graph import BuildGraph
from vinemake.core.journal import Journal
from vinemake.core.reporter import FakeReporter, summary_line
from vinemake.face.run import prepare, source_sizes


class FakeExecutor:
    """Completes each task at the next wait(): writes its outputs for "ok", else the scripted
    status. `script[name]` is a list of statuses consumed one per attempt (default "ok")."""

    def __init__(self, script=None, largest=None, stop_after=None, engine=None):
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.largest = largest
        self.submitted = []
        self.queue = []
        self.cancelled = False
        self.stop_after = stop_after
        self.engine = engine
        self.forgotten = []
        self.withdrawn = None
        self.returned = []

    def submit(self, task):
        self.submitted.append(task)
        self.queue.append(task)

    def wait(self, timeout=None):
        if self.stop_after is not None and len(self.submitted) >= self.stop_after:
            self.engine.stop(143)
            return []
        if self.returned:
            returned, self.returned = self.returned, []
            return returned
        done, self.queue = self.queue[:1], self.queue[1:]
        results = []
        for task in done:
            statuses = self.script.get(task.name, [])
            status = statuses.pop(0) if statuses else "ok"
            if status == "nothing":  # says ok, made nothing
                results.append(TaskResult(task.id, "ok", 0))
            elif status in ("ok", "link", "dangling"):
                for out in task.outputs:
                    if out.path and status == "ok":
                        with open(out.path, "w") as f:
                            f.write(f"{task.command}\n")
                    elif out.path:  # the output is a symbolic link, to a file or nowhere
                        target = out.path + ".target"
                        if status == "link":
                            with open(target, "w") as f:
                                f.write("made through a link\n")
                        os.symlink(target, out.path)
                results.append(TaskResult(task.id, "ok", 0, measured=Measured(wall_time_s=0.1)))
            else:
                results.append(TaskResult(task.id, status, 3, stderr_tail="boom\n",
                                          measured=Measured(memory_mb=12)))
        return results

    def cancel_all(self):
        self.cancelled = True

    def withdraw(self):  # what waits in the queue has not started: it comes back withdrawn
        self.withdrawn = [t.name for t in self.queue]
        self.returned = [TaskResult(t.id, "withdrawn") for t in self.queue]
        self.queue = []

    def forget(self, keys):  # with what had been submitted by then
        self.forgotten.append((list(keys), self.names()))

    def largest_worker(self):
        return self.largest

    def close(self):
        pass

    def names(self):
        return [t.name for t in self.submitted]


def rule(rid, targets, sources, command, **kw):
    return RuleSpec(id=rid, targets=tuple(FileRef(t, t) for t in targets),
                    sources=tuple(FileRef(s, s) for s in sources), command=command,
                    location=Location("Vinefile", rid + 1, 1), **kw)


def diamond():
    return [rule(0, ["a"], ["in.txt"], "make a"), rule(1, ["b"], ["a"], "make b"),
            rule(2, ["c"], ["a"], "make c"), rule(3, ["d"], ["b", "c"], "make d")]


def run_once(root, rules, executor=None, options=None, reporter=None, preps=None):
    wf = Workflow(os.path.join(root, "Vinefile"), tuple(rules))
    graph = BuildGraph.build(wf, root)
    prep = prepare(wf, graph, root)
    if preps is not None:
        preps.append(prep)
    executor = executor or FakeExecutor()
    reporter = reporter or FakeReporter()
    events = EventLog()  # kept in memory; the reporter hears every event, as in a run
    events.subscribe(reporter.event)
    prep.journal.open()
    engine = Engine(wf.rules, graph.deps, graph.dependents, prep.keys, prep.plan,
                    executor=executor, journal=prep.journal, store=prep.store,
                    reporter=reporter, root=root,
                    options=options or EngineOptions(), events=events)
    executor.engine = engine
    try:
        outcome = engine.run()
    finally:
        prep.journal.close()
    return outcome, executor, reporter


@pytest.fixture
def root(tmp_path):
    (tmp_path / "in.txt").write_text("input\n")
    return str(tmp_path)


def test_runs_in_dependency_order_then_does_nothing(root):
    outcome, ex, _ = run_once(root, diamond())
    assert ex.names() == ["a", "b", "c", "d"] and outcome.exit_code == 0
    task = ex.submitted[1]
    assert task.inputs[0].path == os.path.join(root, "a")
    assert task.outputs[0].path == os.path.join(root, "b")
    assert task.failed_dir == os.path.join(root, ".vinemake", "failed", "b")
    again, ex2, _ = run_once(root, diamond())
    assert ex2.names() == [] and again.skipped == 4


def test_editing_one_command_reruns_it_and_its_dependents(root):
    run_once(root, diamond())
    edited = diamond()
    edited[2] = rule(2, ["c"], ["a"], "make c --again")
    _, ex, _ = run_once(root, edited)
    assert ex.names() == ["c", "d"]


def test_a_run_holds_the_records_only_of_the_rules_it_may_yet_promote(root):
    run_once(root, diamond())
    with open(os.path.join(root, "b"), "w") as f:
        f.write("edited by hand\n")  # b runs again with its old key: d may have to follow
    preps = []
    outcome, ex, _ = run_once(root, diamond(), preps=preps)
    assert ex.names() == ["b"] and outcome.skipped == 3  # the same bytes again: d stays
    keys = preps[0].keys
    assert set(preps[0].journal.state.done) == {keys.key_of(3)}
    assert set(preps[0].journal.state.files) == {"a", "b", "c", "d"}
    assert preps[0].journal.state.files["b"].key == keys.outputs_of(1)[0].key
    replayed = Journal(os.path.join(root, ".vinemake", "journal")).state  # as the next run
    assert set(replayed.done) == {keys.key_of(r) for r in range(4)}


def test_failure_stops_dependents_writes_info_and_exits_1(root):
    outcome, ex, rep = run_once(root, diamond(), FakeExecutor({"b": ["failed"]}))
    assert outcome.exit_code == 1 and outcome.failed == ("b",)
    assert "d" not in ex.names()
    info = open(os.path.join(root, ".vinemake", "failed", "b", "INFO")).read()
    assert info.splitlines()[:6] == ["rule: b", "location: Vinefile:2:1", "command: make b",
                                     "status: failed", "exit code: 3", "reason: -"]
    assert info.endswith("stderr tail:\nboom\n")
    assert ("failed", "b", "exit code 3") in rep.events
    # c, submitted with b, was withdrawn when b failed. Next run: those and what waited.
    _, ex2, _ = run_once(root, diamond())
    assert ex2.names() == ["b", "c", "d"]


def test_without_keep_going_what_has_not_started_is_withdrawn_after_a_failure(root):
    rules = [rule(0, ["x"], [], "x"), rule(1, ["y"], [], "y"), rule(2, ["z"], [], "z")]
    outcome, ex, rep = run_once(root, rules, FakeExecutor({"x": ["failed"]}))
    assert ex.names() == ["x", "y", "z"]  # all three were ready and submitted together
    assert ex.withdrawn == ["y", "z"]  # not started when x failed: as make, start no more
    assert (outcome.ran, outcome.failed, outcome.not_run) == ((), ("x",), 2)
    assert not os.path.exists(os.path.join(root, "y"))
    assert [e for e in rep.events if e[0] == "withdrawn"] == [("withdrawn", "y"),
                                                              ("withdrawn", "z")]
    wf = Workflow(os.path.join(root, "Vinefile"), tuple(rules))
    reasons = prepare(wf, BuildGraph.build(wf, root), root).plan.reasons
    assert [reasons[rid].text for rid in range(3)] == ["failed last time", "never built",
                                                       "never built"]  # not "interrupted"
    outcome, ex, _ = run_once(root, [rule(0, ["p"], [], "p"), rule(1, ["q"], ["p"], "q"),
                                     rule(2, ["r"], ["q"], "r"), rule(3, ["s"], [], "s")],
                              FakeExecutor({"p": ["failed"]}))
    assert (ex.names(), ex.withdrawn, outcome.not_run) == (["p", "s"], ["s"], 3)


def test_an_output_that_is_a_link_is_journalled_as_its_target_and_stored_as_a_link(root):
    rules = [rule(0, ["x"], [], "x"), rule(1, ["y"], [], "y")]
    outcome, _, rep = run_once(root, rules, FakeExecutor({"x": ["link"], "y": ["dangling"]}),
                               options=EngineOptions(keep_going=True))
    assert (outcome.ran, outcome.failed) == (("x",), ("y",))
    wf = Workflow(os.path.join(root, "Vinefile"), tuple(rules))
    prep = prepare(wf, BuildGraph.build(wf, root), root)
    x = prep.journal.state.files["x"]
    assert (x.size, x.mtime_ns) == (len("made through a link\n"),
                                    os.stat(os.path.join(root, "x")).st_mtime_ns)
    assert prep.plan.reasons[0].action == "skip"  # the stat the plan takes agrees
    assert prep.store.has(x.key)  # the link itself is stored, its stamp its own lstat
    # A link that leads nowhere is no output (the plan would find it missing every time).
    assert "y" not in prep.journal.state.files and prep.plan.reasons[1].action == "run"
    info = open(os.path.join(root, ".vinemake", "failed", "y", "INFO")).read()
    assert "output 'y' is a symbolic link to nothing at its path" in info


def test_an_ok_result_whose_output_path_cannot_exist_is_a_missing_output(root):
    with open(os.path.join(root, "d"), "w") as f:  # so d/x can never be there (ENOTDIR)
        f.write("a file, not a directory\n")
    outcome, _, _ = run_once(root, [rule(0, ["d/x"], [], "x")],
                             FakeExecutor({"d/x": ["nothing"]}))
    assert outcome.failed == ("d/x",)
    failed = os.path.join(root, ".vinemake", "failed")
    info, = [os.path.join(d, "INFO") for d, _, files in os.walk(failed) if "INFO" in files]
    assert "output 'd/x' is not at its path after the run" in open(info).read()


def test_restoring_onto_a_link_to_the_same_entry_leaves_no_temporary_file(root):
    rules = [rule(0, ["x"], [], "x")]
    run_once(root, rules)
    wf = Workflow(os.path.join(root, "Vinefile"), tuple(rules))
    prep = prepare(wf, BuildGraph.build(wf, root), root)
    key = prep.journal.state.files["x"].key
    assert prep.store.restore(key, os.path.join(root, "x"))  # x is that entry's inode already
    assert sorted(n for n in os.listdir(root) if n.startswith("x")) == ["x"]


def test_keep_going_runs_everything_independent(root):
    rules = [rule(0, ["x"], [], "x"), rule(1, ["y"], ["x"], "y"), rule(2, ["z"], [], "z"),
             rule(3, ["w"], ["z"], "w")]
    ex = FakeExecutor({"x": ["failed"]})
    outcome, ex, _ = run_once(root, rules, ex, EngineOptions(keep_going=True))
    assert ex.names() == ["x", "z", "w"] and outcome.failed == ("x",)


def test_retries_resubmit_with_next_attempt(root):
    ex = FakeExecutor({"a": ["failed", "lost"]})
    outcome, ex, rep = run_once(root, diamond()[:1], ex, EngineOptions(retries=2))
    assert [t.attempt for t in ex.submitted] == [1, 2, 3] and outcome.exit_code == 0
    assert ("retrying", "a", 1, "exit code 3") in rep.events
    rules = [rule(0, ["a"], ["in.txt"], "make a differently", retries=1)]
    outcome, ex, _ = run_once(root, rules, FakeExecutor({"a": ["failed", "failed"]}))
    assert len(ex.submitted) == 2 and outcome.failed == ("a",)


def test_a_rule_too_big_for_any_worker_is_refused_by_name(root):
    rules = [rule(0, ["a"], [], "make a", resources=Resources(cores=8))]
    ex = FakeExecutor(largest=Resources(cores=2, memory_mb=1000))
    with pytest.raises(InputError) as err:
        run_once(root, rules, ex)
    assert str(err.value) == ("Vinefile:1:1: rule 'a' needs cores 8 but the largest worker "
                              "offers 2")
    assert ex.submitted == [] and ex.cancelled
    assert err.value.exit_code == 2
    assert excess(Resources(memory_mb=10), Resources(memory_mb=5)) == \
        "needs memory 10 MB but the largest worker offers 5 MB"


def test_outputs_are_stored_and_restored_without_running(root):
    run_once(root, diamond())
    for name in "abcd":
        os.unlink(os.path.join(root, name))
    outcome, ex, rep = run_once(root, diamond())
    assert ex.names() == [] and sorted(outcome.restored) == ["a", "b", "c", "d"]
    assert open(os.path.join(root, "d")).read() == "make d\n"


def test_gc_deletes_intermediates_after_last_consumer_but_not_outputs(root):
    outcome, _, _ = run_once(root, diamond(), options=EngineOptions(
        gc=Collection("ref_cnt"), protected=frozenset({"d", "in.txt"})))
    assert not any(os.path.exists(os.path.join(root, n)) for n in "abc")
    assert os.path.exists(os.path.join(root, "d")) and os.path.exists(os.path.join(root,
                                                                                   "in.txt"))
    _, ex, _ = run_once(root, diamond())
    assert ex.names() == []


def test_stop_request_cancels_and_exits_143(root):
    rules = [rule(i, [f"o{i}"], [], f"c{i}") for i in range(5)]
    ex = FakeExecutor(stop_after=1)
    outcome, ex, _ = run_once(root, rules, ex)
    assert outcome.exit_code == 143 and ex.cancelled


@pytest.mark.parametrize("name", ["out.1", "a b,c=d+e@f~g_h-i", "mydir/1.txt", "x%y", "ü.txt",
                                  "a:b", "", "..", "tab\there", "q?#&"])
def test_failed_dir_name_is_quote_with_its_safe_set(name):
    from urllib.parse import quote

    assert failed_dir_name(name) == quote(name, safe=" .,_-+=@")


def test_failed_dir_name_keeps_nested_targets_in_one_directory():
    assert failed_dir_name("mydir/1.txt") == "mydir%2F1.txt"


class LyingExecutor(FakeExecutor):
    """Reports "ok" without making the outputs."""

    def wait(self, timeout=None):
        done, self.queue = self.queue[:1], self.queue[1:]
        return [TaskResult(t.id, "ok", 0) for t in done]


def test_an_ok_result_without_its_output_is_a_failure_not_a_crash(root):
    outcome, _, rep = run_once(root, diamond()[:1], LyingExecutor())
    assert outcome.failed == ("a",)
    assert ("failed", "a", "missing output: output 'a' is not at its path after the run") \
        in rep.events


def test_a_temp_output_read_by_a_local_rule_comes_back_and_is_then_up_to_date(root):
    rules = [rule(0, ["a"], ["in.txt"], "make a", temp=True),
             rule(1, ["b"], ["a"], "make b", local=True)]
    outcome, ex, _ = run_once(root, rules)
    assert outcome.exit_code == 0
    assert ex.submitted[0].outputs[0].path == os.path.join(root, "a")
    again, ex2, _ = run_once(root, rules)
    assert ex2.names() == [] and again.skipped == 2


def test_a_temp_or_remote_output_read_only_on_workers_stays_there(root):
    rules = [rule(0, ["a"], ["in.txt"], "make a", temp=True), rule(1, ["b"], ["a"], "make b"),
             rule(2, ["c"], ["b"], "make c"), rule(3, ["d"], ["c"], "make d", subworkflow=True)]
    _, ex, _ = run_once(root, rules, options=EngineOptions(remote=frozenset({1, 2})))
    assert [t.outputs[0].path for t in ex.submitted] == [
        None, None, os.path.join(root, "c"), os.path.join(root, "d")]


def test_tasks_carry_their_rules_batch_options_only_when_workers_are_batch_jobs(root):
    rules = [rule(0, ["a"], ["in.txt"], "make a", batch_options="--comment=x"),
             rule(1, ["b"], ["in.txt"], "make b")]
    _, ex, _ = run_once(root, rules, options=EngineOptions(batch_options=True))
    assert [t.batch_options for t in ex.submitted] == ["--comment=x", ""]
    _, ex, _ = run_once(root, [rule(0, ["c"], ["in.txt"], "make c", batch_options="--x")])
    assert [t.batch_options for t in ex.submitted] == [""]


def test_a_rule_takes_each_resource_it_leaves_unset_from_its_category():
    rule = RuleSpec(id=0, targets=(FileRef("o", "o"),), sources=(), command=":",
                    location=Location("Vinefile", 1, 1), category="mpi",
                    resources=Resources(cores=2))
    cat = Category("mpi", Resources(cores=8, memory_mb=100, wall_time_s=60, mpi_processes=4))
    assert effective_resources(rule, {"mpi": cat}) == Resources(
        cores=2, memory_mb=100, wall_time_s=60, mpi_processes=4)


def chain_with_temps(**b_kw):
    """in.txt -> a (@temp) -> b (@temp) -> c, and a is read by b and d."""
    return [rule(0, ["a"], ["in.txt"], "make a", temp=True),
            rule(1, ["b"], ["a"], "make b", temp=True, **b_kw),
            rule(2, ["c"], ["b"], "make c"), rule(3, ["d"], ["a"], "make d")]


def test_source_sizes_are_named_as_the_engine_names_inputs(root, tmp_path):
    with open(os.path.join(root, "in.txt"), "w") as f:
        f.write("12345")
    outside = tmp_path / "outside.dat"
    outside.write_bytes(b"x" * 7)
    rules = [rule(0, ["x"], ["in.txt"], "x"), rule(1, ["y"], ["x"], "y")]
    rules[0] = dataclasses.replace(rules[0], sources=(
        FileRef("in.txt", "in.txt"), FileRef(str(outside), "outside.dat")))
    wf = Workflow(os.path.join(root, "Vinefile"), tuple(rules))
    prep = prepare(wf, BuildGraph.build(wf, root), root)
    # Keyed like TaskFile inputs (the workflow path), so the manager sees real sizes.
    assert source_sizes(prep, root) == {"in.txt": 5, str(outside): 7}


def key_of(root, rules, path):
    wf = Workflow(os.path.join(root, "Vinefile"), tuple(rules))
    return prepare(wf, BuildGraph.build(wf, root), root).keys.files[path]


def test_a_remote_file_is_forgotten_once_its_last_reader_succeeded(root):
    rules = chain_with_temps()
    a, b = key_of(root, rules, "a"), key_of(root, rules, "b")
    outcome, ex, _ = run_once(root, rules)
    assert outcome.exit_code == 0 and ex.names() == ["a", "b", "d", "c"]
    # a after both its readers (b, d), b after c; c and d are workflow outputs: never
    assert ex.forgotten == [([a], ["a", "b", "d", "c"]), ([b], ["a", "b", "d", "c"])]


def test_a_reader_that_fails_and_is_retried_still_has_its_input(root):
    rules = [rule(0, ["a"], ["in.txt"], "make a", temp=True), rule(1, ["b"], ["a"], "make b")]
    a = key_of(root, rules, "a")
    outcome, ex, _ = run_once(root, rules, FakeExecutor({"b": ["failed", "ok"]}),
                              EngineOptions(retries=1))
    assert outcome.exit_code == 0 and ex.names() == ["a", "b", "b"]
    assert ex.forgotten == [([a], ["a", "b", "b"])]


def test_with_keep_going_a_reader_failed_for_good_keeps_its_input(root):
    rules = [rule(0, ["a"], ["in.txt"], "make a", temp=True), rule(1, ["b"], ["a"], "make b"),
             rule(2, ["c"], ["a"], "make c")]
    outcome, ex, _ = run_once(root, rules, FakeExecutor({"b": ["failed"]}),
                              EngineOptions(keep_going=True))
    assert outcome.failed == ("b",) and ex.names() == ["a", "b", "c"]
    assert ex.forgotten == []


def test_workflow_outputs_and_cache_forever_files_are_never_forgotten(root):
    rules = [rule(0, ["a"], ["in.txt"], "make a", temp=True), rule(1, ["b"], ["a"], "make b"),
             rule(2, ["e"], ["in.txt"], "make e", temp=True, cache_forever=True),
             rule(3, ["f"], ["e"], "make f")]
    _, ex, _ = run_once(root, rules, options=EngineOptions(protected=frozenset({"a"})))
    assert ex.names() == ["a", "e", "b", "f"] and ex.forgotten == []


def test_files_kept_remote_by_option_are_forgotten_too(root):
    rules = diamond()
    a = key_of(root, rules, "a")
    _, ex, _ = run_once(root, rules, options=EngineOptions(remote=frozenset({0})))
    assert ex.forgotten == [([a], ["a", "b", "c"])]  # when c, its last reader, is done


def test_an_output_the_store_cannot_keep_is_still_built_and_the_summary_says_so(root):
    # The cache is an optimisation: a full or read-only store never fails the run, but the
    # user hears that those outputs will be rebuilt rather than restored next time.
    os.makedirs(os.path.join(root, ".vinemake"))
    with open(os.path.join(root, ".vinemake", "cache"), "w") as f:
        f.write("a file where the store's directory should be\n")
    outcome, _, _ = run_once(root, [rule(0, ["a"], ["in.txt"], "make a")])
    assert (outcome.ran, outcome.exit_code, outcome.uncached) == (("a",), 0, 1)
    assert summary_line(outcome).endswith("; 1 output could not be kept in the cache store")


class Recording(FakeReporter):
    """A FakeReporter that keeps every event as it came, too."""

    def __init__(self):
        super().__init__()
        self.record = []

    def event(self, ev):
        self.record.append(ev)
        super().event(ev)


def chain(n):
    return [rule(0, ["o0"], ["in.txt"], "make o0")] + [
        rule(i, [f"o{i}"], [f"o{i - 1}"], f"make o{i}") for i in range(1, n)]


def test_plans_come_as_the_run_reaches_each_rule_after_the_counts(root):
    n = PLAN_AHEAD + 50
    rec = Recording()
    outcome, ex, _ = run_once(root, chain(n), reporter=rec)
    assert outcome.exit_code == 0 and len(ex.submitted) == n
    kinds = [ev["ev"] for ev in rec.record]
    assert rec.record[0] == {"t": rec.record[0]["t"], "ev": "planned", "rules": n, "run": n,
                             "restore": 0, "skip": 0}
    plans = [(i, ev["rule"]) for i, ev in enumerate(rec.record) if ev["ev"] == "plan"]
    assert [rid for _, rid in plans] == list(range(n))  # each once, in plan order
    # the first task went out with its own plan written, not every rule's
    assert kinds.index("submit") < dict((rid, i) for i, rid in plans)[n - 1]
    first = {}
    for i, ev in enumerate(rec.record):
        first.setdefault(ev.get("rule"), (i, ev["ev"]))
    assert all(first[rid][1] == "plan" for rid in range(n))


def test_the_rules_a_failure_left_unrun_are_planned_at_the_end(root):
    n = 2 * PLAN_AHEAD + 5  # more than the loop's one pass plans ahead
    rec = Recording()
    outcome, ex, _ = run_once(root, chain(n), FakeExecutor({"o0": ["failed"]}), reporter=rec)
    assert ex.names() == ["o0"] and outcome.not_run == n - 1
    plans = [ev for ev in rec.record if ev["ev"] == "plan"]
    assert [(ev["label"], ev["action"], ev["reason"]) for ev in plans] == [
        (f"o{i}", "run", "never built") for i in range(n)]
    kinds = [ev["ev"] for ev in rec.record]
    assert kinds[-(n - PLAN_AHEAD - 1):] == ["plan"] * (n - PLAN_AHEAD - 1)  # after the end


def test_a_rebuild_plans_skipped_rules_too(root):
    run_once(root, chain(3))
    rec = Recording()
    outcome, ex, _ = run_once(root, chain(3), reporter=rec)
    assert ex.names() == [] and outcome.skipped == 3
    assert [(ev["ev"], ev.get("rule"), ev.get("action")) for ev in rec.record] == [
        ("planned", None, None), ("plan", 0, "skip"), ("plan", 1, "skip"), ("plan", 2, "skip")]
    assert rec.run.heading() is None  # nothing to run: no heading


# -- submitting ahead (EngineOptions.ahead) -----------------------------------------------

class HoldingExecutor(FakeExecutor):
    """Holds a task submitted ahead (Task.after) until what it waits for succeeded, as a
    worker does, and sends it back ("held_back") when one of those did not. `first`: a held
    task's result comes back before the results of what it waited for (outputs delivered
    late); `fail_after`: name -> status its result becomes after its held tasks ran (its
    outputs could not be delivered)."""

    def __init__(self, script=None, first=False, fail_after=None):
        super().__init__(script)
        self.first = first
        self.fail_after = dict(fail_after or {})
        self.held = []  # [task, ids still awaited]
        self.late = []  # results held back until the held tasks' own (first=True)

    def wait(self, timeout=None):
        out, self.returned = self.returned, []
        for r in super().wait(timeout) if self.queue else []:
            released, back = self._settle(r.task_id, r.ok)  # as the worker saw it end
            name = next(t.name for t in self.submitted if t.id == r.task_id)
            if r.ok and name in self.fail_after:
                r = TaskResult(r.task_id, self.fail_after.pop(name), reason="not delivered")
            out.append(r)
            self.queue[:0] = released
            out += [TaskResult(t.id, "held_back") for t in back]
        if not self.first:
            return out
        self.late += out
        if any(t.after for t in self.queue):
            return []  # held back while what was held runs
        out, self.late = self.late[::-1], []  # the held tasks' results first
        return out

    def submit(self, task):
        self.submitted.append(task)
        if task.after:
            self.held.append([task, set(task.after)])
        else:
            self.queue.append(task)

    def _settle(self, tid, ok):
        released, back = [], []
        for entry in list(self.held):
            task, waiting = entry
            if tid not in waiting:
                continue
            if ok:
                waiting.discard(tid)
                if not waiting:
                    self.held.remove(entry)
                    released.append(task)
            else:
                self.held.remove(entry)
                back.append(task)
                more_released, more_back = self._settle(task.id, False)
                back += more_back
        return released, back

    def withdraw(self):
        super().withdraw()
        self.returned += [TaskResult(t.id, "held_back") for t, _ in self.held]
        self.held = []


def journal_lines(root):
    import json
    with open(os.path.join(root, ".vinemake", "journal")) as f:
        return [(e["ev"], e["name"]) for e in map(json.loads, f) if e["ev"] in ("started",
                                                                               "done")]


def test_a_chain_is_submitted_two_rules_ahead_and_journalled_in_order(root):
    rec = Recording()
    outcome, ex, _ = run_once(root, chain(6), HoldingExecutor(), EngineOptions(ahead=True),
                              reporter=rec)
    assert outcome.ran == tuple(f"o{i}" for i in range(6))
    assert [(t.name, t.after) for t in ex.submitted] == [
        ("o0", ()), ("o1", (0,)), ("o2", (1,)), ("o3", (2,)), ("o4", (3,)), ("o5", (4,))]
    assert [e.get("after") for e in rec.record if e["ev"] == "submit"][:3] == [None, [0], [1]]
    # o3 went out once o1 was released (o0 ended), when o2 was one level deep
    kinds = [(e["ev"], e.get("rule")) for e in rec.record if e["ev"] in ("submit", "end")]
    assert kinds[:5] == [("submit", 0), ("submit", 1), ("submit", 2), ("end", 0),
                         ("submit", 3)]
    assert journal_lines(root) == [(ev, f"o{i}") for i in range(6) for ev in ("started", "done")]
    _, ex2, _ = run_once(root, chain(6), HoldingExecutor(), EngineOptions(ahead=True))
    assert ex2.names() == []


def test_a_held_rules_result_that_comes_first_counts_after_its_producers(root):
    rec = Recording()
    outcome, ex, _ = run_once(root, chain(4), HoldingExecutor(first=True),
                              EngineOptions(ahead=True), reporter=rec)
    assert outcome.ran == ("o0", "o1", "o2", "o3")
    assert journal_lines(root) == [(ev, f"o{i}") for i in range(4) for ev in ("started", "done")]
    assert [e["rule"] for e in rec.record if e["ev"] == "end"] == [0, 1, 2, 3]


def test_a_failed_producer_leaves_what_was_held_for_it_as_if_never_submitted(root):
    outcomes = []
    for ahead in (False, True):
        for name in os.listdir(root):
            if name != "in.txt":
                remove_path(os.path.join(root, name))
        rec = Recording()
        outcome, ex, _ = run_once(root, chain(5), HoldingExecutor({"o1": ["failed"]}),
                                  EngineOptions(ahead=ahead), reporter=rec)
        outcomes.append((outcome.ran, outcome.failed, outcome.not_run, outcome.withdrawn,
                         summary_line(dataclasses.replace(outcome, wall_time_s=0)),
                         journal_lines(root)))
    assert outcomes[0] == outcomes[1]
    assert outcomes[1][:4] == (("o0",), ("o1",), 3, 0)
    assert [e["rule"] for e in rec.record if e["ev"] == "held_back"] == [2, 3]
    assert not any(e["ev"] == "end" and e["rule"] > 1 for e in rec.record)


def test_a_held_rule_runs_again_after_its_producers_retry(root):
    outcome, ex, _ = run_once(root, chain(3), HoldingExecutor({"o0": ["failed"]}),
                              EngineOptions(ahead=True, retries=1))
    assert outcome.ran == ("o0", "o1", "o2")
    assert [(t.name, t.attempt, t.after) for t in ex.submitted] == [
        ("o0", 1, ()), ("o1", 1, (0,)), ("o2", 1, (1,)), ("o0", 2, ()), ("o1", 1, (0,)),
        ("o2", 1, (1,))]
    assert journal_lines(root) == [(ev, f"o{i}") for i in range(3) for ev in ("started", "done")]


def test_what_ran_ahead_of_a_producer_whose_result_then_failed_runs_again(root):
    # o0 succeeded on its worker, which started o1, but its outputs never arrived here: the
    # engine retries o0, and o1's result (which came first) counts for nothing.
    outcome, ex, _ = run_once(root, chain(2), HoldingExecutor(first=True,
                                                              fail_after={"o0": "error"}),
                              EngineOptions(ahead=True, retries=1))
    assert outcome.ran == ("o0", "o1")
    assert [(t.name, t.attempt) for t in ex.submitted] == [("o0", 1), ("o1", 1), ("o0", 2),
                                                          ("o1", 1)]
    assert journal_lines(root) == [("started", "o0"), ("done", "o0"), ("started", "o1"),
                                   ("done", "o1")]
