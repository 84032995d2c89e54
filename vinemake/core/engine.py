"""The engine: the one main loop that restores, submits, reaps, journals and releases rules.

It works on integer rule ids with a pending-input counter per rule, so finishing a rule costs
O(its dependents), never a graph query. Ready rules are submitted a window at a time (WINDOW),
refilled as tasks end, so a million ready rules never become a million Tasks at once. It
decides nothing about *whether* a rule runs (that is the plan) and prints nothing (that is the
reporter); every side effect goes through an Executor, the Journal, the Store or the Reporter,
so tests drive it with fakes.

Failure policy, in the order the loop applies it: a result that is not ok is retried while
attempts remain (`-r N`, `@retries`; a lost worker or an infrastructure error counts as an
attempt too); then the rule is failed: journal, INFO record, reporter. Its dependents never
become ready. Without `-k` nothing new is submitted after a failure, but running tasks are
reaped so their work is kept. A stop request (SIGINT/SIGTERM) cancels running tasks and leaves
the journal synced.

Submitting ahead (`EngineOptions.ahead`): a rule whose inputs not yet made are all being made
by tasks submitted already is submitted too, naming them (Task.after), at most AHEAD_LEVELS
deep; the executor holds it on the worker that runs them, which starts it the moment they
succeed, without their results' round trip through here. Nothing else changes: a rule's key
is known before anything runs, so its Task is the same; its result counts only once every
rule it waited for has been journalled (a result that comes first waits in `early`); its
"started" is journalled then; and when one of them does not succeed, or it could not be held,
it comes back ("held_back") and waits as if it had never been submitted (a `held_back` event
takes its `submit` back).

The run's record (core/events.py) gets the engine's events: the plan's counts, each rule's
plan, submit, end and restore; the executors emit the starts (a command really began) and what
workers do. A rule's plan event is written in plan order before any other event of it, not
all before the first task: on a first build each names its key, and keys are made in
topological order as rules are submitted, so the first command does not wait for a million
keys and plan events (the rest are written as the run goes, and at its end).
"""

from __future__ import annotations

import dataclasses
import os
import stat as stat_module
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import field

from vinemake.common.amounts import excess
from vinemake.common.errors import InfrastructureError, VinefileError
from vinemake.common.hashing import hash_tree
from vinemake.common.names import flat, quoted
from vinemake.common.paths import remove_path
from vinemake.common.records import dataclass
from vinemake.common.spec import Category, Resources, RuleSpec, is_url
from vinemake.common.task import LibrarySpec, MiniTask, Task, TaskFile, TaskResult
from vinemake.core.collection import Collection
from vinemake.core.confine import Confinement
from vinemake.core.events import NO_EVENTS, EventLog
from vinemake.core.executor import Executor, LocalExecutor
from vinemake.core.filestate import output_stat
from vinemake.core.graph import norm, read_line
from vinemake.core.journal import Journal
from vinemake.core.keys import Keys, RuleKey
from vinemake.core.outside import arrange
from vinemake.core.plan import RESTORE, RUN, SKIP, Plan
from vinemake.core.statedir import StateDir
from vinemake.core.store import Store

__all__ = ["EngineOptions", "RunOutcome", "Engine", "WINDOW", "PLAN_AHEAD", "effective_resources",
           "failed_dir_name", "stays_remote"]

STATE_LOOK_S = 0.5  # how often the loop checks that its state directory is still there
# Tasks submitted and not ended, at most (or twice the workers' cores, if more): a wide
# workflow of a million ready rules holds this many Tasks, not a million, and the manager
# still chooses among more ready tasks than its workers can start at once.
WINDOW = 10_000
PATHS_KEPT = 1 << 16  # absolute paths memoised, at most (Engine.path)
WAIT_S = 0.5  # longest a wait blocks, so stop requests and the status line stay responsive
# Plan events written on each pass of the loop beyond the rules it reached: the record names
# every rule soon after the first tasks start, and a pass stays short (a few milliseconds).
PLAN_AHEAD = 1000
# How many rules deep the engine submits ahead of running tasks (a chain: the running rule's
# reader and that one's reader are held). Two levels cover the time a result takes to come
# back and the next task to go out, even when the rule in between runs for less than that.
AHEAD_LEVELS = 2


@dataclass(frozen=True)
class EngineOptions:
    retries: int = 0  # extra attempts for every rule without its own @retries
    keep_going: bool = False
    gc: Collection = Collection()  # -g, -G, --gc-size
    protected: frozenset[str] = frozenset()  # MAKEFLOW_INPUTS/OUTPUTS: never collected
    shared_store: bool = False  # --cache-dir: collected files stay in it
    remote: frozenset[int] = frozenset()  # rules whose outputs stay on workers besides @temp
    batch_options: bool = False  # workers are batch jobs: tasks carry their BATCH_OPTIONS
    zero_length_error: bool = False  # -z: an empty output file fails its rule, as Makeflow's
    window: int = WINDOW  # tasks submitted and not ended, at most (see WINDOW)
    ahead: bool = False  # submit rules ahead of the tasks making their inputs (Task.after)


@dataclass(frozen=True)
class RunOutcome:
    """What a run did, by rule name, and the exit code it implies."""

    ran: tuple[str, ...] = ()
    restored: tuple[str, ...] = ()
    skipped: int = 0
    failed: tuple[str, ...] = ()
    not_run: int = 0  # waiting on a failed rule, or never submitted after one
    stopped: int = 0  # the exit code of a stop request (130, 143), 0 if none
    wall_time_s: float = 0.0
    uncached: int = 0  # outputs the cache store could not keep (the run is still good)
    withdrawn: int = 0  # of not_run: submitted, then taken back before it started

    @property
    def exit_code(self) -> int:
        if self.stopped:
            return self.stopped
        return 1 if self.failed else 0


def _followed(path: str, lstat: os.stat_result) -> os.stat_result:
    """The stat of `path` given its lstat: the link's target's, if it is a link that leads
    somewhere."""
    if not stat_module.S_ISLNK(lstat.st_mode):
        return lstat
    try:
        return os.stat(path)
    except OSError:
        return lstat


