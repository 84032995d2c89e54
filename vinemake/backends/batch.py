"""What every pilot-job batch system shares: workers scaled to the work waiting, politely.

A batch provider submits `vinemake-worker HOST PORT ...` as job arrays and lets the manager
schedule rules on whatever connects. The per-system modules (slurm, pbs, sge, condor) only
say how to write a submit script and how to read their commands' output (a `BatchSystem`);
everything else lives here, because a cluster's administrators judge all of them alike:

- Never one job per rule, and never a status query per task: at most one status query
  (squeue/qstat/condor_q) every `poll_interval_s` (30 s), and none while nothing is submitted.
  Between polls the provider trusts its own bookkeeping plus the manager's worker counts.
- A refused submission (busy controller, QOS limit) is retried with exponential backoff and a
  message saying when; only a refusal that can never succeed (a resource request no node
  can satisfy, an unknown option) stops the run, as an InfrastructureError.
- Everything submitted is cancelled in close(), which the manager calls on every exit path;
  after `kill -9` of vinemake, workers exit by themselves after their idle --timeout.

Deciding is a pure function (`plan_workers`); the I/O goes through `CommandRunner` and `Clock`,
both with fakes below for tests.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import random
import shlex
import shutil
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import field, replace
from typing import Protocol

from vinemake.backends import Demand, ManagerAddress, ProviderOptions, options_tag
from vinemake.common.errors import InfrastructureError
from vinemake.common.paths import remove_path
from vinemake.common.records import dataclass
from vinemake.common.spec import Resources

__all__ = [
    "ArrayRequest", "BatchSystem", "BatchWorkers", "Clock", "CommandResult", "CommandRunner",
    "FakeClock", "FakeRunner", "JobStatus", "SubprocessRunner", "WorkerJob", "WorkerLaunch",
    "plan_workers", "reachable_host", "worker_argv", "worker_shape",
]

DEFAULT_MAX_WORKERS = 100
POLL_INTERVAL_S = 30.0
BACKOFF_FIRST_S = 5.0
BACKOFF_MAX_S = 300.0
PENDING_WARN_S = 300.0
# Polls in a row that find workers gone before any worker ever connected: the workers cannot
# reach the manager (wrong --manager-host, firewall) and retrying forever would hide that.
DEAD_ON_ARRIVAL_LIMIT = 5


# ---------------------------------------------------------------- plain data


@dataclass(frozen=True)
class ArrayRequest:
    """A decision: submit `count` workers, each offering `resources`, as one array job.

    `batch_options` are the BATCH_OPTIONS of the rules the workers are for, "" for none.
    """

    count: int
    resources: Resources
    batch_options: str = ""


@dataclass(frozen=True)
class WorkerLaunch:
    """Everything a BatchSystem needs to write one submit script."""

    count: int
    resources: Resources
    job_name: str
    worker_argv: tuple[str, ...]  # vinemake-worker HOST PORT ... (the system adds --name)
    batch_options: str = ""  # --batch-options, then the rules' BATCH_OPTIONS, one per line
    timeout_s: float = 60.0  # the worker's idle timeout, part of a pilot's time limit
    worker_tag: str = ""  # appended to each worker's --name: which rules' options it has


@dataclass(frozen=True)
class WorkerJob:
    """One array job this provider submitted, and how many of its workers may still be alive."""

    job_id: str
    resources: Resources
    count: int
    alive: int
    submitted_at: float
    name: str = ""
    pending_warned: bool = False
    batch_options: str = ""  # the rules' BATCH_OPTIONS it was submitted with


@dataclass(frozen=True)
class JobStatus:
    """What one status query says about one job: its workers waiting, running, and why."""

    pending: int = 0
    running: int = 0
    reason: str = ""


@dataclass(frozen=True)
class CommandResult:
    """The outcome of one batch command."""

    returncode: int
    stdout: str = ""
    stderr: str = ""
    missing: bool = False  # the program is not installed (not on PATH): no retry brings it


# ---------------------------------------------------------------- interfaces


class BatchSystem(Protocol):
    """How one batch system is spoken to. Pure: text in, text and argv out."""

    name: str  # "SLURM"; used in messages

    def submit_script(self, launch: WorkerLaunch) -> str: ...

    def submit_argv(self, launch: WorkerLaunch, script_path: str) -> list[str]: ...

    def parse_job_id(self, stdout: str) -> str: ...

    def status_argv(self, jobs: Sequence[WorkerJob]) -> list[str]: ...

    def parse_status(self, stdout: str) -> dict[str, JobStatus]: ...

    def status_key(self, job: WorkerJob) -> str: ...  # its key in parse_status's answer

    def cancel_argv(self, job_ids: Sequence[str]) -> list[str]: ...

    def permanent_error(self, message: str) -> bool: ...


def mentions_any(message: str, phrases: Sequence[str]) -> bool:
    """Whether a scheduler's message contains one of `phrases` (lower case), ignoring case."""
    lowered = message.lower()
    return any(p in lowered for p in phrases)


