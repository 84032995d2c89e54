"""Glue between the CLI and the engine: options → keys → plan → engine → exit code.

`run`, `dry_run` and `clean` are what cli.py calls; each returns an exit code and raises only
VinemakeError subclasses, which the CLI prints. `prepare` is the pure-ish middle (hash sources,
compute keys, read the journal, make the plan) shared by all three and by tests.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import sys
import time
from collections.abc import Mapping, Set
from dataclasses import replace
from typing import TextIO

from vinemake.backends import BATCH_SYSTEMS
from vinemake.common.collector import collector_paused
from vinemake.common.errors import InfrastructureError, InputError, VinefileError, VinemakeError
from vinemake.common.process import identity
from vinemake.common.records import dataclass
from vinemake.common.spec import Resources, Workflow, is_url
from vinemake.common.trim import give_back_freed
from vinemake.core.confine import Confinement
from vinemake.core.edits import keep, settle
from vinemake.core.events import EventLog, start_run
from vinemake.core.filestate import FileState, output_stat, stat_or_none, write_snapshot
from vinemake.core.graph import BuildGraph, norm, read_line
from vinemake.core.journal import Journal, workflow_name
from vinemake.core.keys import Keys, Output, compute_keys
from vinemake.core.plan import RESTORE, RUN, SKIP, Plan, PlanRule, make_plan
from vinemake.core.reporter import make_reporter
from vinemake.core.statedir import StateDir
from vinemake.core.store import Store
from vinemake.core.urls import UrlMemo
from vinemake.face.listing import write_dry_run
from vinemake.face.uptodate import digest_of, nothing_built, nothing_to_do, snapshot_file

__all__ = ["run", "dry_run", "clean", "nothing_to_do", "prepare", "Prepared", "store_for"]


TRIM_RULES = 10_000  # workflows this large give back what planning freed (common/trim.py)
_tuple_new = tuple.__new__  # a NamedTuple's own __new__ is a Python function, called per rule


def store_for(root: str, cache_dir: str | None) -> Store:
    return Store(StateDir(root).store_path(cache_dir), shared=cache_dir is not None)


class _StoreView(Set):
    """The store as a set the plan can ask `key in`, looked up only for stale rules.

    A first build asks for every key of the workflow and nearly all are absent: a shard
    directory found missing answers for all of its keys with one stat, not a probe per key.
    (One created meanwhile by another workflow sharing the store costs a rerun, no more.)
    """

    def __init__(self, store: Store):
        self.store = store
        self._shards: dict[str, bool] = {}  # shard directory -> exists
        self.empty = not os.path.isdir(store.root)  # nothing stored yet: no key is there

    def __contains__(self, key) -> bool:
        if self.empty:
            return False
        shard = self.store.shard(key)
        exists = self._shards.get(shard)
        if exists is None:
            exists = self._shards[shard] = os.path.isdir(shard)
        return exists and self.store.has(key)

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0


@dataclass
class Prepared:
    """Everything computed before a run: the graph to run, keys, journal, store, plan."""

    graph: BuildGraph
    files: FileState
    keys: Keys
    journal: Journal
    store: Store
    plan: Plan
    resources_of: object
    edited: frozenset[str] = frozenset()  # outputs changed by hand since vinemake made them
    urls: UrlMemo | None = None


def remote_rules(workflow: Workflow, graph: BuildGraph) -> frozenset[int]:
    """--keep-intermediates-remote: rules all of whose outputs only other remote rules read.

    A rule with any output that is a workflow output (MAKEFLOW_OUTPUTS, or read by no rule)
    brings all of them back, so the journal never holds half a rule; so does one read by a
    LOCAL rule or a sub-workflow, which run in the workflow directory itself.
    """
    rules = workflow.rules
    protected = set(graph.outputs()) | {norm(p) for p in workflow.inputs or ()}
    return frozenset(
        rid for rid in graph.rule_ids
        if rules[rid].targets
        and all(norm(t.path) in graph.consumed and norm(t.path) not in protected
                for t in rules[rid].targets)
        and not any(rules[d].local or rules[d].subworkflow for d in graph.dependents[rid]))


def prepare(workflow: Workflow, graph: BuildGraph, root: str, targets=(),
            cache_dir: str | None = None, remote: frozenset[int] = frozenset(),
            save: bool = True, offline: bool = False) -> Prepared:
    """Hash sources, compute every key, read the journal and decide each rule.

    `remote` rules are planned like `@temp` ones: their outputs never reach this host.
    `save=False` (for -n) leaves the hash memo unwritten: a dry run writes nothing.
    URL sources are checked with their servers (`offline`: keyed as recorded).
    """
    with collector_paused():  # keys and plan: a few objects per rule, no cycles
        return _prepare(workflow, graph, root, targets, cache_dir, remote, save, offline)


def _prepare(workflow, graph, root, targets, cache_dir, remote, save, offline) -> Prepared:
    from vinemake.core.engine import effective_resources, stays_remote

    if targets:
        graph = graph.select(targets)
    rules = workflow.rules
    categories = {c.name: c for c in workflow.categories}
    files = FileState(StateDir(root).filestate)
    urls = UrlMemo(StateDir(root).urls)
    source_keys = {p: urls.key(p, offline) if is_url(p) else files.key(os.path.join(root, p))
                   for p in graph.sources}
    if save:
        files.save()
        urls.save()

    # Asked for each rule by the keys, and by the engine again; most rules share their
    # category and their own (often empty) resources, so the merge is made once per pair.
    memo: dict[tuple[str, Resources], Resources] = {}
    last = [None, None, None]  # the pair last asked for (hashing Resources is not free)

    def resources_of(rule):
        if rule.resources is last[1] and rule.category is last[0]:
            return last[2]
        pair = (rule.category, rule.resources)
        got = memo.get(pair)
        if got is None:
            got = memo[pair] = effective_resources(rule, categories)
        last[:] = (rule.category, rule.resources, got)
        return got

    order = [rules[rid] for rid in graph.order()]
    in_graph = set(graph.rule_ids)
    libs = [r for r in rules if r.library and r.id not in in_graph]
    keys = compute_keys(order + libs, source_keys, resources_of, graph.dir_members,
                        graph.producer, lazy=True)
    del order, in_graph
    journal = Journal(StateDir(root).journal, workflow=workflow_name(workflow.path, root))
    store = store_for(root, cache_dir)
    ids = [rid for rid in graph.order() if not rules[rid].library]
    disk = _disk(journal.state.files, rules, keys, graph.producer, files, root)
    _confined(rules, ids, root)
    edited = settle(journal, disk, root, graph.made_inside)
    stored = _StoreView(store)
    recorded = _recorded(journal.state) or not stored.empty
    planned = _PlanRules(rules, keys, graph, remote, stays_remote, recorded)
    temps = None if recorded else {rid for rid in ids if rules[rid].temp or rules[rid].mini
                                   or rid in remote}  # only these may not run at all
    plan = make_plan(ids, planned, journal.state, disk, stored,
                     keys.rules.__getitem__, planned.producers, temps)
    return Prepared(graph, files, keys, journal, store, plan, resources_of, edited, urls)


def _recorded(state) -> bool:
    """Has this workflow's journal any record at all?"""
    return bool(state.done or state.files or state.failed or state.incomplete
                or state.by_name)