def effective_resources(rule: RuleSpec, categories: Mapping[str, Category]) -> Resources:
    """The rule's own resources, falling back field by field to its category's."""
    cat = categories.get(rule.category)
    if cat is None:
        return rule.resources
    own, base = rule.resources, cat.resources
    return Resources(**{f: getattr(own, f) if getattr(own, f) is not None else getattr(base, f)
                        for f in _RESOURCE_FIELDS})


_RESOURCE_FIELDS = tuple(f.name for f in dataclasses.fields(Resources))


def stays_remote(rules: Sequence[RuleSpec], dependents: Sequence[Sequence[int]], rid: int,
                 remote: Set[int] = frozenset()) -> bool:
    """Do `rid`'s outputs stay on the workers? The engine's paths and the plan both ask this.

    `@temp` and `remote` (--keep-intermediates-remote) say so, unless a LOCAL rule or a
    sub-workflow reads one of them: those run in the workflow directory, not on a worker.
    """
    rule = rules[rid]
    if not (rule.temp or rule.mini or rid in remote):
        return False
    return not any(rules[d].local or rules[d].subworkflow for d in dependents[rid])


def failed_dir_name(name: str) -> str:
    """A rule's directory name under .vinemake/failed/: one component (a target path may hold
    slashes) that fits any filesystem however long the name."""
    return quoted(name)


class _Marks:
    """A set of rule ids, a byte each: a million-rule run marks them all, and a set of a
    million ints holds a table of 32-64 MB."""

    __slots__ = ("_marks",)

    def __init__(self, rules: int):
        self._marks = bytearray(rules)

    def add(self, rid: int) -> None:
        self._marks[rid] = 1

    def __contains__(self, rid: int) -> bool:
        return bool(self._marks[rid])


@dataclass
class _State:
    """The loop's mutable bookkeeping, all indexed by rule id."""

    pending: dict[int, int]
    attempts: dict[int, int] = field(default_factory=dict)
    ready: deque[int] = field(default_factory=deque)
    running: set[int] = field(default_factory=set)
    refs: dict[str, int] = field(default_factory=dict)
    collectible: dict[str, None] = field(default_factory=dict)  # -g: in the order they became so
    alive: int = 0  # files this run made (or restored) and has not collected
    remote_refs: dict[str, int] = field(default_factory=dict)  # path -> consumers still to run
    ran: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    withdrawn: int = 0
    local_running: set[int] = field(default_factory=set)
    blocked: bool = False  # a failure without -k: submit nothing new
    to_run: set[int] = field(default_factory=set)  # grows when early cutoff does not hold
    finished: _Marks = field(default_factory=lambda: _Marks(0))  # ran or restored this run
    counted: bool = False  # `pending` holds every rule of to_run
    # Up-to-date rules that may yet have to run (early cutoff not known to hold): for each,
    # how many of its inputs' producers are still to finish or be settled. Readers wait.
    unsure: dict[int, int] = field(default_factory=dict)
    # Submitted ahead: rule -> the rules it waits for, until they all finished here.
    ahead: dict[int, tuple[int, ...]] = field(default_factory=dict)
    early: dict[int, TaskResult] = field(default_factory=dict)  # ahead rules' results, kept
    void: set[int] = field(default_factory=set)  # ahead rules one of whose producers failed
    released: list[int] = field(default_factory=list)  # ahead rules whose producers all finished


