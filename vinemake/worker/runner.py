"""Runs one task on a worker: inputs in, command (or library call) run and watched, outputs out.

    fetch missing inputs into the cache (verified against their content hash, next source on
    failure) → link inputs into an empty sandbox → run `/bin/sh -c` in it → if it exited 0 and
    made every output, rename the outputs into the cache by key; otherwise keep whatever outputs
    exist under `failed.*` keys for the manager to put in the task's failed_dir.

Same host as the manager: an input is linked straight from its path on the manager's host when
the cache does not have it, so no byte is copied.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from vinemake.fileserver import hash_tree as tree_hash
from vinemake.protocol import Outcome, ProtocolError
from vinemake.task import Measured, Task, TaskResult
from vinemake.worker.cachedir import CacheDir
from vinemake.worker.libraries import LibraryPool, split_call
from vinemake.worker.monitor import Monitor
from vinemake.worker.sandbox import SandboxError, check_key, check_name, link_in, remove_tree

__all__ = ["Source", "Fetch", "Runner", "TAIL_BYTES"]

TAIL_BYTES = 2048
INLINE_MAX = 4096  # bytes: outputs up to this size go back inside the Done message
# Each command leads its own process group so the monitor can kill all it started. A new
# group is much cheaper to start than a new session (Python ≥ 3.11 only).
_OWN_GROUP = {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}


@dataclass(frozen=True)
class Source:
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
    sources: tuple[Source, ...]


# (source, key, dest path, expected hash) -> (size, hash); raises on failure
Fetcher = Callable[[Source, str, str, str], tuple[int, str]]
# (key, source label, size, start, end, ok, hash, reason)
TransferListener = Callable[..., None]


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
                 on_transfer: TransferListener = lambda *a: None):
        self.cache = cache
        self.monitor = monitor
        self.fetcher = fetcher
        self.same_host = same_host
        self.libraries = libraries
        self.worker_name = worker_name
        self.on_transfer = on_transfer
        self.sandbox_root = os.path.join(run_dir, "sandbox")
        self.tmp_dir = os.path.join(run_dir, "tmp")
        os.makedirs(self.sandbox_root, exist_ok=True)
        os.makedirs(self.tmp_dir, exist_ok=True)
        # A worker that reconnects builds a new Runner over the same run directory: number
        # past the sandboxes of its earlier sessions rather than trip over them.
        self._counter = itertools.count(_next_free(self.sandbox_root))
        self._key_locks: dict[str, threading.Lock] = {}
        self._spare: list[str] = []
        self.watches: dict[int, object] = {}  # task id -> Watch, while its command runs
        self._base_env = dict(os.environb)  # bytes: subprocess need not encode it per task
        self._locks_lock = threading.Lock()

    # ------------------------------------------------------------ one task

    def run(self, task: Task, fetches: tuple[Fetch, ...] = ()) -> Outcome:
        start = time.monotonic()
        try:
            self._check_names(task)
            for f in fetches:
                self._ensure(f)
        except FetchFailed as e:
            outcome = self._result(task, "error", reason=f"cannot set up the sandbox: {e}",
                                   measured=Measured(wall_time_s=time.monotonic() - start))
            return dataclasses.replace(outcome, unfetched=((e.key, e.sources),))
        except (SandboxError, ProtocolError, OSError) as e:
            return self._result(task, "error", reason=f"cannot set up the sandbox: {e}",
                                measured=Measured(wall_time_s=time.monotonic() - start))
        sandbox = self._take_sandbox()
        try:
            for f in task.inputs:
                self._link_input(f.key, f.path, sandbox, f.sandbox)
            for f in task.outputs:  # a nested target's directory exists, as in Makeflow
                if "/" in f.sandbox.rstrip("/"):
                    os.makedirs(os.path.dirname(os.path.join(sandbox, f.sandbox)),
                                exist_ok=True)
            if task.library is not None:
                status, code, reason, tail, measured = self._call(task, sandbox)
            else:
                status, code, reason, tail, measured = self._execute(task, sandbox)
            return self._collect(task, sandbox, status, code, reason, tail, measured)
        except (SandboxError, ProtocolError, OSError) as e:
            return self._result(task, "error", reason=f"cannot set up the sandbox: {e}",
                                measured=Measured(wall_time_s=time.monotonic() - start))
        finally:
            self._give_back(sandbox)

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
        try:
            with os.scandir(sandbox) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        remove_tree(entry.path)
                    else:
                        os.unlink(entry.path)
        except OSError:
            remove_tree(sandbox)
            return
        with self._locks_lock:
            self._spare.append(sandbox)

    def _check_names(self, task: Task) -> None:
        for f in (*task.inputs, *task.outputs):
            check_name(f.sandbox)
            check_key(f.key)

    def _execute(self, task: Task, sandbox: str):
        env = self._base_env.copy()
        env.update((os.fsencode(k), os.fsencode(v)) for k, v in task.env)
        # Beside the sandbox, not in it (it is not the task's disk); kept for the next task.
        with open(sandbox + ".err", "w+b") as err:
            # Wall time counts from before the spawn: a short command may be over by the
            # time Popen returns, and cores = CPU / wall would come out absurdly high.
            spawned = time.monotonic()
            proc = subprocess.Popen(["/bin/sh", "-c", task.command], cwd=sandbox, env=env,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=err, **_OWN_GROUP)
            watch = self.monitor.watch(proc.pid, task.resources, sandbox)
            watch.start = spawned
            self.watches[task.id] = watch
            try:
                code, usage = _reap(proc)
            finally:
                self.monitor.unwatch(watch)
                self.watches.pop(task.id, None)
            tail = _tail(err)
        # The kernel's account of the command (and what it waited for) covers tasks too
        # short for the monitor to have sampled them.
        watch.cpu_s = max(watch.cpu_s, usage.ru_utime + usage.ru_stime)
        watch.peak_memory_mb = max(watch.peak_memory_mb, usage.ru_maxrss / 1000)
        measured = watch.measured(time.monotonic())
        if watch.reason is not None:
            return "resource_exceeded", code, watch.reason, tail, measured
        if code < 0:
            return "signaled", code, f"killed by signal {-code}", tail, measured
        if code > 0:
            return "failed", code, f"exit code {code}", tail, measured
        return "ok", 0, "", tail, measured

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

        instance = self.libraries.get(lib, prepare)
        r = instance.call(function, args, cwd=sandbox, timeout=task.resources.wall_time_s,
                          env=task.env)
        measured = Measured(wall_time_s=round(time.monotonic() - start, 4))
        return r.status, r.exit_code, r.reason, r.stderr_tail, measured

    def _collect(self, task, sandbox, status, code, reason, tail, measured) -> Outcome:
        if status == "ok":
            missing = [f.sandbox for f in task.outputs
                       if not os.path.lexists(os.path.join(sandbox, f.sandbox))]
            if missing:
                status, reason = "missing_output", "missing output: " + ", ".join(missing)
        if status != "ok":
            failed = self._keep_failed(task, sandbox)
            return self._result(task, status, code, reason, tail, measured, failed=failed)
        outputs = []
        inline = []
        for f in task.outputs:
            src = os.path.join(sandbox, f.sandbox)
            size, digest = tree_hash(src)
            entry = self.cache.insert(src, f.key, size, digest, task.cache_forever)
            outputs.append((f.key, size, digest, entry.path))
            # A small output the manager wants back rides in the outcome: a fetch per tiny
            # file (connection, handshake) would cost more than the task.
            if (f.path is not None and not self.same_host and size <= INLINE_MAX
                    and not digest.startswith("dir-")):
                with open(entry.path, "rb") as fh:
                    inline.append((f.key, fh.read(INLINE_MAX + 1)))
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
        result = TaskResult(task_id=task.id, status=status, exit_code=code, reason=reason,
                            stderr_tail=tail, measured=measured or Measured(),
                            worker=self.worker_name,
                            outputs=tuple((k, s) for k, s, _, _ in outputs))
        return Outcome(result=result, outputs=outputs, failed=failed)

    # ------------------------------------------------------------ inputs

    def _link_input(self, key: str, path: str | None, sandbox: str, name: str) -> None:
        entry = self.cache.get(key)
        if entry is not None:
            link_in(entry.path, sandbox, name)
        elif self.same_host and path is not None and os.path.lexists(path):
            link_in(path, sandbox, name)
        else:
            raise SandboxError(f"input {name} ({key}) is not on this worker")

    def _ensure(self, f: Fetch) -> None:
        """Get `f` into the cache unless it is there; one fetch per key at a time."""
        check_key(f.key)
        with self._locks_lock:
            lock = self._key_locks.setdefault(f.key, threading.Lock())
        with lock:
            if self.cache.get(f.key) is not None:
                return
            errors = []
            for source in f.sources:
                tmp = os.path.join(self.tmp_dir, f"{f.key}.{next(self._counter)}")
                start = time.time()
                try:
                    size, digest = self.fetcher(source, f.key, tmp, f.hash)
                except (ProtocolError, OSError, EOFError) as e:
                    remove_tree(tmp)
                    errors.append(f"{source.label}: {e}")
                    self.on_transfer(f.key, source.label, 0, start, time.time(), False, "",
                                     str(e))
                    continue
                self.cache.insert(tmp, f.key, size, digest)
                self.on_transfer(f.key, source.label, size, start, time.time(), True, digest, "")
                return
            raise FetchFailed(f.key, tuple(source.label for source in f.sources),
                              f"cannot fetch {f.key}: " + ("; ".join(errors) or "no source"))


def _reap(proc: subprocess.Popen):
    """Wait for `proc`; (exit code as Popen gives it, its resource usage)."""
    while True:
        try:
            _, status, usage = os.wait4(proc.pid, 0)
            break
        except InterruptedError:
            continue
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage


def _tail(f) -> str:
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - TAIL_BYTES))
    return f.read().decode("utf-8", "replace")


def _next_free(sandbox_root: str) -> int:
    """The first sandbox number after every numbered sandbox already in `sandbox_root`."""
    taken = (int(name) for name in os.listdir(sandbox_root) if name.isdigit())
    return max(taken, default=-1) + 1