class _PlanRules(Mapping):
    """Each selected rule's PlanRule, made when the plan asks for it (not held: at a million
    rules they would cost more than the keys); its producers asked for apart.

    With nothing `recorded` (no journal record, no store) no key can match anything, so
    none is made for the plan: its keys are "" (a dry run of a first build never keys)."""

    def __init__(self, rules, keys: Keys, graph: BuildGraph, remote: frozenset[int],
                 stays_remote, recorded: bool):
        self.rules, self.keys, self.graph, self.remote = rules, keys, graph, remote
        self.stays_remote = stays_remote
        self.recorded = recorded

    def __getitem__(self, rid: int) -> PlanRule:
        rule = self.rules[rid]
        if self.recorded:
            key, outputs = self.keys.key_of(rid), self.keys.outputs_of(rid)
        else:
            key, outputs = "", tuple([_tuple_new(Output, (norm(f.path), f.sandbox, ""))
                                      for f in rule.targets])
        # (Only a temporary or remote rule's outputs can stay remote: asked only for those,
        # and whether another rule reads them matters only then.)
        remote_only = bool(rule.temp or rule.mini or rid in self.remote) \
            and self.stays_remote(self.rules, self.graph.dependents, rid, self.remote)
        consumed = remote_only and any(p in self.graph.consumed for p, _, _ in outputs)
        return _tuple_new(PlanRule, (rid, rule.name, key, outputs, remote_only, (), consumed))

    def producers(self, rid: int) -> tuple[tuple[str, int], ...]:
        """(input path, producing rule id) of each input of `rid` that a rule makes."""
        producer = self.graph.producer
        return tuple([(p, producer[p]) for p in [norm(s.path) for s in self.rules[rid].sources]
                      if p in producer])

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0