class QueueSystem:
    """What every BatchSystem here shares: jobs cancelled by id, refusals told apart by phrase.

    A subclass names its cancel program and the (lower-case) phrases of refusals that no
    amount of waiting fixes, and writes the rest of BatchSystem.
    """

    cancel_program = ""
    permanent: tuple[str, ...] = ()

    def status_key(self, job: WorkerJob) -> str:
        return job.job_id

    def cancel_argv(self, job_ids: Sequence[str]) -> list[str]:
        return [self.cancel_program, *job_ids]

    def permanent_error(self, message: str) -> bool:
        return mentions_any(message, self.permanent)


class CommandRunner(Protocol):
    """Runs one batch command (sbatch, squeue, scancel, ...) to completion."""

    def run(self, argv: Sequence[str]) -> CommandResult: ...


class Clock(Protocol):
    """Monotonic seconds."""

    def monotonic(self) -> float: ...


class SubprocessRunner:
    """The real runner. A missing program or a hung controller becomes a failed CommandResult."""

    def __init__(self, timeout_s: float = 120.0):
        self.timeout_s = timeout_s

    def run(self, argv: Sequence[str]) -> CommandResult:
        try:
            done = subprocess.run(list(argv), capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, timeout=self.timeout_s)
        except FileNotFoundError:
            return CommandResult(127, "", f"{argv[0]}: command not found", missing=True)
        except PermissionError:
            return CommandResult(126, "", f"{argv[0]}: permission denied", missing=True)
        except subprocess.TimeoutExpired:
            return CommandResult(124, "", f"{argv[0]} did not answer within {self.timeout_s:g} s")
        return CommandResult(done.returncode, done.stdout, done.stderr)


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeRunner:
    """Records every command; answers from `responders`, keyed by program name.

    A responder is a CommandResult or a callable (argv, script text or None) → CommandResult.
    The submit script is read at call time (the provider deletes it afterwards), so tests can
    assert on the exact text a batch system would have received.
    """

    responders: dict[str, object] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)

    def run(self, argv: Sequence[str]) -> CommandResult:
        argv = list(argv)
        self.calls.append(argv)
        script = None
        if argv and os.path.isfile(argv[-1]):
            with open(argv[-1]) as f:
                script = f.read()
            self.scripts.append(script)
        answer = self.responders.get(os.path.basename(argv[0]), CommandResult(0))
        return answer(argv, script) if callable(answer) else answer  # type: ignore[return-value]

    def programs(self) -> list[str]:
        return [os.path.basename(c[0]) for c in self.calls]


# ---------------------------------------------------------------- decisions (pure)


def worker_shape(task: Resources, options: ProviderOptions) -> Resources:
    """The worker to ask for so `task` fits: --cores/--memory/... when given, else the task's own.

    Cores are whole (batch systems allocate CPUs) and at least 1.
    """
    fixed = options.worker_resources
    if any(v is not None for v in (fixed.cores, fixed.memory_mb, fixed.disk_mb, fixed.gpus)):
        base = fixed
        wall = fixed.wall_time_s if fixed.wall_time_s is not None else task.wall_time_s
    else:
        base, wall = task, task.wall_time_s
    cores = max(1, math.ceil(base.cores)) if base.cores else 1
    return Resources(cores=cores, memory_mb=base.memory_mb, disk_mb=base.disk_mb,
                     gpus=base.gpus or None, wall_time_s=wall)


