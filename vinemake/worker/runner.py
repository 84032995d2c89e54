"""Runs one task on a worker: inputs in, command (or library call) run and watched, outputs out.

    fetch missing inputs into the cache (verified against their content hash, next source on
    failure) → link inputs into an empty sandbox → run `/bin/sh -c` in it → if it exited 0 and
    made every output, rename the outputs into the cache by key; otherwise keep whatever outputs
    exist under `failed.*` keys for the manager to put in the task's failed_dir.

Same host as the manager: an input is linked straight from its path on the manager's host when
the cache does not have it, so no byte is copied.

A command is started with glibc's `posix_spawn` (vfork, then exec; through ctypes, because
Python's `os.posix_spawn` cannot set the working directory) and is not waited for by a
thread: the monitor reaps it and calls back, and the task finishes on the monitor's thread.
`subprocess.Popen` costs about twice the worker's CPU per command (docs/performance.md),
most of it Python code around the same vfork; it remains the fallback where glibc lacks
`posix_spawn_file_actions_addchdir_np` (before 2.29).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import dataclasses
import itertools
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable

from vinemake.common.amounts import NOTHING, Amounts, Pool, held_by, offered_by
from vinemake.common.hashing import hash_tree as tree_hash
from vinemake.common.paths import remove_path
from vinemake.common.records import dataclass
from vinemake.common.spec import Resources
from vinemake.common.task import Measured, MiniTask, Task, TaskResult, command_env
from vinemake.wire.protocol import MINI, URL, ProtocolError, TaskOutcome
from vinemake.worker.cachedir import CacheDir
from vinemake.worker.environments import (
    EnvironmentError_,
    activate,
    environment_key,
    fix_up,
    unpack,
)
from vinemake.worker.libraries import CallHandle, LibraryPool, library_path, split_call
from vinemake.worker.monitor import Monitor
from vinemake.worker.sandbox import (
    SandboxError,
    check_key,
    check_name,
    is_empty,
    link_in,
    tree_size,
)

__all__ = ["FileSource", "Fetch", "Runner", "Slots", "TAIL_BYTES"]

TAIL_BYTES = 2048
INLINE_MAX = 4096  # bytes: outputs up to this size go back inside the Done message


@dataclass(frozen=True)
class FileSource:
    """Where a file can be fetched from: a peer's or the manager's file server."""

    host: str
    port: int
    label: str
    tls: bool = False  # only the manager has a certificate; peers authenticate but do not encrypt


@dataclass(frozen=True)
class Fetch:
    """An input the manager says this worker lacks, with the sources to try in order."""

    key: str
    hash: str
    sources: tuple[FileSource, ...]


# (source, key, dest path, expected hash) -> (size, hash); raises on failure
Fetcher = Callable[[FileSource, str, str, str], tuple[int, str]]
# (key, source label, size, start, end, ok, hash, reason)
TransferListener = Callable[..., None]


class Slots:
    """Which tasks this worker may start now: first come, first started, within its resources.

    The manager may send a few tasks beyond what fits (a queue on the worker), so that a slot
    freed by a finished task is filled at once instead of after the result's round trip to
    the manager. Tasks start in arrival order; one that does not fit waits for resources,
    and so do the ones behind it. With nothing running the head starts whatever it asks,
    so a task the manager judged to fit can never wait forever.

    `max_tasks` (the manager's -j, 0 for none) caps how many run at once, library calls
    included: they hold no slot resources here (their library instance does) but count.
    """

    def __init__(self, total: Resources, max_tasks: int = 0):
        self._free = Pool(offered_by(total))
        self._queue: collections.deque = collections.deque()  # (task, payload, need)
        self._running = 0  # commands and calls
        self.max_tasks = max_tasks
        self._lock = threading.Lock()

    def offer(self, task: Task, payload=None) -> bool:
        """True: start `task` now (charged). False: it waits in the queue."""
        need = _need(task)
        with self._lock:
            if not self._queue and self._fits(need):
                self._free.take(need)
                self._running += 1
                return True
            self._queue.append((task, payload, need))  # its need, worked out once
            return False

    def release(self, task: Task) -> list:
        """`task` ended: the (task, payload) pairs that may start now (charged)."""
        need = _need(task)
        with self._lock:
            self._free.give(need)
            self._running -= 1
            ready = []
            queue = self._queue
            while queue and self._fits(queue[0][2]):
                waiting, payload, need = queue.popleft()
                self._free.take(need)
                self._running += 1
                ready.append((waiting, payload))
            return ready

    def call_started(self) -> None:
        """A library call started (never queued: its instance holds the resources)."""
        with self._lock:
            self._running += 1

    def waiting(self) -> int:
        """How many tasks wait (a snapshot)."""
        return len(self._queue)

    def cancel(self, task_id: int):
        """Take a waiting task out of the queue: its (task, payload), or None."""
        with self._lock:
            for entry in self._queue:
                if entry[0].id == task_id:
                    self._queue.remove(entry)
                    return entry[0], entry[1]
            return None

    def clear(self) -> list:
        """Forget every waiting task (their manager is gone); what was waiting."""
        with self._lock:
            waiting, self._queue = self._queue, collections.deque()
            return [(task, payload) for task, payload, _ in waiting]

    def _fits(self, need: Amounts) -> bool:
        if self._running == 0:
            return True
        if self.max_tasks and self._running >= self.max_tasks:
            return False
        return self._free.fits(need)


def _need(task: Task) -> Amounts:
    """What a task holds while it runs, as the manager counts it (a call: nothing here)."""
    return NOTHING if task.library is not None else held_by(task.resources)


class MiniFailed(Exception):
    """A `@mini` rule's command failed (or made less than it declared) on this worker."""

    def __init__(self, code: int, message: str, tail: str):
        super().__init__(message)
        self.code, self.tail = code, tail


class FetchFailed(ProtocolError):
    """No source could give an input; the manager decides what to try next."""

    def __init__(self, key: str, sources: tuple[str, ...], message: str):
        super().__init__(message)
        self.key, self.sources = key, sources


class Runner:
    """Everything a task needs on this worker; run() is called from pool threads."""

    def __init__(self, cache: CacheDir, monitor: Monitor, fetcher: Fetcher, run_dir: str,
                 worker_name: str, same_host: bool = False,
                 libraries: LibraryPool | None = None,
                 on_transfer: TransferListener = lambda *a: None,
                 on_start: Callable[[int, float], None] = lambda task_id, t: None,
                 spare: Iterable[str] = ()):
        self.cache = cache
        self.monitor = monitor
        self.fetcher = fetcher
        self.same_host = same_host
        self.libraries = libraries
        self.worker_name = worker_name
        self.on_transfer = on_transfer
        self.on_start = on_start  # (task id, unix time) as its command or call begins
        self.sandbox_root = os.path.join(run_dir, "sandbox")
        self.tmp_dir = os.path.join(run_dir, "tmp")
        os.makedirs(self.sandbox_root, exist_ok=True)
        os.makedirs(self.tmp_dir, exist_ok=True)
        # A worker that reconnects builds a new Runner over the same run directory: number
        # past the sandboxes of its earlier sessions rather than trip over them.
        self._counter = itertools.count(_next_free(self.sandbox_root))
        # Threads: `_key_locks` (key -> [lock, users]) and `watches` are shared by the task
        # threads, the monitor's thread (which finishes commands) and the worker's session
        # thread (which kills them): each is read and written under `_locks_lock` only.
        # A key's lock lives while some thread fetches or waits for that key.
        self._key_locks: dict[str, list] = {}
        self._spare: list[str] = list(spare)  # empty sandboxes, e.g. an earlier session's
        self._sandbox_fds: dict[str, int] = {}  # sandbox -> its directory, open (_give_back)
        self._watches: dict[int, object] = {}  # task id -> Watch, while its command runs
        self._calls: dict[int, CallHandle] = {}  # task id -> its library call, until it ends
        self.closed = False  # its session ended (close())
        # Unpacked environment's path -> its activated variables (each written under the
        # environment's key lock).
        self._activated: dict[str, tuple[tuple[str, str], ...]] = {}
        self._base_env = dict(os.environb)  # bytes: subprocess need not encode it per task
        if _API is not None:
            _API.note_signals()  # what its commands ignore: what this process ignores now
        self._own_peak_kb = 0  # this worker's peak RSS when last asked (_command_peak_mb)
        self._locks_lock = threading.Lock()

    # ------------------------------------------------------------ one task

    def run(self, task: Task, fetches: tuple[Fetch, ...] = ()) -> TaskOutcome:
        """Run `task` and wait for its outcome."""
        got: list[TaskOutcome] = []
        over = threading.Event()

        def done(outcome: TaskOutcome) -> None:
            got.append(outcome)
            over.set()

        self.start(task, fetches, done)
        over.wait()
        return got[0]

    def start(self, task: Task, fetches: tuple[Fetch, ...], done: Callable[[TaskOutcome], None],
              exited: Callable[[], None] | None = None):
        """Set up and start `task`; `done(outcome)` is called once, now or when it ends.

        Fetching inputs and library calls block the calling thread; a command does not: it
        ends on the monitor's thread, which calls `exited()` as soon as the command is gone
        and before collecting its outputs, so that its slot can be given to the next task.
        """
        start = time.monotonic()
        try:
            self._check_names(task)
            for f in fetches:
                # A URL document read by a `@cache forever` rule is kept as its outputs are.
                self._ensure(f, task.cache_forever and f.key.startswith("url-"))
            if task.minis:
                self._make_minis(task)
            activated = (self._environment(task.environment, task.inputs)
                         if task.environment else ())
        except MiniFailed as e:
            done(self._result(task, "failed", e.code, str(e), e.tail,
                              Measured(wall_time_s=time.monotonic() - start)))
            return
        except FetchFailed as e:
            outcome = self._result(task, "error", reason=f"cannot set up the sandbox: {e}",
                                   measured=Measured(wall_time_s=time.monotonic() - start))
            done(dataclasses.replace(outcome, unfetched=((e.key, e.sources),)))
            return
        except (SandboxError, ProtocolError, OSError) as e:
            done(self._result(task, "error", reason=f"cannot set up the sandbox: {e}",
                              measured=Measured(wall_time_s=time.monotonic() - start)))
            return
        sandbox = self._take_sandbox()
        try:
            for f in task.inputs:
                self._link_input(f.key, f.path, sandbox, f.sandbox)
            for f in task.outputs:  # a nested target's directory exists, as in Makeflow
                if "/" in f.sandbox.rstrip("/"):
                    os.makedirs(os.path.dirname(os.path.join(sandbox, f.sandbox)),
                                exist_ok=True)
            if task.library is None:
                self._spawn(task, sandbox, done, exited, activated)
                return
            status, code, reason, tail, measured = self._call(task, sandbox)
            outcome = self._collect(task, sandbox, status, code, reason, tail, measured)
        except (SandboxError, ProtocolError, OSError) as e:
            outcome = self._result(task, "error", reason=f"cannot set up the sandbox: {e}",
                                   measured=Measured(wall_time_s=time.monotonic() - start))
        self._give_back(sandbox)
        done(outcome)

    # Sandbox directories are emptied and reused rather than removed: creating and removing
    # a directory per task costs more than a small task itself on some filesystems (ext4
    # mounted with `discard` frees the directory's block synchronously).

    def _take_sandbox(self) -> str:
        with self._locks_lock:
            if self._spare:
                return self._spare.pop()
        sandbox = os.path.join(self.sandbox_root, str(next(self._counter)))
        os.mkdir(sandbox)
        return sandbox

    def _give_back(self, sandbox: str) -> None:
        with self._locks_lock:  # (close() closes the directories under it)
            fd = self._sandbox_fds.get(sandbox)
            if fd is not None and is_empty(fd):  # most tasks leave nothing behind
                self._spare.append(sandbox)
                return
        try:
            with os.scandir(sandbox) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        remove_path(entry.path)
                    else:
                        os.unlink(entry.path)
        except OSError:
            with self._locks_lock:
                fd = self._sandbox_fds.pop(sandbox, None)
            if fd is not None:
                os.close(fd)
            remove_path(sandbox)
            return
        with self._locks_lock:
            if fd is None and not self.closed:
                # Kept open from now on: the next give-back reads it without opening it.
                with contextlib.suppress(OSError):
                    self._sandbox_fds[sandbox] = os.open(
                        sandbox, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self._spare.append(sandbox)

    def _check_names(self, task: Task) -> None:
        for f in (*task.inputs, *task.outputs):
            check_name(f.sandbox)
            check_key(f.key)

    def _spawn(self, task: Task, sandbox: str, done: Callable[[TaskOutcome], None],
               exited: Callable[[], None] | None, activated: tuple = ()) -> None:
        # Wall time counts from before the spawn: a short command may be over by the time
        # the spawn returns, and cores = CPU / wall would come out absurdly high.
        spawned = time.monotonic()
        self.on_start(task.id, time.time())
        env = (*activated, *command_env(task)) if activated else command_env(task)
        memory = self.monitor.memory
        limit = memory.start(task.resources.memory_mb)
        pid, proc = spawn_shell(memory.command(limit, task.command), sandbox, env,
                                self._base_env, _err_path(sandbox))
        watch = self.monitor.watch(pid, task.resources, sandbox, start=spawned)
        watch.memory_limit = limit
        with self._locks_lock:
            self._watches[task.id] = watch
        ran = _Started(task, sandbox, proc, watch, done)
        self.monitor.reap(watch, lambda code, usage: self._finish(ran, code, usage),
                          exited)

    def _finish(self, ran: _Started, code: int, usage) -> None:
        """The command of `ran` exited: collect its outputs, report (monitor's thread)."""
        task, sandbox, watch = ran.task, ran.sandbox, ran.watch
        with self._locks_lock:
            self._watches.pop(task.id, None)
        # When the monitor reaped it: finishing may come a few milliseconds later.
        end = watch.ended if watch.ended is not None else time.monotonic()
        if ran.proc is not None:
            ran.proc.returncode = code  # so its Popen never waits for the pid itself
        # The kernel's account of the command (and what it waited for) covers tasks too
        # short for the monitor to have sampled them.
        if usage is not None:
            watch.cpu_s = max(watch.cpu_s, usage.ru_utime + usage.ru_stime)
            watch.peak_memory_mb = max(watch.peak_memory_mb, self._command_peak_mb(usage))
        measured = watch.measured(end)
        limited = self.monitor.memory.end(watch.memory_limit, code)
        if limited is not None and watch.memory_limit.cgroup is not None:
            watch.reason = watch.reason or limited  # the kernel stopped it at its limit
        if watch.reason is not None:
            status, reason = "resource_exceeded", watch.reason
        elif code < 0:
            status, reason = "signaled", f"killed by signal {-code}"
        elif code > 0:
            status, reason = "failed", f"exit code {code}"
            if limited is not None:  # RLIMIT_DATA: an allocation failed, or something else
                reason += f" ({limited})"
        else:
            status, reason = "ok", ""
        # Every rule's last stderr is kept (`vinemake log`), not only a failure's.
        tail = _tail(_err_path(sandbox))
        try:
            outcome = self._collect(task, sandbox, status, code, reason, tail, measured,
                                    err_path=_err_path(sandbox))
        except (SandboxError, ProtocolError, OSError) as e:
            outcome = self._result(task, "error", reason=f"cannot collect the outputs: {e}",
                                   measured=measured)
        finally:
            self._give_back(sandbox)
        ran.done(outcome)

    def _command_peak_mb(self, usage) -> float:
        """The command's own peak RSS from its rusage, or 0 when that says nothing.

        A command started by vfork (posix_spawn, and Popen here) carries this worker's peak
        RSS in its own ru_maxrss: Linux keeps the larger of the two across exec. So only a
        peak above the worker's own is the command's; below it, the monitor's samples speak.
        The worker's own peak only grows: it is asked for again only when a command's is
        above the last answer (most commands' are not), not once per task.
        """
        if usage.ru_maxrss > self._own_peak_kb:
            self._own_peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return usage.ru_maxrss / 1000 if usage.ru_maxrss > self._own_peak_kb else 0.0

    def _call(self, task: Task, sandbox: str):
        lib = task.library
        assert lib is not None and self.libraries is not None
        start = time.monotonic()
        try:
            function, args = split_call(task.command)
        except ValueError as e:
            return "failed", None, str(e), "", Measured()

        def prepare(directory: str) -> None:
            for f in lib.inputs:
                self._link_input(f.key, f.path, directory, f.sandbox)

        if lib.environment:  # it starts inside its environment: heavy imports come from it
            lib = dataclasses.replace(lib, env=(*self._environment(lib.environment, lib.inputs),
                                                *library_path(), *lib.env))
        instance = self.libraries.get(lib, prepare)
        began: list[float] = []

        def begin() -> None:  # a slot is ours and the library is up: the call starts now
            began.append(time.monotonic())
            self.on_start(task.id, time.time())

        handle = CallHandle()
        with self._locks_lock:
            self._calls[task.id] = handle
        if self.closed:  # its session ended while it was set up
            handle.cancel()
        try:
            r = instance.call(function, args, cwd=sandbox, timeout=task.resources.wall_time_s,
                              on_begin=begin, env=task.env, handle=handle)
        finally:
            with self._locks_lock:
                self._calls.pop(task.id, None)
        # From its start, as for a command: not the library's start-up or the wait for a slot
        # (the manager sends calls ahead to wait for one here).
        wall = time.monotonic() - (began[0] if began else start)
        # The library reports its call's child (wait4); the sandbox holds what the call wrote.
        measured = Measured(cores=round(r.cpu_s / wall, 3) if wall > 0 else 0.0,
                            memory_mb=r.memory_mb, disk_mb=round(tree_size(sandbox) / 1e6, 3),
                            wall_time_s=round(wall, 4))
        return r.status, r.exit_code, r.reason, r.stderr_tail, measured

    def _collect(self, task, sandbox, status, code, reason, tail, measured,
                 err_path: str | None = None) -> TaskOutcome:
        hashed = []
        if status == "ok":
            missing = []
            for f in task.outputs:
                src = f"{sandbox}/{f.sandbox}"
                try:
                    hashed.append((f, src, *tree_hash(src)))
                except (FileNotFoundError, NotADirectoryError):  # (d/x where d is a file)
                    if os.path.lexists(src):
                        raise  # a link to nothing: not missing, but not an output either
                    missing.append(f.sandbox)
            if missing:
                status, reason = "missing_output", missing_reason(task, sandbox, missing)
                tail = _tail(err_path) if err_path else tail
        if status != "ok":
            failed = self._keep_failed(task, sandbox)
            return self._result(task, status, code, reason, tail, measured, failed=failed)
        outputs = []
        inline = []
        place = self.same_host and not task.cache_forever
        # `d d/x`, in either order: d/x goes out as a copy made before anything moves, and
        # stays inside d. (A copy, not a link: installing one inode over itself is a no-op
        # rename that would leave the installer's temporary name behind.)
        copies = {i: _copy(src, f"{sandbox}/.vinemake-output.{i}")
                  for i, (f, src, *_) in enumerate(hashed)
                  if _inside_another(f.sandbox, task.outputs)} if len(hashed) > 1 else {}
        for i, (f, src, size, digest) in enumerate(hashed):
            src = copies.get(i, src)
            # On the manager's host the output goes straight to its path: the manager then
            # links and renames nothing. The path in the outcome says it is there.
            if place and f.path is not None and _place(src, f.path):
                outputs.append((f.key, size, digest, f.path))
                continue
            entry = self.cache.insert(src, f.key, size, digest, task.cache_forever)
            outputs.append((f.key, size, digest, entry.path))
            # A small output the manager wants back rides in the outcome: a fetch per tiny
            # file (connection, handshake) would cost more than the task.
            if (f.path is not None and not self.same_host and size <= INLINE_MAX
                    and not digest.startswith("dir-")):
                data = b""  # an empty output (as hashed) is not opened again
                if size:
                    with open(entry.path, "rb") as fh:
                        data = fh.read(INLINE_MAX + 1)
                inline.append((f.key, data))
        outcome = self._result(task, "ok", code, reason, tail, measured, outputs=tuple(outputs))
        return dataclasses.replace(outcome, inline=tuple(inline)) if inline else outcome

    def _keep_failed(self, task: Task, sandbox: str) -> tuple[tuple[str, str, str], ...]:
        kept = []
        for i, f in enumerate(task.outputs):
            src = os.path.join(sandbox, f.sandbox)
            if os.path.lexists(src):
                key = f"failed.{task.id}.{task.attempt}.{i}"
                size, digest = tree_hash(src)
                kept.append((f.sandbox, key, self.cache.insert(src, key, size, digest).path))
        return tuple(kept)

    def _result(self, task: Task, status: str, code: int | None = None, reason: str = "",
                tail: str = "", measured: Measured | None = None, outputs=(), failed=()):
        # Positional, in the fields' order: once a task, for every task.
        result = TaskResult(task.id, status, code, reason, tail, measured or Measured(),
                            self.worker_name,
                            tuple([(k, s, h) for k, s, h, _ in outputs]) if outputs else ())
        return TaskOutcome(result, outputs, failed)

    # ------------------------------------------------------------ inputs

    def _link_input(self, key: str, path: str | None, sandbox: str, name: str) -> None:
        entry = self.cache.get(key)
        if entry is not None:
            link_in(entry.path, sandbox, name)
        elif self.same_host and path is not None and os.path.lexists(path):
            link_in(path, sandbox, name)
        else:
            raise SandboxError(f"input {name} ({key}) is not on this worker")

    def _ensure(self, f: Fetch, forever: bool = False) -> None:
        """Get `f` into the cache unless it is there; one fetch per key at a time."""
        check_key(f.key)
        with self._one_at_a_time(f.key):
            self._fetch_once(f, forever)

    @contextlib.contextmanager
    def _one_at_a_time(self, key: str):
        """Hold the lock of `key`: one fetch of a file, or one run of a mini, at a time."""
        with self._locks_lock:
            entry = self._key_locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._locks_lock:
                entry[1] -= 1
                if not entry[1]:
                    del self._key_locks[key]

    # ------------------------------------------------------------ packed environments

    def _environment(self, tarball_key: str, inputs) -> tuple[tuple[str, str], ...]:
        """Unpack the environment `tarball_key` (one of `inputs`) here unless it is already
        (once per worker, whatever the workflow); the variables that activate it, found by
        sourcing its activation scripts once (a failure is not kept: the next task retries)."""
        key = environment_key(tarball_key)
        with self._one_at_a_time(key):
            entry = self.cache.get(key)
            if entry is None:
                entry = self._unpack(tarball_key, inputs, key)
            found = self._activated.get(entry.path)
            if found is None:
                found = self._activated[entry.path] = activate(entry.path)
        return found

    def _unpack(self, tarball_key: str, inputs, key: str):
        tarball = self.cache.get(tarball_key)
        path = tarball.path if tarball is not None else next(
            (f.path for f in inputs if f.key == tarball_key and f.path), None)
        if path is None or not os.path.exists(path):
            raise SandboxError(f"the environment {tarball_key} is not on this worker")
        start = time.time()
        tmp = self.cache.path_for(key, forever=True) + ".unpacking"
        remove_path(tmp)
        size = unpack(path, tmp)
        entry = self.cache.insert(tmp, key, size, "", forever=True)
        try:
            fix_up(entry.path)
        except EnvironmentError_:
            self.cache.remove(key)
            raise
        self.on_transfer(key, MINI, size, start, time.time(), True, "", "")
        return entry

    # ------------------------------------------------------------ `@mini` rules

    def _make_minis(self, task: Task) -> None:
        """Make the outputs of `task`'s `@mini` rules that this worker's cache lacks, in
        order, each once however many tasks here need it at the same moment."""
        for mini in task.minis:
            with self._one_at_a_time(mini.key):
                if all(self.cache.get(o.key) is not None for o in mini.outputs):
                    continue
                self._run_mini(mini)

    def _run_mini(self, mini: MiniTask) -> None:
        sandbox = self._take_sandbox()
        try:
            for f in mini.inputs:
                self._link_input(f.key, f.path, sandbox, f.sandbox)
            start = time.time()
            done = subprocess.run(["/bin/sh", "-c", mini.command], cwd=sandbox,
                                  env={**os.environ, **dict(mini.env)},
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, start_new_session=True)
            if done.returncode != 0:
                tail = done.stderr[-TAIL_BYTES:].decode("utf-8", "replace")
                raise MiniFailed(done.returncode, f"@mini rule '{mini.name}' failed with "
                                 f"exit code {done.returncode}", tail)
            for o in mini.outputs:
                src = os.path.join(sandbox, o.sandbox)
                if not os.path.lexists(src):
                    raise MiniFailed(0, f"@mini rule '{mini.name}' did not make {o.sandbox}",
                                     done.stderr[-TAIL_BYTES:].decode("utf-8", "replace"))
                size, digest = tree_hash(src)
                self.cache.insert(src, o.key, size, digest)
                self.on_transfer(o.key, MINI, size, start, time.time(), True, digest, "")
        finally:
            self._give_back(sandbox)

    def cancel_call(self, task_id: int) -> bool:
        """Stop the library call of task_id (withdrawn if it waits for a slot); False when
        no call of that id is here."""
        with self._locks_lock:
            handle = self._calls.get(task_id)
        if handle is not None:
            handle.cancel()
        return handle is not None

    def close(self) -> None:
        """Its session ended: every call it has stops, and none begins from now on; its
        sandboxes' directories are closed (a task still ending lists its own by path)."""
        self.closed = True
        with self._locks_lock:
            handles = list(self._calls.values())
            fds, self._sandbox_fds = list(self._sandbox_fds.values()), {}
            for fd in fds:
                os.close(fd)
        for handle in handles:
            handle.cancel()

    def spares(self) -> list[str]:
        """Its empty sandboxes, for the next session's Runner (`spare`): a worker serving
        manager after manager makes its sandboxes once, not once a session."""
        with self._locks_lock:
            spare, self._spare = self._spare, []
        return spare

    def watch_of(self, task_id: int):
        """The Watch of `task_id`'s command while it runs, else None (any thread)."""
        with self._locks_lock:
            return self._watches.get(task_id)

    def _fetch_once(self, f: Fetch, forever: bool) -> None:
        """Fetch `f` from its first source that works, unless the cache has it already."""
        if self.cache.get(f.key) is not None:
            return
        errors = []
        for source in f.sources:
            tmp = os.path.join(self.tmp_dir, f"{f.key}.{next(self._counter)}")
            start = time.time()
            try:
                size, digest = self.fetcher(source, f.key, tmp, f.hash)
            except (ProtocolError, OSError, EOFError) as e:
                remove_path(tmp)
                # A URL's error names the URL already.
                errors.append(str(e) if source.label == URL else f"{source.label}: {e}")
                self.on_transfer(f.key, source.label, 0, start, time.time(), False, "",
                                 str(e))
                continue
            self.cache.insert(tmp, f.key, size, digest, forever)
            self.on_transfer(f.key, source.label, size, start, time.time(), True, digest, "")
            return
        what = "" if f.sources and f.sources[-1].label == URL else f"{f.key}: "
        raise FetchFailed(f.key, tuple(source.label for source in f.sources),
                          f"cannot fetch {what}" + ("; ".join(errors) or "no source"))


@dataclass
class _Started:
    """A command that was spawned, until the monitor reaps it."""

    task: Task
    sandbox: str
    proc: subprocess.Popen | None
    watch: object
    done: Callable[[TaskOutcome], None]


# --- starting a shell -------------------------------------------------------------------------

_SH = b"/bin/sh"
_ARGV = ctypes.c_char_p * 4  # sh -c COMMAND NULL


class _SpawnAPI:
    """glibc's posix_spawn through ctypes, with what every command shares built once."""

    # Opaque glibc structures: 80 and 336 bytes on x86-64; room to spare on any ABI.
    _OPAQUE = 1024
    SETPGROUP, SETSIGDEF, SETSIGMASK = 0x02, 0x04, 0x08

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.libc = libc
        self.addchdir = libc.posix_spawn_file_actions_addchdir_np  # AttributeError if absent
        self.addchdir.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        charpp = ctypes.POINTER(ctypes.c_char_p)
        libc.posix_spawn.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_char_p,
                                     ctypes.c_void_p, ctypes.c_void_p, charpp, charpp]
        libc.posix_spawn_file_actions_adddup2.argtypes = [ctypes.c_void_p, ctypes.c_int,
                                                          ctypes.c_int]
        # Close every other descriptor in the command, as Popen(close_fds=True) does (glibc
        # ≥ 2.34; before that only the close-on-exec flag, which Python sets on its own).
        self.closefrom = getattr(libc, "posix_spawn_file_actions_addclosefrom_np", None)
        if self.closefrom is not None:
            self.closefrom.argtypes = [ctypes.c_void_p, ctypes.c_int]
        libc.posix_spawn_file_actions_addopen.argtypes = [ctypes.c_void_p, ctypes.c_int,
                                                          ctypes.c_char_p, ctypes.c_int,
                                                          ctypes.c_uint]
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self._env_cache: tuple[dict, dict] | None = None  # (base, {extra: char*[]})
        # The file actions of a (directory, stderr file) pair, built once: sandboxes are
        # reused, and building them costs ten foreign calls and, per dup2, a getrlimit.
        self._actions: dict[tuple[str, str], ctypes.Array] = {}
        self._actions_lock = threading.Lock()
        # Every signal whose disposition a command gets from here (glibc refuses to name its
        # own internal ones, and nobody can change SIGKILL's or SIGSTOP's).
        probe = ctypes.create_string_buffer(self._OPAQUE)
        libc.sigemptyset(probe)
        self._signals = tuple(s for s in range(1, signal.NSIG)
                              if s not in (signal.SIGKILL, signal.SIGSTOP)
                              and libc.sigaddset(probe, s) == 0)
        self._attrs: dict[tuple[int, ...], ctypes.Array] = {}  # see note_signals()
        self.note_signals()

    @staticmethod
    def _check(rc: int) -> None:
        if rc:
            raise OSError(rc, os.strerror(rc))

    def note_signals(self) -> None:
        """Start commands, from now on, with the signals this process ignores now ignored.

        glibc's child, before it execs, resets every signal it is not told to default by
        first asking for its disposition: two system calls a signal. Told to default every
        signal but those ignored here, it makes one each (some sixty fewer per command,
        while the spawning thread waits), and the command gets what Popen would give it.
        Asking Python for every signal's handler costs about as much as those calls, so it
        is done once per session (Runner), not per command.
        """
        ignored = tuple(s for s in self._signals if signal.getsignal(s) is signal.SIG_IGN
                        and s not in (signal.SIGPIPE, signal.SIGXFSZ))
        with self._actions_lock:
            attr = self._attrs.get(ignored)
            if attr is None:
                attr = self._attrs[ignored] = self._attr_ignoring(ignored)
        self.attr = attr

    def _attr_ignoring(self, ignored: tuple[int, ...]) -> ctypes.Array:
        """Spawn attributes: the command starts as Popen would start it, in its own process
        group (so a kill takes all it started), no blocked signals, every signal at its
        default but those in `ignored` (Python ignores SIGPIPE and SIGXFSZ, and a pipeline
        like `yes | head` needs SIGPIPE to stop: both are defaulted)."""
        libc = self.libc
        attr = ctypes.create_string_buffer(self._OPAQUE)
        sigdef = ctypes.create_string_buffer(self._OPAQUE)
        empty = ctypes.create_string_buffer(self._OPAQUE)
        libc.sigemptyset(sigdef)
        libc.sigemptyset(empty)
        for sig in self._signals:
            if sig not in ignored:
                libc.sigaddset(sigdef, sig)
        self._check(libc.posix_spawnattr_init(attr))
        self._check(libc.posix_spawnattr_setsigdefault(attr, sigdef))
        self._check(libc.posix_spawnattr_setsigmask(attr, empty))
        self._check(libc.posix_spawnattr_setpgroup(attr, 0))
        self._check(libc.posix_spawnattr_setflags(
            attr, ctypes.c_short(self.SETPGROUP | self.SETSIGDEF | self.SETSIGMASK)))
        return attr

    def env(self, base: dict, extra: tuple[tuple[str, str], ...]) -> ctypes.Array:
        """The environment as a NULL-terminated char*[], built once per distinct `extra`
        (the rules of a workflow mostly share one exported environment)."""
        cache = self._env_cache
        if cache is None or cache[0] is not base:
            cache = self._env_cache = (base, {})
        arr = cache[1].get(extra)
        if arr is None:
            merged = {**base, **{os.fsencode(k): os.fsencode(v) for k, v in extra}}
            entries = [k + b"=" + v for k, v in merged.items()]
            arr = (ctypes.c_char_p * (len(entries) + 1))(*entries, None)
            if len(cache[1]) >= 64:
                cache[1].clear()
            cache[1][extra] = arr
        return arr

    def spawn(self, command: str, cwd: str, env: ctypes.Array, stderr_path: str) -> int:
        argv = _ARGV(_SH, b"-c", os.fsencode(command), None)
        pid = ctypes.c_int()
        self._check(self.libc.posix_spawn(ctypes.byref(pid), _SH,
                                          self._actions_for(cwd, stderr_path), self.attr,
                                          argv, env))
        return pid.value

    def _actions_for(self, cwd: str, stderr_path: str) -> ctypes.Array:
        """stdin and stdout from /dev/null, stderr (re)created at `stderr_path` by the
        command itself, working directory `cwd`, every other descriptor closed."""
        with self._actions_lock:
            actions = self._actions.get((cwd, stderr_path))
            if actions is not None:
                return actions
            if len(self._actions) >= 1024:  # sandboxes of earlier sessions
                # Forgotten, not destroyed: another thread may be spawning with one right now
                # (its buffer stays alive while it does; glibc's few hundred bytes leak).
                self._actions.clear()
            actions = ctypes.create_string_buffer(self._OPAQUE)
            libc = self.libc
            self._check(libc.posix_spawn_file_actions_init(actions))
            try:
                self._check(libc.posix_spawn_file_actions_adddup2(actions, self.devnull, 0))
                self._check(libc.posix_spawn_file_actions_adddup2(actions, self.devnull, 1))
                self._check(libc.posix_spawn_file_actions_addopen(
                    actions, 2, os.fsencode(stderr_path),
                    os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
                self._check(self.addchdir(actions, os.fsencode(cwd)))
                if self.closefrom is not None:
                    self._check(self.closefrom(actions, 3))
            except OSError:
                libc.posix_spawn_file_actions_destroy(actions)
                raise
            self._actions[cwd, stderr_path] = actions
            return actions


def _spawn_api() -> _SpawnAPI | None:
    if sys.platform != "linux" or os.environ.get("VINEMAKE_NO_POSIX_SPAWN"):
        return None
    try:
        return _SpawnAPI()
    except (AttributeError, OSError):
        return None


_API = _spawn_api()
# Each command leads its own process group so the monitor can kill all it started. A new
# group is much cheaper to start than a new session (Python ≥ 3.11 only).
_OWN_GROUP = {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}


def spawn_shell(command: str, cwd: str, env: tuple[tuple[str, str], ...], base_env: dict,
                stderr_path: str) -> tuple[int, subprocess.Popen | None]:
    """Start `/bin/sh -c command` in `cwd`, stdin and stdout /dev/null, stderr to the file
    at `stderr_path` (created or emptied).

    (pid, the Popen when the fallback made one); the caller reaps the pid.
    """
    if _API is not None:
        return _API.spawn(command, cwd, _API.env(base_env, env), stderr_path), None
    full = base_env if not env else {**base_env, **{os.fsencode(k): os.fsencode(v)
                                                   for k, v in env}}
    err = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], cwd=cwd, env=full,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, **_OWN_GROUP)
    finally:
        os.close(err)
    return proc.pid, proc


def missing_reason(task: Task, sandbox: str, missing: list[str]) -> str:
    """`missing output: out.txt (wrote ou.txt instead?)`: what the command did write, beside
    its inputs, is usually the misspelt output."""
    known = {f.sandbox.split("/", 1)[0] for f in (*task.inputs, *task.outputs)}
    try:
        wrote = sorted(n for n in os.listdir(sandbox) if n not in known)
    except OSError:
        wrote = []
    text = "missing output: " + ", ".join(missing)
    if wrote:
        more = f" and {len(wrote) - 3} more" if len(wrote) > 3 else ""
        text += f" (wrote {', '.join(wrote[:3])}{more} instead?)"
    return text


def _err_path(sandbox: str) -> str:
    # Beside the sandbox, not in it (it is not the task's disk); kept for the next task.
    return sandbox + ".err"


def _inside_another(name: str, outputs) -> bool:
    """Whether the output `name` lies inside another output of the same task."""
    return any(name.startswith(other.sandbox.rstrip("/") + "/") for other in outputs)


def _copy(src: str, dest: str) -> str:
    """`dest`, a copy of the file or tree `src` (links copied as links)."""
    if os.path.isdir(src) and not os.path.islink(src):
        shutil.copytree(src, dest, symlinks=True)
    else:
        shutil.copy2(src, dest, follow_symlinks=False)
    return dest


def _place(src: str, target: str) -> bool:
    """Rename a finished output to its target path; False (nothing moved) if it cannot be
    done in one rename: another filesystem, a missing directory, a directory in the way."""
    try:
        os.rename(src, target)
    except OSError:
        return False
    return True


def _tail(path: str) -> str:
    """The last TAIL_BYTES of a command's stderr file ("" if there is none).

    A stat first: most commands write nothing there, and then the file is not opened."""
    try:
        size = os.stat(path).st_size
        if not size:
            return ""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return ""
    try:
        return os.pread(fd, TAIL_BYTES, max(0, size - TAIL_BYTES)).decode("utf-8", "replace")
    finally:
        os.close(fd)


def _next_free(sandbox_root: str) -> int:
    """The first sandbox number after every numbered sandbox already in `sandbox_root`."""
    taken = (int(name) for name in os.listdir(sandbox_root) if name.isdigit())
    return max(taken, default=-1) + 1