def _disk(made, rules, keys: Keys, producer, files: FileState, root: str) -> dict:
    """The stat now of each output of a planned rule that the journal says was made here:
    of no other output can the plan ask (it asks the journal first). Not kept in `files`,
    which holds the sources' stats for the whole run (a stat is 300 bytes; a million)."""
    disk = {}
    for path in made:
        rid = producer.get(path)
        if rid is None or rid not in keys.rules or rules[rid].library:
            continue
        full = os.path.join(root, path)
        st = files.stats[full] if full in files.stats else stat_or_none(full)
        disk[path] = output_stat(full, st) if st else None
    return disk


def _confined(rules, ids, root: str) -> None:
    """Refuse, before anything runs, a target under a link that leads out of `root`."""
    confine = Confinement(root)
    for rid in ids:
        for target in rules[rid].targets:
            path = norm(target.path) if "/" in target.path else target.path
            if "/" not in path:
                continue  # its parent is the workflow directory itself
            problem = confine.problem(path, os.path.join(root, path))
            if problem is not None:
                rule = rules[rid]
                raise VinefileError(rule.location, problem, read_line(rule.location, root))


def _forget_snapshot(root: str) -> None:
    try:
        os.unlink(snapshot_file(root))
    except FileNotFoundError:
        pass


def _remember(prep: Prepared, options, digest: str | None) -> None:
    """After a clean run: the snapshot nothing_to_do() checks next time.

    `digest` was taken before the run, so a Vinefile edited during it is seen as changed.
    """
    root = options.root
    sources = []
    for p in prep.graph.sources:
        full = os.path.join(root, p)
        st = prep.files.stats.get(full)
        if digest is None or st is None or not stat.S_ISREG(st.st_mode):
            return  # a directory source's nested files escape a stat of it: no fast path
        if full in prep.files.racy:
            return  # hashed within its stamps' tick of a change: a stat cannot vouch for it
        sources.append((full, st))
    files = prep.journal.state.files
    outputs = []
    prefix = os.path.join(root, "")  # (output paths are relative: joined without a call)
    outputs_of = prep.keys.outputs_of
    for rid in prep.plan.order:
        for path, _, key in outputs_of(rid):
            rec = files.get(path)
            if rec is not None and not rec.collected:
                recorded = rec.stat_if(key)
                if recorded is not None:
                    outputs.append((prefix + path, *recorded))
    write_snapshot(snapshot_file(root), digest, sources, outputs, len(prep.plan.order))


def dry_run(workflow: Workflow, graph: BuildGraph, options, out: TextIO | None = None) -> int:
    """`-n`: print what would run or be restored (`--explain`: every rule). Runs nothing."""
    out = out or sys.stdout
    remote = remote_rules(workflow, graph) if options.keep_intermediates_remote else frozenset()
    prep = prepare(workflow, graph, options.root, options.targets, options.cache_dir, remote,
                   save=False, offline=options.offline)
    reasons = prep.plan.reasons
    shown = [rid for rid in prep.plan.order if reasons[rid].action != SKIP or options.explain]
    write_dry_run(out, graph, shown, reasons)
    n_run, n_restore = len(prep.plan.ids(RUN)), len(prep.plan.ids(RESTORE))
    if not n_run and not n_restore:
        out.write("vinemake: nothing to do\n")
    else:  # on stderr, as a run's summary: what -n prints on stdout stays a shell script
        out.flush()
        skip = len(prep.plan.order) - n_run - n_restore
        sys.stderr.write(f"vinemake: would run {n_run}, restore {n_restore}, "
                         f"up to date {skip}\n")
    return 0