def _slots(worker: Resources, task: Resources) -> int:
    """How many copies of `task` one worker of shape `worker` can run at once (at least 1)."""
    fits = [int((worker.cores or 1) // max(task.cores or 1, 1e-9))]
    for have, need in ((worker.memory_mb, task.memory_mb), (worker.disk_mb, task.disk_mb),
                       (worker.gpus, task.gpus)):
        if have and need:
            fits.append(have // need)
    return max(1, min(fits))


def plan_workers(demand: Demand, jobs: Sequence[WorkerJob], options: ProviderOptions,
                 max_workers: int) -> list[ArrayRequest]:
    """Which arrays to submit now so the waiting tasks get workers. No I/O.

    Workers already submitted but not yet connected ("starting") are counted against the
    need, newest submissions first (the oldest ones are the likeliest to have connected).
    Idle connected workers are assumed to take waiting tasks first, except tasks with
    BATCH_OPTIONS: those run only on workers submitted with the same options, so they are
    grouped by (worker shape, options), one array each.
    """
    alive = sum(j.alive for j in jobs)
    room = max(0, max_workers - alive)
    starting = max(0, alive - demand.connected_workers)
    starting_by_kind: dict[tuple[Resources, str], int] = {}
    for job in sorted(jobs, key=lambda j: j.submitted_at, reverse=True):
        take = min(job.alive, starting)
        starting -= take
        kind = (job.resources, job.batch_options)
        starting_by_kind[kind] = starting_by_kind.get(kind, 0) + take

    extra = tuple(demand.waiting_batch_options)
    extra += ("",) * (len(demand.waiting) - len(extra))
    idle = demand.idle_workers
    need: dict[tuple[Resources, str], float] = {}  # insertion order = order the work arrived
    for task, batch_options in zip(demand.waiting, extra, strict=False):
        if idle and not batch_options:
            idle -= 1
            continue
        shape = worker_shape(task, options)
        kind = (shape, batch_options)
        need[kind] = need.get(kind, 0.0) + 1.0 / _slots(shape, task)

    plan = []
    for (shape, batch_options), workers in need.items():
        count = min(math.ceil(workers - 1e-9) - starting_by_kind.get((shape, batch_options), 0),
                    room)
        if count > 0:
            plan.append(ArrayRequest(count, shape, batch_options))
            room -= count
    short = options.min_workers - alive - sum(r.count for r in plan)
    if short > 0 and room > 0:
        plan.append(ArrayRequest(min(short, room), worker_shape(Resources(), options)))
    return plan


def worker_argv(program: str, manager: ManagerAddress, resources: Resources,
                timeout_s: float) -> tuple[str, ...]:
    """`vinemake-worker HOST PORT --cores N ...` for a worker offering exactly `resources`."""
    argv = [program, manager.host, str(manager.port), "--cores", str(int(resources.cores or 1))]
    for flag, value in (("--memory", resources.memory_mb), ("--disk", resources.disk_mb),
                        ("--gpus", resources.gpus)):
        if value:
            argv += [flag, str(value)]
    argv += ["--timeout", f"{timeout_s:g}"]
    if manager.password_file:
        argv += ["--password", os.path.abspath(manager.password_file)]
    if manager.ssl:
        argv.append("--ssl")
    return tuple(argv)


def reachable_host(host: str, hostname: Callable[[], str] = socket.getfqdn) -> str:
    """The name workers should connect to: a wildcard listen address is not one.

    Choosing the right interface is the manager's job (`--manager-host`); this only makes
    sure a job never gets told to connect to 0.0.0.0, which means "this machine" to it.
    """
    if host not in ("", "0.0.0.0", "::"):
        return host
    name = hostname()
    return socket.gethostname() if name.startswith("localhost") else name


def join_options(user: str, rule: str) -> str:
    """--batch-options, then a rule's BATCH_OPTIONS: later options win on every system.

    One per line, because an HTCondor submit file takes one command per line; the others
    split the text on any whitespace.
    """
    return "\n".join(o for o in (user.strip(), rule.strip()) if o)


def shell_line(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def wall_minutes(resources: Resources, timeout_s: float) -> int | None:
    """A pilot's time limit: the rule's WALL_TIME plus the idle timeout, in whole minutes."""
    if resources.wall_time_s is None:
        return None
    return max(1, math.ceil((resources.wall_time_s + timeout_s) / 60))


def hms(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def backoff_s(failures: int) -> float:
    """5 s, 10 s, 20 s, ... capped at 5 minutes."""
    return min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, failures - 1))


def find_worker_program() -> str:
    """An absolute vinemake-worker path, so a compute node with another PATH still finds it.

    The one installed beside this Python comes first: a PATH entry may be a shim (pyenv)
    that costs every worker start a shell script or two.
    """
    beside = os.path.join(os.path.dirname(sys.executable), "vinemake-worker")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("vinemake-worker")
    return os.path.abspath(found) if found else "vinemake-worker"


def _last_line(text: str) -> str:
    """The line of a command's output that says what went wrong: its last error line."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines[:1] or ["(no output)"])[-1]


def _say(message: str) -> None:
    # Through logging: a run routes it to its reporter, above the live status line.
    logging.getLogger("vinemake.backends").warning("%s", message)


# ---------------------------------------------------------------- the provider


class BatchWorkers:
    """A WorkerProvider over one BatchSystem. Subclasses only choose the system.

    scale() returns at once: the batch commands (which block while a controller is busy) run
    on one background thread that always acts on the newest Demand. `step()` is the same work
    done synchronously, for tests and for that thread.
    """

    system_class: Callable[[], BatchSystem] | None = None  # what a subclass speaks
    # It submits workers shaped to the rules that wait: a rule bigger than every worker now
    # connected waits for one (a request no node can satisfy is refused by the system).
    sizes_workers = True

    def __init__(self, runner: CommandRunner | None = None, clock: Clock | None = None, *,
                 system: BatchSystem | None = None, log: Callable[[str], None] = _say,
                 background: bool = True, poll_interval_s: float = POLL_INTERVAL_S):
        assert system is not None or self.system_class is not None
        self.system = system or self.system_class()
        self.runner = runner or SubprocessRunner()
        self.clock = clock or SystemClock()
        self.log = log
        self.background = background
        self.poll_interval_s = poll_interval_s
        self.jobs: list[WorkerJob] = []
        self.submitted: list[str] = []  # every job id ever submitted: all are cancelled on close
        self.manager: ManagerAddress | None = None
        self.options = ProviderOptions()
        self.run_name = "vm"
        self.names: list[str] = []  # the job name of each submission, in order
        self.worker_program = "vinemake-worker"
        self._last_poll: float | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._ever_connected = False
        self._last_connected = 0
        self._last_left = 0
        self._gone = 0  # workers seen hanging up since the last step
        self._dead_polls = 0
        self._scripts: str | None = None
        self._closed = False
        self._lock = threading.Lock()  # step() and close() never interleave batch commands
        self._wake = threading.Condition()
        self._latest: Demand | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    # -- WorkerProvider

    def start(self, manager: ManagerAddress, options: ProviderOptions) -> None:
        self.manager = replace(manager, host=reachable_host(manager.host))
        self.options = options
        # Short, because qstat cuts names at 15-16 characters and PBS status is read by name:
        # vm-<4 random base-36 characters>-<submission number>.
        self.run_name = "vm-" + "".join(random.choices(string.ascii_lowercase + string.digits,
                                                       k=4))
        self.worker_program = dict(options.extra).get("worker_program") or find_worker_program()
        self._scripts = tempfile.mkdtemp(prefix="vinemake-batch-")
        # Belt and braces for exit paths that skip the manager's close (an uncaught SystemExit
        # from a signal handler): jobs must not outlive the run.
        atexit.register(self.close)
        if self.background:
            self._thread = threading.Thread(target=self._drive, name="batch-workers",
                                            daemon=True)
            self._thread.start()
        if options.min_workers:
            self.scale(Demand())

    def scale(self, demand: Demand) -> None:
        # A failure that retrying cannot fix is raised again on every call, and nothing more
        # is submitted: a caller that only logs it must not turn it into an sbatch a second.
        if self._error is not None:
            raise self._error
        with self._wake:
            # Seen here, on the caller's thread, because the background thread only acts on
            # the newest demand: a worker that came and went between two steps still counts.
            connected = demand.connected_workers
            if demand.workers_joined or demand.workers_left:  # the manager counts for us
                self._ever_connected |= demand.workers_joined > 0
                self._gone += max(0, demand.workers_left - self._last_left)
                self._last_left = demand.workers_left
            else:  # sampled: a worker that came and went within a second is missed
                self._ever_connected |= connected > 0
                self._gone += max(0, self._last_connected - connected)
            self._last_connected = connected
            if self.background:
                self._latest = demand
                self._wake.notify()
        if not self.background:
            try:
                self.step(demand)
            except InfrastructureError as error:
                self._error = error
                raise

    def close(self) -> None:
        with self._wake:
            if self._closed:
                return
            self._closed = True
            self._wake.notify()
        atexit.unregister(self.close)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=150)
        with self._lock:
            if self.submitted:
                # One cancel for everything, including jobs believed finished: an idle worker
                # that is about to exit is cheaper to cancel than to poll for.
                result = self.runner.run(self.system.cancel_argv(self.submitted))
                if result.returncode != 0 and any(j.alive for j in self.jobs):
                    self.log(f"could not cancel {self.system.name} jobs "
                             f"{' '.join(self.submitted)}: {_last_line(result.stderr)}")
            if self._scripts:
                remove_path(self._scripts)

    # -- the work

    def step(self, demand: Demand) -> None:
        """Poll if due, then submit what `plan_workers` asks for, unless backing off."""
        with self._lock:
            if self._closed or self.manager is None or self._error is not None:
                return
            with self._wake:
                gone, self._gone = self._gone, 0
            self._forget(gone)
            self._maybe_poll()
            now = self.clock.monotonic()
            if now < self._retry_at:
                return
            for request in plan_workers(demand, self.jobs, self.options, self.max_workers):
                if not self._submit(request, now):
                    break

    @property
    def max_workers(self) -> int:
        return self.options.max_workers or DEFAULT_MAX_WORKERS

    def _submit(self, request: ArrayRequest, now: float) -> bool:
        assert self.manager is not None and self._scripts is not None
        launch = WorkerLaunch(
            count=request.count, resources=request.resources,
            job_name=f"{self.run_name}-{len(self.submitted) + 1}",
            worker_argv=worker_argv(self.worker_program, self.manager, request.resources,
                                    self.options.worker_timeout_s),
            batch_options=join_options(self.options.batch_options, request.batch_options),
            timeout_s=self.options.worker_timeout_s,
            worker_tag=options_tag(request.batch_options))
        script = os.path.join(self._scripts, f"workers-{len(self.submitted) + 1}.sh")
        with open(script, "w") as f:
            f.write(self.system.submit_script(launch))
        argv = self.system.submit_argv(launch, script)
        result = self.runner.run(argv)
        job_id = self.system.parse_job_id(result.stdout) if result.returncode == 0 else ""
        os.unlink(script)
        if not job_id:
            self._submit_failed(argv, result)
            return False
        self._failures = 0
        if self._last_poll is None:  # squeue right after sbatch would only repeat what we know
            self._last_poll = now
        self.submitted.append(job_id)
        self.names.append(launch.job_name)
        self.jobs.append(WorkerJob(job_id, request.resources, request.count, request.count, now,
                                   launch.job_name, batch_options=request.batch_options))
        return True

    def _submit_failed(self, argv: Sequence[str], result: CommandResult) -> None:
        why = _last_line(result.stderr or result.stdout)
        program = os.path.basename(argv[0])
        if result.missing:
            raise InfrastructureError(
                f"{why}: the batch system's submit command is not installed here (or not on "
                f"PATH), so no worker can ever start; install it, or choose another -T")
        if self.system.permanent_error(result.stderr + result.stdout):
            raise InfrastructureError(
                f"{program} refused the worker jobs and retrying cannot help: {why}\n"
                f"  command: {shell_line(argv)}")
        self._failures += 1
        delay = backoff_s(self._failures)
        self._retry_at = self.clock.monotonic() + delay
        self.log(f"{program} failed (exit {result.returncode}): {why}; "
                 f"retrying in {delay:g} s (attempt {self._failures + 1})")

    def _forget(self, gone: int) -> None:
        """A worker that hung up is a pilot job ending (idle exit, scancel, node failure).

        Counting it gone now, rather than at the next status poll up to 30 s later, lets a
        killed worker's re-queued task get a replacement at once. The oldest jobs are the
        likeliest to hold connected workers, so they are debited first.
        """
        jobs = []
        for job in sorted(self.jobs, key=lambda j: j.submitted_at):
            take = min(gone, job.alive)
            gone -= take
            if job.alive - take:
                jobs.append(replace(job, alive=job.alive - take))
        self.jobs = jobs

    def _maybe_poll(self) -> None:
        """One status query for all our jobs, at most every poll_interval_s."""
        live = [j for j in self.jobs if j.alive > 0]
        now = self.clock.monotonic()
        if not live or (self._last_poll is not None
                        and now - self._last_poll < self.poll_interval_s):
            return
        self._last_poll = now
        result = self.runner.run(self.system.status_argv(live))
        if result.returncode != 0:
            self.log(f"{self.system.name} status query failed: {_last_line(result.stderr)}; "
                     f"keeping the previous picture for {self.poll_interval_s:g} s")
            return
        self._apply_status(self.system.parse_status(result.stdout), now)

    def _apply_status(self, status: dict[str, JobStatus], now: float) -> None:
        ended = 0
        jobs = []
        for job in self.jobs:
            seen = status.get(self.system.status_key(job), JobStatus())
            alive = min(job.alive, seen.pending + seen.running)
            ended += job.alive - alive
            if seen.pending and not job.pending_warned and now - job.submitted_at >= PENDING_WARN_S:
                self.log(f"{self.system.name} job {job.job_id}: {seen.pending} workers still "
                         f"waiting after {int(now - job.submitted_at)} s"
                         + (f" ({seen.reason})" if seen.reason else ""))
                job = replace(job, pending_warned=True)
            if alive:
                jobs.append(replace(job, alive=alive))
        self.jobs = jobs
        if ended and not self._ever_connected:
            self._dead_on_arrival(ended)
        elif self._ever_connected:
            self._dead_polls = 0

    def _dead_on_arrival(self, ended: int) -> None:
        assert self.manager is not None
        self._dead_polls += 1
        message = (f"{ended} {self.system.name} worker jobs ended before any worker connected to "
                   f"{self.manager.host}:{self.manager.port}; check that compute nodes can "
                   f"reach that address (--manager-host) and keep worker logs with "
                   f"--batch-options")
        if self._dead_polls >= DEAD_ON_ARRIVAL_LIMIT:
            raise InfrastructureError(message)
        self.log(message)
        self._failures += 1
        self._retry_at = self.clock.monotonic() + backoff_s(self._failures)

    def _drive(self) -> None:
        """The background thread: act on the newest demand until closed."""
        while True:
            with self._wake:
                while self._latest is None and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                demand, self._latest = self._latest, None
            try:
                self.step(demand)
            except InfrastructureError as error:  # handed to the manager by the next scale()
                self._error = error
            except Exception as error:  # a bug must not leave the run waiting for workers
                self._error = InfrastructureError(
                    f"starting {self.system.name} workers failed: {error!r}")