class Engine:
    """Brings the rules of a Plan up to date."""

    def __init__(self, rules: Sequence[RuleSpec], deps: Sequence[Sequence[int]],
                 dependents: Sequence[Sequence[int]], keys: Keys, plan: Plan, *,
                 executor: Executor, journal: Journal, store: Store | None, reporter,
                 root: str, options: EngineOptions = EngineOptions(),
                 local: LocalExecutor | None = None,
                 resources_of: Callable[[RuleSpec], Resources] | None = None,
                 sizes: Mapping[str, int] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 events: EventLog = NO_EVENTS,
                 free_bytes: Callable[[], int] | None = None):
        self.rules = rules
        self.deps, self.dependents = deps, dependents
        self.keys, self.plan = keys, plan
        self.executor, self.local = executor, local
        self.journal, self.store, self.reporter = journal, store, reporter
        self.root = root
        self._failed_root = os.path.join(StateDir(root).failed, "")
        self.state_path = StateDir(root).path
        self.options = options
        self.resources_of = resources_of or (lambda r: r.resources)
        self.sizes = dict(sizes or {})
        self.clock = clock
        self.events = events
        self.hosts: dict[str, str] = {}  # worker -> host, from the record's worker_join events
        self.cores: dict[str, float] = {}  # worker -> cores, while it is connected
        events.watch_workers(self._note_worker)  # the manager may be older
        # What the record says has ended, the journal has on disk already: a rule that ended
        # before a kill -9 is never run again (core/events.py, core/journal.py).
        events.before_flush(journal.write)
        self.free_bytes = free_bytes or self._free_bytes
        self.stop_code = 0
        self.uncached = 0
        self.libraries = {r.library: r for r in rules if r.library}
        # Rules that read a `@mini` rule's outputs (their tasks carry it).
        self._reads_minis = {d for r in rules if r.mini for d in dependents[r.id]}
        self._paths: dict[str, str] = {}
        self.confine = Confinement(root)
        self._planned = 0  # plan.order[:_planned] have their plan events written
        self._position: list[int] | None = None  # rule id -> its index in plan.order
        # A rule's Resources as its plan event's dict, by id (held, so no id is reused):
        # rules share a few, and hashing a Resources is a Python call.
        self._as_dict: dict[int, tuple[Resources, dict]] = {}
        # The rule whose plan event was written last, and its outputs_of (_submit's, next).
        self._last_planned: tuple[int, tuple] = (-1, ())

    def stop(self, code: int) -> None:
        """Ask the loop to cancel running tasks and return (from a signal handler)."""
        self.stop_code = code

    def stays_remote(self, rid: int) -> bool:
        """Do `rid`'s outputs stay on the workers (`@temp`, --keep-intermediates-remote)?"""
        return stays_remote(self.rules, self.dependents, rid, self.options.remote)

    def path(self, p: str) -> str:
        # Memoised: each task asks for its paths several times (submit, check, stat, store).
        # Only for the tasks of late: kept for a million rules it would hold them all.
        full = self._paths.get(p)
        if full is None:
            if len(self._paths) >= PATHS_KEPT:
                self._paths.clear()
            full = self._paths[p] = os.path.join(self.root, p)
        return full

    def _failed_dir(self, rule: RuleSpec) -> str:
        """Where a failed run of `rule` leaves its INFO and outputs."""
        return f"{self._failed_root}{failed_dir_name(rule.name)}"

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> RunOutcome:
        """Restore what the store holds, then run the rest until done, failed or stopped."""
        start = self.clock()
        try:
            return self._run(start)
        finally:
            try:
                self._plan_through(None)  # the plans of the rules not reached: skipped, not run
            except OSError:
                pass  # the record cannot be written (a full disk): the run's close says so

    def _run(self, start: float) -> RunOutcome:
        st = _State(pending={}, to_run=set(self.plan.ids(RUN)),
                    finished=_Marks(len(self.rules)))
        to_run = st.to_run
        self._emit_counts()
        for rid in self.plan.ids(RESTORE):
            if not self._restore(st, rid):
                to_run.add(rid)
            else:
                st.restored.append(self.rules[rid].name)
                st.alive += len(self.keys.outputs_of(rid))
        st.unsure = self._unsure(to_run)
        unsure = st.unsure
        # Only a rule that may yet be promoted (_cutoff) has its last record read again.
        self.journal.keep_records([self.keys.key_of(rid) for rid in unsure])
        deps = self.deps
        if unsure:
            st.pending = {rid: sum(1 for d in deps[rid] if d in to_run or d in unsure)
                          for rid in to_run}
        else:  # (as above, counted in C: a first build has every rule here)
            counts = to_run.__contains__
            st.pending = {rid: sum(map(counts, deps[rid])) for rid in to_run}
        st.ready = deque(rid for rid in self.plan.order if rid in to_run and not st.pending[rid])
        st.counted = True
        if self.options.gc.on:
            st.refs = self._reference_counts(to_run)
        st.remote_refs = self._remote_reference_counts(to_run)
        checked = self._check_sizes(to_run)
        state = _identity(self.state_path)
        next_look = start
        while (st.ready and not st.blocked) or st.running:
            if self.stop_code:
                self._cancel()
                break
            if self.clock() >= next_look:
                next_look = self.clock() + STATE_LOOK_S
                self._state_kept(state)
            if not checked:
                checked = self._check_sizes(to_run)
            window = self._window()
            while st.ready and not st.blocked and len(st.running) < window:
                self._submit(st, st.ready.popleft())
            self._plan_ahead()
            for result in self._wait(st):
                self._reap(st, result)
            self.journal.tick()
            self.events.tick()
            self.reporter.tick()
        self._state_kept(state)
        if st.collectible and not (st.failed or self.stop_code):
            self._delete(st, len(st.collectible))  # as Makeflow's last collection
        self.journal.sync()
        outcome = RunOutcome(tuple(st.ran), tuple(st.restored),
                          len(self.plan.order) - len(to_run) - len(st.restored),
                          tuple(st.failed),
                          len(to_run) - len(st.ran) - len(st.failed),
                          self.stop_code, self.clock() - start, self.uncached,
                          st.withdrawn)
        self.reporter.summary(outcome)
        return outcome

    def _state_kept(self, identity: tuple[int, int] | None) -> None:
        """Stop the run if its state directory was deleted (or replaced) under it: the
        journal it appends to is gone, so nothing it does now would be remembered."""
        if identity is None or _identity(self.state_path) == identity:
            return
        self._cancel()
        self.journal.sync()
        raise InfrastructureError(
            f"the state directory {self.state_path} was deleted during the run, and with it "
            f"the record of what was built: stopped (run vinemake again; it remakes what it "
            f"can no longer vouch for)")

    def _window(self) -> int:
        """How many tasks may be submitted and not ended: the option, or twice the cores of
        the connected workers if that is more, so a big cluster is never starved."""
        return max(self.options.window, 2 * int(sum(self.cores.values())))

    def _wait(self, st: _State) -> list[TaskResult]:
        if self.local is None or not st.local_running:
            return self.executor.wait(WAIT_S)
        if len(st.local_running) == len(st.running):
            return self.local.wait(WAIT_S)
        # Both kinds running: poll the local runner, block briefly on the manager.
        got = self.local.wait(0)
        return got + self.executor.wait(0 if got else 0.02)

    def _cancel(self) -> None:
        self.executor.cancel_all()
        if self.local is not None:
            self.local.cancel_all()

    def _check_sizes(self, to_run: set[int]) -> bool:
        """Refuse a rule no worker could ever run (InputError). True once a worker is known."""
        largest = self.executor.largest_worker()
        if largest is None:
            return False
        fits: dict[int, Resources] = {}  # the Resources found to fit, by id (rules share few)
        rules = self.rules
        for rid in range(len(rules)):  # in id order: the first rule that cannot run is named
            rule = rules[rid]
            if rid not in to_run or rule.local or rule.subworkflow:
                continue
            resources = self.resources_of(rule)
            if id(resources) in fits:
                continue
            problem = excess(resources, largest)
            if not problem:
                fits[id(resources)] = resources  # held: its id is not reused meanwhile
            else:
                self._cancel()
                self.journal.sync()
                raise VinefileError(rule.location, f"rule '{rule.name}' {problem}",
                                    read_line(rule.location, self.root))
        return True

    # -- one rule ---------------------------------------------------------------------------

    def _submit(self, st: _State, rid: int, after: tuple[int, ...] = ()) -> None:
        """Hand `rid` to its executor; `after`: ahead of those rules, which make its inputs."""
        self._plan_through(rid)
        rule = self.rules[rid]
        if rule.mini and self.stays_remote(rid):
            # Nothing to run here: each worker that runs a reader makes its outputs first
            # (Task.minis). Its readers may go.
            self._done(st, rid, TaskResult(rid, "ok", 0, worker="(each reader's worker)"), [])
            self._release_all(st)
            return
        planned = self._last_planned  # a first build's: its plan event was written just now
        outputs = planned[1] if planned[0] == rid else self.keys.outputs_of(rid)
        remote = self.stays_remote(rid)  # (asked once here, for _outside and task)
        problem = None if remote else self._outside_paths(outputs)
        if problem is not None and after:
            return  # refused when its inputs are made, as it would have been
        attempt = st.attempts.get(rid, 0) + 1
        st.attempts[rid] = attempt
        task = self.task(rid, attempt, outputs, remote)
        if attempt == 1 and not after:  # (ahead: once it is released, _release)
            self.journal.started(task.rule_key, rule.name)
        if problem is not None:  # a link made during the run leads a target out: refuse it
            refused = TaskResult(rid, "error", reason=problem)
            self._end(st, rid, refused)
            self._failed(st, rid, refused)
            return
        st.running.add(rid)
        if after:
            st.ahead[rid] = after
            task = dataclasses.replace(task, after=after)
            self.events.emit("submit", rule=rid, attempt=attempt, after=list(after))
        else:
            self.events.emit_event({"t": None, "ev": "submit", "rule": rid, "attempt": attempt})
        if self.local is not None and (rule.local or rule.subworkflow):
            st.local_running.add(rid)
            if rule.subworkflow:
                self.local.submit_subworkflow(task)
            else:
                self.local.submit(task)
        else:
            self.executor.submit(task)
        if self.options.ahead and self.dependents[rid]:
            self._go_ahead(st, rid)

    # -- submitting ahead -----------------------------------------------------------------

    def _go_ahead(self, st: _State, rid: int, depth: int = 0) -> None:
        """Submit ahead each reader of `rid` that may go (`_after`), now that `rid` was
        submitted or released; readers already ahead may have readers that may go now."""
        if st.blocked or self.stop_code:
            return
        for d in self.dependents[rid]:
            if d in st.ahead:
                if depth < AHEAD_LEVELS:
                    self._go_ahead(st, d, depth + 1)
                continue
            if len(st.running) >= self._window():
                return
            after = self._after(st, d)
            if after:
                self._submit(st, d, after)

    def _after(self, st: _State, rid: int) -> tuple[int, ...]:
        """The rules `rid` would be submitted ahead of: its producers not finished, if each
        is a task submitted already (not a LOCAL one) at most AHEAD_LEVELS - 1 deep in rules
        submitted ahead; () when it may not go ahead (a rule that may turn out up to date,
        one declaring disk or batch options, a call: those are placed by the manager)."""
        if not st.pending.get(rid) or rid in st.running:
            return ()
        rule = self.rules[rid]
        if rule.local or rule.subworkflow or rule.call or rule.mini or rule.batch_options:
            return ()
        if self.resources_of(rule).disk_mb:
            return ()
        after: dict[int, None] = {}
        finished, to_run, running = st.finished, st.to_run, st.running
        for p in self.deps[rid]:
            if p in finished or p in after:
                continue
            if p in st.unsure or (p in to_run and (p not in running or p in st.local_running
                                                   or self._level(st, p) >= AHEAD_LEVELS)):
                return ()
            if p in to_run:
                after[p] = None
        if after and self._under_unmade(st, rid, after):
            return ()
        return tuple(after)

    def _under_unmade(self, st: _State, rid: int, after) -> bool:
        """Does an output of `rid` lie under an output of a rule it would wait for, or in a
        directory not made yet? That may be a link leading out of the workflow directory,
        which only its being made shows (`_outside` refuses `rid` then): such a rule waits to
        be submitted as ever."""
        nested = [path for path, _, _ in self.keys.outputs_of(rid) if "/" in path]
        if any(not os.path.isdir(self.path(os.path.dirname(path))) for path in nested):
            return True
        waited = list(after)
        while nested and waited:
            p = waited.pop()
            for made, _, _ in self.keys.outputs_of(p):
                prefix = made.rstrip("/") + "/"
                if any(path.startswith(prefix) for path in nested):
                    return True
            waited += st.ahead.get(p, ())
        return False

    def _level(self, st: _State, rid: int) -> int:
        """How deep `rid` is in rules submitted ahead: 0 for one submitted as ever."""
        producers = st.ahead.get(rid)
        if producers is None:
            return 0
        return 1 + max((self._level(st, p) for p in producers if p not in st.finished),
                       default=0)

    def _release_all(self, st: _State) -> None:
        """Every rule each rule submitted ahead waited for has finished (and was journalled):
        it counts as started, its result if it came first is taken now, and its readers may
        go ahead."""
        while st.released:
            rid = st.released.pop(0)
            if st.ahead.pop(rid, None) is None:
                continue
            if st.attempts.get(rid) == 1:
                self.journal.started(self.keys.key_of(rid), self.rules[rid].name)
            early = st.early.pop(rid, None)
            if early is not None:
                self._reap(st, early)
            elif self.options.ahead:
                self._go_ahead(st, rid)

    def _orphan(self, st: _State, rid: int) -> None:
        """`rid` did not succeed: the rules submitted ahead of it do not count what they
        did (their result, now or when it comes, sends them back: _unhold)."""
        for d in self.dependents[rid]:
            if rid in st.ahead.get(d, ()):
                if d in st.early:
                    self._unhold(st, d, st.early[d])
                else:
                    st.void.add(d)

    def _unhold(self, st: _State, rid: int, void: TaskResult | None = None) -> None:
        """`rid`, submitted ahead, came back unstarted (or with the `void` result of a run
        from inputs that did not count): it waits for its inputs as if it had never been
        submitted, and what that run left at its outputs' paths is removed."""
        if void is not None and void.ok and not self.stays_remote(rid):
            for path, _, _ in self.keys.outputs_of(rid):
                remove_path(self.path(path))
        if st.ahead:
            self._orphan(st, rid)  # what ran ahead of it ran on what does not count either
        st.running.discard(rid)
        st.ahead.pop(rid, None)
        st.early.pop(rid, None)
        st.void.discard(rid)
        st.attempts[rid] -= 1
        if not st.attempts[rid]:
            del st.attempts[rid]
        st.pending[rid] = sum(1 for d in self.deps[rid]
                              if (d in st.to_run and d not in st.finished) or d in st.unsure)
        if not st.pending[rid]:
            st.ready.append(rid)
        self.events.emit("held_back", rule=rid)

    def task(self, rid: int, attempt: int = 1, made: Sequence | None = None,
             remote: bool | None = None) -> Task:
        """The Task for rule `rid`: absolute paths, keys, resources, library. (`made`: its
        outputs_of, and `remote` its stays_remote(), if the caller has them.)"""
        rule = self.rules[rid]
        inputs = self._inputs(rule) if rule.sources else ()
        if remote is None:
            remote = self.stays_remote(rid)
        outputs = tuple([TaskFile(key, sandbox, None if remote else self.path(path))
                         for path, sandbox, key in made or self.keys.outputs_of(rid)])
        command = rule.command
        if inputs and not (rule.local or rule.subworkflow or rule.call) and \
                any(f.sandbox[:1] == "/" or ".." in f.sandbox for f in inputs):
            inputs, outputs, command = arrange(inputs, outputs, command, self.root)
        return Task(
            id=rid, rule_key=self.keys.key_of(rid), name=rule.name, command=command,
            inputs=inputs, outputs=outputs,
            env=rule.env, resources=self.resources_of(rule), category=rule.category,
            library=self._library(rule) if rule.call else None,
            cache_forever=rule.cache_forever,
            failed_dir=self._failed_dir(rule),
            attempt=attempt,
            # The parser already put the category's BATCH_OPTIONS in a rule without its own.
            batch_options=rule.batch_options if self.options.batch_options else "",
            stops_run=not self.options.keep_going and attempt >= self._attempts(rule),
            minis=self._minis(rid) if rid in self._reads_minis else (),
            environment=self.keys.files[norm(rule.environment)] if rule.environment else "")

    def _minis(self, rid: int) -> tuple[MiniTask, ...]:
        """The `@mini` rules whose outputs `rid` reads, each after the minis it reads."""
        found: dict[int, MiniTask] = {}

        def visit(r: int) -> None:
            for d in self.deps[r]:
                if d in found or not (self.rules[d].mini and self.stays_remote(d)):
                    continue
                visit(d)
                rule, outputs = self.rules[d], self.keys.outputs_of(d)
                found[d] = MiniTask(self.keys.key_of(d), rule.name, rule.command,
                                    self._inputs(rule),
                                    tuple(TaskFile(key, sandbox) for _, sandbox, key in outputs),
                                    rule.env)

        visit(rid)
        return tuple(found.values())

    def _attempts(self, rule: RuleSpec) -> int:
        """How many times `rule` may run before it fails for good (1 + its retries)."""
        return 1 + (rule.retries if rule.retries is not None else self.options.retries)

    def _inputs(self, rule: RuleSpec) -> tuple[TaskFile, ...]:
        files = self.keys.files
        return tuple(TaskFile(files[f.path], f.sandbox, None, 0, f.path) if is_url(f.path)
                     else TaskFile(files[norm(f.path)], f.sandbox, self.path(norm(f.path)),
                                   self.sizes.get(norm(f.path), 0)) for f in rule.sources)

    def _library(self, rule: RuleSpec) -> LibrarySpec | None:
        if not rule.call:
            return None
        lib = self.libraries[rule.call]
        return LibrarySpec(lib.library, self.keys.key_of(lib.id), lib.command,
                           self._inputs(lib), self.resources_of(lib), lib.library_slots or 1,
                           lib.env, self.keys.files[norm(lib.environment)] if lib.environment
                           else "")

    def _reap(self, st: _State, result: TaskResult) -> None:
        rid = result.task_id
        if rid not in st.running:
            return  # a late result for a task we already gave up on
        if result.status == "held_back" or rid in st.void:
            self._unhold(st, rid, result)
            return
        if rid in st.ahead:  # before a result it waited for: counted once that one is
            st.early[rid] = result
            return
        st.running.discard(rid)
        st.local_running.discard(rid)
        rule = self.rules[rid]
        if result.status == "withdrawn":
            if st.ahead:
                self._orphan(st, rid)
            # Not "interrupted" next time: it never started.
            st.withdrawn += 1  # counted as not run
            self._end(st, rid, result)
            self.journal.withdrawn(self.keys.key_of(rid), rule.name)
            return
        if result.ok:
            rk = self.keys.rules[rid]  # (its outputs are outputs_of's: not made again)
            placed, problem = self._placed_outputs(rid, rk.outputs)
            if problem is None:
                self._done(st, rid, result, placed, rk)  # journalled before its end is recorded
                self._end(st, rid, result)
                if st.released:
                    self._release_all(st)  # (their ends after this one's)
                return
            if self.options.zero_length_error:
                self._set_aside(rule)  # what did come back is not this rule's output
            result = TaskResult(rid, "missing_output", result.exit_code, problem,
                                result.stderr_tail, result.measured, result.worker)
        if st.ahead:
            self._orphan(st, rid)
        allowed = self._attempts(rule)
        retrying = st.attempts[rid] < allowed and not self.stop_code
        self._end(st, rid, result, retrying)
        if retrying:
            st.ready.append(rid)
            return
        self._failed(st, rid, result)

    def _placed_outputs(self, rid: int, outputs: Sequence) -> tuple[list, str | None]:
        """(path, key, lstat) of each output an "ok" result put in place, and what is wrong
        with the first one it did not (never trust blindly), if any.

        A symbolic link that leads nowhere at its path is not an output: the plan, which
        follows links as make does, would find it missing at every run.
        """
        placed = []
        if self.stays_remote(rid):
            return placed, None
        for path, _, key in outputs:
            try:
                lstat = os.lstat(self.path(path))
            except OSError:
                return placed, f"output '{path}' is not at its path after the run"
            if stat_module.S_ISLNK(lstat.st_mode) and not os.path.exists(self.path(path)):
                return placed, (f"output '{path}' is a symbolic link to nothing at its path "
                                f"({os.readlink(self.path(path))})")
            if self.options.zero_length_error and lstat.st_size == 0 and \
                    stat_module.S_ISREG(lstat.st_mode):
                return placed, f"output '{path}' is empty (-z: an empty output is a failure)"
            placed.append((path, key, lstat))
        return placed, None

    def _done(self, st: _State, rid: int, result: TaskResult, placed: list,
              rk: RuleKey | None = None) -> None:
        rule = self.rules[rid]
        if rk is None:
            rk = self.keys.rules[rid]
        recorded = []
        reported = {o[0]: o[2] for o in result.outputs if len(o) > 2}
        for path, key, lstat in placed:
            full = self.path(path)
            content = reported.get(key) or hash_tree(full)[1]
            if self.store is not None:
                try:
                    self._store(key, full, lstat, content)
                except OSError:
                    self.uncached += 1  # the cache is an optimisation: carry on, say so
            # The journal keeps what a stat of the path says (the plan compares it so).
            stat = _followed(full, lstat)
            recorded.append((path, key, *output_stat(full, stat), content))
            if self.dependents[rid]:  # its readers' tasks and end events say their sizes
                self.sizes[path] = stat.st_size
        m = result.measured
        self.journal.done(rk.key, rule.name, "ran", rk.parts, rk.inputs, recorded,
                          (m.cores, m.memory_mb, m.disk_mb, m.wall_time_s), self._seen(rk))
        self._cutoff(st, rid, recorded)
        st.finished.add(rid)
        self._settle(st, rid)
        st.ran.append(rule.name)
        st.alive += len(recorded)
        for d in self.dependents[rid]:
            if d in st.pending and st.pending[d] > 0:
                st.pending[d] -= 1
                if not st.pending[d]:
                    (st.released if d in st.ahead else st.ready).append(d)
        if self.options.gc.on:
            self._collect(st, rule)
        if st.remote_refs:
            self._forget_dead(st, rule)

    def _set_aside(self, rule: RuleSpec) -> None:
        """Move the outputs an "ok" run left at their paths into the rule's failed directory
        (-z): nothing a failed rule made stays at a target path."""
        where = self._failed_dir(rule)
        for path, sandbox, _ in self.keys.outputs_of(rule.id):
            full = self.path(path)
            if os.path.lexists(full):
                os.makedirs(where, exist_ok=True)
                os.replace(full, os.path.join(where, flat(sandbox)))

    def _failed(self, st: _State, rid: int, result: TaskResult) -> None:
        rule = self.rules[rid]
        key = self.keys.key_of(rid)
        self.journal.failed(key, rule.name, result.status, result.exit_code)
        where = self._failed_dir(rule)
        info = os.path.join(where, "INFO")
        try:
            os.makedirs(where, exist_ok=True)
            with open(info, "w", encoding="utf-8") as f:
                f.write(info_record(rule, result))
        except OSError as e:  # a full disk: the run ends, saying which file it could not write
            raise OSError(e.errno, e.strerror, info) from None
        st.failed.append(rule.name)
        if not self.options.keep_going:
            # As make does without -k: start nothing more. What was submitted and has not
            # started is taken back; what runs finishes.
            st.blocked = True
            self.executor.withdraw()
            if self.local is not None:
                self.local.withdraw()

    def _restore(self, st: _State, rid: int) -> bool:
        """Put every output of `rid` in place from the store; False if any is missing."""
        self._plan_through(rid)
        rule = self.rules[rid]
        rk = self.keys.rules[rid]
        placed = []
        if self._outside(rid) is not None:
            return False  # run instead, and refused then
        if self.store is not None:
            try:
                self.store.hold(key for _, _, key in rk.outputs)
            except OSError:
                return False  # a store this user cannot lease in: run the rule instead
        for path, _, key in rk.outputs:
            full = self.path(path)
            if self.store is None or not self.store.restore(key, full):
                return False
            stat = _followed(full, os.lstat(full))
            content = self.store.content(key) or hash_tree(full)[1]
            placed.append((path, key, *output_stat(full, stat), content))
            if self.dependents[rid]:
                self.sizes[path] = stat.st_size
        self.journal.done(rk.key, rule.name, "restored", rk.parts, rk.inputs, placed,
                          seen=self._seen(rk))
        self._cutoff(st, rid, placed)
        st.finished.add(rid)
        self.events.emit("restore", rule=rid, outputs=[p for p, *_ in placed])
        return True

    def _outside(self, rid: int) -> str | None:
        """Why a target of `rid` would be written outside the workflow directory, if so."""
        if self.stays_remote(rid):
            return None
        return self._outside_paths(self.keys.outputs_of(rid))

    def _outside_paths(self, outputs: Sequence) -> str | None:
        """_outside() of the outputs of a rule whose outputs do not stay on the workers."""
        for path, _, _ in outputs:
            if "/" not in path:
                continue  # in the workflow directory itself, which is inside
            problem = self.confine.problem(path, self.path(path))
            if problem is not None:
                return problem
        return None

    def _store(self, key: str, full: str, lstat: os.stat_result, content: str) -> None:
        """Keep the output in the store; an entry of this key with other bytes (a command
        that is not deterministic ran again) is replaced, so a restore gives what is here."""
        if self.store.insert(key, full, lstat, content):
            return
        if self.store.content(key) not in ("", content):
            self.store.remove(key)
            self.store.insert(key, full, lstat, content)

    # -- early cutoff -----------------------------------------------------------------------

    def _seen(self, rk) -> tuple[tuple[str, str], ...]:
        """The content hash of each made input, as the rule reads it now."""
        if not rk.inputs:
            return ()
        files = self.journal.state.files
        return tuple([(p, files[p].content) for p, _ in rk.inputs if p in files])

    def _cutoff(self, st: _State, rid: int, placed: list) -> None:
        """Run each up-to-date reader of `rid`'s outputs that last read other bytes.

        Keys name provenance, so a rule run again with the same key (its output was edited
        or lost) keeps its readers' keys: what tells them apart is the content. Equal bytes
        leave the readers alone (early cutoff); other bytes make them run.
        """
        dependents = self.dependents[rid]
        if not dependents:
            return
        now = {path: content for path, _, _, _, content in placed}
        for d in dependents:
            if d in st.to_run or d not in self.plan.reasons:
                continue
            rec = self.journal.state.done.get(self.keys.key_of(d))
            if rec is None:
                continue
            changed = [p for p, c in rec.seen if p in now and now[p] != c]
            if changed:
                self._promote(st, d)

    def _promote(self, st: _State, rid: int) -> None:
        st.to_run.add(rid)
        if not st.counted:
            return  # still restoring: the count taken next includes it
        counted_by_readers = st.unsure.pop(rid, None) is not None
        st.pending[rid] = sum(1 for d in self.deps[rid]
                              if (d in st.to_run and d not in st.finished) or d in st.unsure)
        if not st.pending[rid]:
            st.ready.append(rid)
        if counted_by_readers:
            return  # its readers wait for it already
        for e in self.dependents[rid]:  # readers already waiting now wait for it too
            if e in st.pending and e not in st.finished and e not in st.running:
                if not st.pending[e] and e in st.ready:
                    st.ready.remove(e)
                st.pending[e] += 1

    def _unsure(self, to_run: Set[int]) -> dict[int, int]:
        """The up-to-date rules whose inputs a rule run again with its old key may remake
        with other bytes (directly, or through other such rules), each with how many of its
        inputs' producers must settle first. A rule with a new key makes new keys downstream,
        so only these can be promoted (_cutoff) once the run has started."""
        done = self.journal.state.done
        unsure: dict[int, int] = {}
        if not done:
            return unsure  # nothing recorded (a first build): no key need be made for this
        again = {r for r in to_run if self.keys.key_of(r) in done}
        if not again:
            return unsure
        for rid in self.plan.order:
            if rid in to_run:
                continue
            n = sum(1 for d in self.deps[rid] if d in again or d in unsure)
            if n:
                unsure[rid] = n
        return unsure

    def _settle(self, st: _State, rid: int) -> None:
        """`rid` finished or settled: its unsure readers have one producer less to wait for;
        one with none left stays up to date, and releases its own readers."""
        for m in self.dependents[rid]:
            if m not in st.unsure:
                continue
            st.unsure[m] -= 1
            if st.unsure[m]:
                continue
            del st.unsure[m]
            for e in self.dependents[m]:
                if e in st.pending and st.pending[e] > 0:
                    st.pending[e] -= 1
                    if not st.pending[e]:
                        st.ready.append(e)
            self._settle(st, m)

    # -- the run's record --------------------------------------------------------------------

    def _note_worker(self, ev: dict) -> None:
        kind = ev["ev"]
        if kind == "worker_join":
            self.hosts[ev.get("worker", "")] = ev.get("host", "")
            self.cores[ev.get("worker", "")] = ev.get("cores") or 0
        elif kind == "worker_leave":
            self.cores.pop(ev.get("worker", ""), None)

    def _emit_counts(self) -> None:
        """The `planned` event: how many rules the plan runs, restores and skips (the plan
        events themselves come as the run reaches each rule: _plan_through)."""
        counts = {RUN: 0, RESTORE: 0, SKIP: 0}
        reasons = self.plan.reasons
        for rid in self.plan.order:
            counts[reasons[rid].action] += 1
        self.events.emit("planned", rules=len(self.plan.order), **counts)

    def _plan_through(self, rid: int | None) -> None:
        """Write the plan event of every rule in plan order up to `rid` (None: all) that has
        none yet: what it is, what it will do and why. Before any other event of `rid`."""
        order = self.plan.order
        if self._planned >= len(order):
            return
        if rid is None:
            self._plan_until(len(order))
            return
        if self._position is None:
            self._position = position = [-1] * len(self.rules)
            for i, r in enumerate(order):
                position[r] = i
        self._plan_until(self._position[rid] + 1)

    def _plan_ahead(self) -> None:
        """A few more plan events beyond the rules reached, on each pass of the loop (before
        it waits), so the record soon names every rule of a run going on (`vinemake log`)."""
        self._plan_until(min(self._planned + PLAN_AHEAD, len(self.plan.order)))

    def _plan_until(self, end: int) -> None:
        order = self.plan.order
        for i in range(self._planned, end):
            self._planned = i + 1  # first: an event that cannot be written is not tried again
            self._emit_plan(order[i])

    def _emit_plan(self, rid: int) -> None:
        rule = self.rules[rid]
        outputs = self.keys.outputs_of(rid)
        self._last_planned = (rid, outputs)
        reason = self.plan.reasons[rid]
        if rule.sources:
            inputs = [norm(f.path) for f in rule.sources]
            file_key = self.keys.file_key
            files = {p: file_key(p) or "" for p in inputs}
        else:
            inputs, files = [], {}
        for path, _, key in outputs:
            files[path] = key
        resources = self.resources_of(rule)
        known = self._as_dict.get(id(resources))
        if known is None:  # (asdict was half of each event's cost)
            known = self._as_dict[id(resources)] = (resources, dataclasses.asdict(resources))
        fields = known[1]
        self.events.emit_event({
            "t": None, "ev": "plan", "rule": rid, "label": rule.name,
            "key": self.keys.key_of(rid), "action": reason.action, "reason": reason.text,
            "category": rule.category, "inputs": inputs,
            "outputs": [path for path, _, _ in outputs], "files": files, "resources": fields,
            "kind": "call" if rule.call else "local" if rule.local or rule.subworkflow
            else "command", "command": rule.command, "location": str(rule.location)})

    def _end(self, st: _State, rid: int, result: TaskResult, retrying: bool = False) -> None:
        """The `end` event of one attempt of `rid` (`retrying`: another follows), and its
        stderr tail kept."""
        rule = self.rules[rid]
        status = _END_STATUS.get(result.status, "failed")
        code = result.exit_code
        m = result.measured
        if result.stderr_tail:  # (a rule's directory name is made only for a tail to keep)
            self.events.keep_stderr(failed_dir_name(rule.name), result.stderr_tail)
        sampled = m.samples
        cpu = m.cores * m.wall_time_s  # (rounded when not 0.0: a null command's is)
        ev = {
            "t": None, "ev": "end", "rule": rid, "status": status,
            "attempt": st.attempts.get(rid, 1), "worker": result.worker or None,
            "host": self.hosts.get(result.worker, result.worker) or None,
            "exit": code if code is not None and code >= 0 else None,
            "signal": -code if code is not None and code < 0 else None,
            "wall_s": m.wall_time_s, "cpu_s": round(cpu, 4) if cpu else cpu,
            # What only samples see is unknown, not 0, for a command too short to be sampled
            # (a peak memory at all is known when the kernel's account was above the worker's).
            "mem_peak_mb": m.memory_mb if m.memory_mb or sampled else None,
            "disk_mb": m.disk_mb if sampled else None,
            "bytes_read": m.bytes_read if sampled else None,
            "bytes_written": m.bytes_written if sampled else None,
            "input_bytes": sum([self.sizes.get(norm(f.path), 0) for f in rule.sources])
            if rule.sources else 0,
            "message": "" if status == "ok" else _describe(result), "retrying": retrying}
        if status != "ok" and status != "withdrawn" and not retrying:
            ev["info"] = os.path.join(self._failed_dir(rule), "INFO")
            ev["stderr"] = _last_lines(result.stderr_tail, STDERR_LINES)
        self.events.emit_event(ev)

    # -- garbage collection (-g, see core/collection.py) ------------------------------------

    def _reference_counts(self, to_run: set[int]) -> dict[str, int]:
        """For each made file read by a rule that will run: how many such rules read it."""
        # (from the rules, not their keys: asking for outputs_of would make every key now)
        rules = self.rules
        made = {norm(t.path) for rid in self.plan.order for t in rules[rid].targets}
        refs: dict[str, int] = {}
        for rid in to_run:
            for f in self.rules[rid].sources:
                p = norm(f.path)
                if p in made and p not in self.options.protected:
                    refs[p] = refs.get(p, 0) + 1
        return refs

    def _collect(self, st: _State, rule: RuleSpec) -> None:
        """Note the intermediates whose last consumer this rule was, then delete as many of
        the collectible files as the -g policy says."""
        for f in rule.sources:
            p = norm(f.path)
            if p not in st.refs:
                continue
            st.refs[p] -= 1
            rec = self.journal.state.files.get(p)
            if not st.refs[p] and rec is not None and not rec.collected:
                st.collectible[p] = None
        self._delete(st, self.options.gc.how_many(len(st.collectible), st.alive,
                                                  self.free_bytes))

    def _delete(self, st: _State, n: int) -> None:
        """Delete the `n` files that became collectible first."""
        for p in list(st.collectible)[:n]:
            del st.collectible[p]
            rec = self.journal.state.files[p]
            remove_path(self.path(p))
            if self.store is not None and not self.options.shared_store:
                self.store.remove(rec.key)  # else the store's link keeps the bytes alive
            self.journal.collected(p)
            st.alive -= 1

    def _free_bytes(self) -> int:
        """Space left on the disk holding the workflow (-g on_demand watches it)."""
        try:
            st = os.statvfs(self.root)
        except OSError:
            return 1 << 62  # unknown, as Makeflow takes it: not low
        return st.f_bavail * st.f_frsize

    # -- files that stay on workers -------------------------------------------------------

    def _remote_reference_counts(self, to_run: set[int]) -> dict[str, int]:
        """For each file a rule that will run leaves on the workers (`@temp`,
        --keep-intermediates-remote), how many rules that will run read it.

        Workflow outputs and `@cache forever` files are not counted: they are never forgotten.
        """
        refs: dict[str, int] = {}
        remote = self.options.remote
        for rid in to_run:
            rule = self.rules[rid]
            if not (rule.temp or rule.mini or rid in remote):
                continue  # (stays_remote's first test, without a call per rule)
            if rule.cache_forever or not self.stays_remote(rid):
                continue
            outs = {norm(f.path) for f in rule.targets} - self.options.protected
            for d in self.dependents[rid]:
                if d not in to_run:
                    continue
                for f in self.rules[d].sources:
                    p = norm(f.path)
                    if p in outs:
                        refs[p] = refs.get(p, 0) + 1
        return refs

    def _forget_dead(self, st: _State, rule: RuleSpec) -> None:
        """Tell the executor which remote files `rule`, just succeeded, was the last to read.

        Only a success counts: a failed reader that will be retried still needs its inputs,
        and with -k one that failed for good keeps them until the workflow ends.
        """
        dead = []
        for f in rule.sources:
            p = norm(f.path)
            if p in st.remote_refs:
                st.remote_refs[p] -= 1
                if not st.remote_refs[p]:
                    del st.remote_refs[p]
                    dead.append(p)
        if dead:
            self.executor.forget([self.keys.files[p] for p in dead])