def explain(prep: Prepared, workflow: Workflow, out: TextIO) -> None:
    for rid in prep.plan.order:
        reason = prep.plan.reasons[rid]
        out.write(f"vinemake explain: {reason.action} {workflow.rules[rid].name}: "
                  f"{reason.text}\n")


def run(workflow: Workflow, graph: BuildGraph, options) -> int:
    """Bring the workflow (or `options.targets`) up to date; the exit code."""
    root = options.root
    if options.cache_dir:
        _check_cache_dir(options.cache_dir)
    if options.batch_type == "workers":
        graph.check_workers_see(options.shared_fs)
    if nothing_to_do(options):
        return 0  # parsed already, but keys, journal and plan are skipped
    digest = digest_of(options)
    if options.report or options.status_port is not None:
        from vinemake.face.report import plotly_js

        plotly_js()  # a page that cannot be made is said before the run, not after it
    reporter = make_reporter(sys.stderr)
    events, page = _record(workflow, options, reporter)
    code, counts, outcome = None, {}, "failed"
    from vinemake.face.notices import noticing

    try:
        # On a first build the manager (and with it the worker's interpreter) starts before
        # keys, journal and plan, so the worker's start-up runs on another core meanwhile.
        # Not on a rebuild: when its plan runs no remote rule, a worker started for nothing
        # costs more than the overlap saves.
        with noticing(joins=options.batch_type != "local") as notices:
            executor = (_start_manager(options, root, events)
                        if _first_build(workflow, options) else None)
            try:
                result = _run(workflow, graph, options, digest, executor, events, notices,
                              reporter)
            finally:
                if executor is not None:
                    executor.close()
        code = result.exit_code
        counts = {"ran": len(result.ran), "restored": len(result.restored),
                  "skipped": result.skipped, "failed": len(result.failed),
                  "withdrawn": result.withdrawn}
        outcome = "interrupted" if result.stopped else "failed" if code else "ok"
        return code
    except KeyboardInterrupt:
        outcome = "interrupted"
        raise
    finally:
        events.emit("run_end", outcome=outcome, exit=code, counts=counts,
                    duration_s=round(time.time() - events.started, 3))
        events.close()
        if page is not None:
            page.close()
        if options.report:
            _write_report(options, events.run_id)
        if options.trace:
            _write_trace(options, events.run_id)


def _record(workflow: Workflow, options, reporter) -> tuple[EventLog, object | None]:
    """This run's record in the state directory, opened with its `run_start` event, and its
    live status page when --status-port asks for one (it sees every event, as the reporter
    does)."""
    seen: list[dict] = []
    page = _status_page(options, seen)  # first: a port in use stops the run before its record
    events = start_run(options.root)
    events.subscribe(reporter.event)
    if page is not None:
        events.subscribe(seen.append)
        page.start(events.run_id)
    events.emit("run_start", t=events.started, run=events.run_id,
                vinefile=options.vinefile, root=os.path.abspath(options.root),
                argv=sys.argv[1:], batch_type=options.batch_type, rules=len(workflow.rules),
                pid=os.getpid(), process=identity(), host=socket.gethostname())
    return events, page


def _status_page(options, seen: list[dict]):
    """--status-port: a StatusServer of the events in `seen`, listening, or None."""
    if options.status_port is None:
        return None
    from vinemake.face.statuspage import StatusServer
    from vinemake.wire.protocol import read_secret

    secret = read_secret(options.manager.password_file)
    try:
        return StatusServer(lambda: seen, options.status_host, options.status_port, secret,
                            record=StateDir(options.root).status)
    except OSError as e:
        raise InputError(f"--status-port {options.status_port}: cannot listen on "
                         f"{options.status_host}: {e.strerror}") from None


def _write_trace(options, run_id: str) -> None:
    """--trace FILE: a row per rule, from the run's record; a failure to write it is said,
    and the run's own exit status stands."""
    from vinemake.core.events import iter_events
    from vinemake.face.trace import write_trace

    try:
        write_trace(options.trace, iter_events(StateDir(options.root).events(run_id)))
    except OSError as e:
        sys.stderr.write(f"vinemake: --trace {options.trace}: {e.strerror}\n")


def _write_report(options, run_id: str) -> None:
    """--report FILE: the run's page, written after its last event; a failure to write it is
    said, and the run's own exit status stands."""
    from vinemake.face.report import write_report

    try:
        write_report(options.root, options.report, run_id)
    except VinemakeError as e:
        sys.stderr.write(f"vinemake: {e}\n")


def _first_build(workflow: Workflow, options) -> bool:
    """Nothing was built here and no shared store can restore it: every remote rule asked
    for will run, so a manager will be needed if the workflow has one."""
    if not nothing_built(options):
        return False
    return any(not (rule.local or rule.subworkflow) for rule in workflow.rules)


def _run(workflow: Workflow, graph: BuildGraph, options, digest: str | None, early,
         events: EventLog, notices, reporter):
    from vinemake.core.engine import WINDOW, Engine, EngineOptions
    from vinemake.core.localrun import LocalRunner
    from vinemake.face.notices import Reporting

    root = options.root
    remote = remote_rules(workflow, graph) if options.keep_intermediates_remote else frozenset()
    prep = prepare(workflow, graph, root, options.targets, options.cache_dir, remote,
                   offline=options.offline)
    if options.explain:
        explain(prep, workflow, sys.stderr)
    # the status line's transfers in flight: the manager's count, once there is a manager
    reporter.transfers = lambda: getattr(executor, "transfers_in_flight", 0)
    # Asked for only by -g and by rules whose outputs stay on workers (a set of every
    # workflow output costs seconds at a million rules, before the first task).
    protected = frozenset(norm(p) for p in (workflow.inputs or ()) + tuple(graph.outputs())) \
        if options.gc.on or remote or any(r.temp or r.mini for r in workflow.rules) \
        else frozenset()
    engine_options = EngineOptions(options.retries or 0, options.keep_going,
                                   options.gc, protected,
                                   options.cache_dir is not None, remote,
                                   batch_options=options.batch_type in BATCH_SYSTEMS,
                                   zero_length_error=options.zero_length_error,
                                   window=options.window or WINDOW, ahead=True)
    _forget_snapshot(root)
    needs_manager = any(not (workflow.rules[rid].local or workflow.rules[rid].subworkflow)
                        for rid in prep.plan.ids(RUN))
    prep.journal.open()
    keep(_replaced(prep), root, StateDir(root).edited, sys.stderr)
    if not needs_manager:
        # (an early manager, if any, is closed by run()). A restore that fails (the entry
        # was pruned or damaged meanwhile) runs its rule: then a manager is started.
        executor = _NoExecutor(lambda: _start_manager(options, root, events))
    else:
        executor = early if early is not None else _start_manager(options, root, events)
    local = LocalRunner(root, options.max_local, events=events,
                        workflow_file=options.vinefile)
    sizes = source_sizes(prep, root)
    reporter = Reporting(reporter, notices)  # from here news is shown in order with events
    engine = Engine(workflow.rules, prep.graph.deps, prep.graph.dependents, prep.keys,
                    prep.plan, executor=executor, journal=prep.journal, store=prep.store,
                    reporter=reporter, root=root,
                    options=engine_options, local=local, resources_of=prep.resources_of,
                    sizes=sizes, events=events)
    if len(workflow.rules) >= TRIM_RULES:
        give_back_freed()  # what planning freed stays resident otherwise, the whole run long
    old = _install_signals(engine)
    try:
        outcome = engine.run()
    finally:
        reporter.close()
        _restore_signals(old)
        local.close()
        executor.close()
        prep.journal.close()
        prep.store.release()  # what it restored may be pruned now
        _record_fetches(prep, executor)
    prep.files.refresh()  # the sandboxes' hard links moved the sources' ctime
    prep.files.save()
    if outcome.exit_code == 0:
        _remember(prep, options, digest)
    if options.summary_file:
        _summarize(workflow, prep, options, outcome)
    return outcome