_END_STATUS = {"ok": "ok", "withdrawn": "withdrawn", "lost": "lost"}
STDERR_LINES = 20  # of a failed rule's stderr, in its end event and on the terminal


def _last_lines(text: str, n: int) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-n:])


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _describe(result: TaskResult) -> str:
    """How an attempt ended, in a few words: `exit code 3`, `missing output: out.txt`."""
    reason = result.reason
    if result.status == "failed":
        code = f"exit code {result.exit_code}" if result.exit_code is not None else "failed"
        # a library call's reason says what went wrong ("no function named 'f'")
        return f"{code}: {reason}" if reason and not reason.startswith("exit code") else code
    if result.status == "signaled" and result.exit_code is not None:
        return f"killed by signal {-result.exit_code}"
    text = result.status.replace("_", " ")
    if reason.startswith(text):  # the reason says it already: "missing output: x"
        return reason
    return f"{text}: {reason}" if reason else text


def info_record(rule: RuleSpec, result: TaskResult) -> str:
    """The INFO file written beside a failed rule's outputs."""
    m = result.measured
    lines = [
        f"rule: {rule.name}",
        f"location: {rule.location}",
        f"command: {rule.command}",
        f"status: {result.status}",
        f"exit code: {result.exit_code if result.exit_code is not None else '-'}",
        f"reason: {result.reason or '-'}",
        f"worker: {result.worker or '-'}",
        f"measured: cores={m.cores:g} memory_mb={m.memory_mb:g} disk_mb={m.disk_mb:g} "
        f"wall_time_s={m.wall_time_s:.3f}",
        "stderr tail:",
        result.stderr_tail.rstrip("\n"),
    ]
    return "\n".join(lines) + "\n"