def _summarize(workflow: Workflow, prep: Prepared, options, outcome) -> None:
    """-f FILE: the run's summary, in Makeflow's layout; a failure to write it is said, and
    the run's own exit status stands (as for --trace and --report)."""
    import time

    from vinemake.face.summary import output_sizes, summary_text, write_summary

    commands = {rule.name: rule.command for rule in workflow.rules}
    text = summary_text(sys.argv, outcome, len(prep.plan.order), options.vinefile, time.time(),
                        commands, output_sizes(options.root, prep.graph.outputs()))
    try:
        write_summary(options.summary_file, text)
    except OSError as e:
        sys.stderr.write(f"vinemake: -f {options.summary_file}: {e.strerror}\n")


def _replaced(prep: Prepared) -> list[str]:
    """The outputs edited by hand that this run will make again or restore."""
    producer, reasons = prep.graph.producer, prep.plan.reasons
    return [p for p in prep.edited
            if p in producer and producer[p] in reasons and reasons[producer[p]].action != SKIP]


def _record_fetches(prep: Prepared, executor) -> None:
    """The content hash of each URL source a worker fetched this run, into the URL memo."""
    hashes = executor.content_hashes()
    for path in prep.graph.sources:
        if is_url(path):
            prep.urls.fetched(path, hashes.get(prep.keys.files[path], ""))
    prep.urls.save()


def source_sizes(prep: Prepared, root: str) -> dict[str, int]:
    """Bytes of each source file by its workflow path, as the engine names inputs (the
    manager weighs data locality with them)."""
    sizes = {}
    for p in prep.graph.sources:
        st = prep.files.stats.get(os.path.join(root, p))
        if st is not None:
            sizes[p] = st.st_size
    return sizes


def clean(workflow: Workflow, graph: BuildGraph, options) -> int:
    """`--clean MODE`: delete what the journal says this workflow made."""
    from vinemake.core.clean import clean_workflow

    _forget_snapshot(options.root)
    return clean_workflow(workflow, graph, options, sys.stderr)


def _check_cache_dir(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise InputError(f"--cache-dir {path}: {e.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"--cache-dir {path}: not writable")


class _NoExecutor:
    """Stands in for the manager when every rule to run is LOCAL (or nothing runs), and
    starts one with `start` if a remote rule turns out to need it after all."""

    def __init__(self, start):
        self.start = start
        self.real = None

    def submit(self, task):
        if self.real is None:
            self.real = self.start()
        self.real.submit(task)

    def wait(self, timeout=None):
        return self.real.wait(timeout) if self.real is not None else []

    def cancel_all(self):
        if self.real is not None:
            self.real.cancel_all()

    def withdraw(self):
        if self.real is not None:
            self.real.withdraw()

    def forget(self, keys):
        if self.real is not None:
            self.real.forget(keys)

    def largest_worker(self):
        return self.real.largest_worker() if self.real is not None else None

    def content_hashes(self):
        return self.real.content_hashes() if self.real is not None else {}

    def close(self):
        if self.real is not None:
            self.real.close()


def _start_manager(options, root: str, events: EventLog):
    from vinemake.backends import get_provider
    from vinemake.manager.opening import start  # its workers start while the manager loads

    state = StateDir(root)
    config = replace(options.manager, workdir=state.manager)
    workers = options.workers
    if options.batch_type == "local" and "workdir" not in dict(workers.extra):
        workers = replace(workers, extra=(*workers.extra, ("workdir", state.worker)))
    try:
        return start(config, get_provider(options.batch_type), workers, events)
    except OSError as e:
        raise InfrastructureError(f"cannot start the manager: {e.strerror or e}") from e


_STOP_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _install_signals(engine) -> dict:
    old = {}
    for sig, code in _STOP_CODES.items():
        old[sig] = signal.signal(sig, lambda s, f, c=code: engine.stop(c))
    return old


def _restore_signals(old: dict) -> None:
    for sig, handler in old.items():
        signal.signal(sig, handler)
