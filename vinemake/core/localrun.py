"""LOCAL rules and MAKEFLOW sub-workflows: run on the manager's host, in the workflow directory.

Makeflow runs these on the submitting machine (`LOCAL cmd`, `BATCH_LOCAL=1`, `MAKEFLOW file`),
typically because they need the shared filesystem or the user's own tools. A LOCAL command
runs in a shadow of the workflow directory (shadow.py: every file there, its outputs left out),
so `local->remote` renames do not apply and its outputs are renamed into place only when it
exits 0: nothing half-written is ever at a target path. A sub-workflow runs in the workflow
directory itself (it is a vinemake, atomic on its own). They sit behind the same Executor
interface as the manager; a small thread pool starts them with `subprocess`.

A command must not outlive vinemake: one orphaned by a kill -9 would keep writing while the
next run starts. Each runs in a session of its own (so cancelling kills its whole group) and
gets SIGKILL when vinemake dies (common/lifeline.py).
"""

from __future__ import annotations

import contextlib
import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from vinemake.common.hashing import hash_tree
from vinemake.common.lifeline import die_with_parent
from vinemake.common.names import flat
from vinemake.common.paths import remove_path
from vinemake.common.process import identity, still_running
from vinemake.common.spec import Resources
from vinemake.common.task import (
    COMMAND_FAILURES,
    Measured,
    Task,
    TaskFile,
    TaskResult,
    command_env,
)
from vinemake.core import subworkflows
from vinemake.core.outside import climbing_links
from vinemake.core.shadow import Shadow
from vinemake.core.statedir import StateDir
from vinemake.wire.urlfetch import UrlFetchError, fetch_url

__all__ = ["LocalRunner", "subworkflow_argv", "RUN_ENV"]

RUN_ENV = "VINEMAKE_LOCAL_RUN"  # in every LOCAL command's environment: the run's token

STDERR_TAIL = 4096
_HOST = socket.gethostname()


def subworkflow_argv(command: str) -> list[str]:
    """`MAKEFLOW sub.vf arg...` (prefix already removed) → a vinemake run of that file."""
    return [sys.executable, "-m", "vinemake", *shlex.split(command)]


class LocalRunner:
    """Runs tasks on this host with up to `slots` at once, in `root`."""

    def __init__(self, root: str, slots: int | None = None, scratch: str | None = None,
                 events=None, workflow_file: str = "Vinefile"):
        self.root = root
        # The workflow running, relative to `root`: a sub-workflow must not run it again.
        self.workflow_file = os.path.join(root, workflow_file)
        self.scratch = scratch or StateDir(root).local  # where the shadows go
        # names this run's shadows and commands; the start tick tells a reused pid apart
        self.token = f"{identity()}-{time.time_ns()}"
        _sweep(self.scratch)
        self.events = events  # the run's record: each command's start
        self.pool = ThreadPoolExecutor(max_workers=slots or os.cpu_count() or 1,
                                       thread_name_prefix="vinemake-local")
        self.results: queue.Queue[TaskResult] = queue.Queue()
        # `procs` and `cancelled` are read and written under `lock` (the engine's thread
        # cancels, the pool's threads start): a command started as the run is cancelled is
        # either seen by cancel_all() or sees `cancelled` itself, never neither.
        self.procs: dict[int, subprocess.Popen] = {}
        self.lock = threading.Lock()
        self.cancelled = False
        self.withdrawn = False  # tasks not started yet come back "withdrawn"
        self.subworkflows: set[int] = set()

    def submit(self, task: Task) -> None:
        self.pool.submit(self._run, task)

    def submit_subworkflow(self, task: Task) -> None:
        self.subworkflows.add(task.id)
        self.submit(task)

    def wait(self, timeout: float | None = None) -> list[TaskResult]:
        got: list[TaskResult] = []
        try:
            got.append(self.results.get(timeout=timeout) if timeout else
                       self.results.get_nowait())
        except queue.Empty:
            return got
        while True:
            try:
                got.append(self.results.get_nowait())
            except queue.Empty:
                return got

    def cancel_all(self) -> None:
        with self.lock:
            self.cancelled = True
            procs = list(self.procs.values())
        for p in procs:
            _stop(p)

    def withdraw(self) -> None:
        self.withdrawn = True

    def largest_worker(self) -> Resources | None:
        return None

    def close(self) -> None:
        self.cancel_all()
        self.pool.shutdown(wait=True)

    def _run(self, task: Task) -> None:
        try:
            result = self._execute(task)
        except UrlFetchError as e:
            result = TaskResult(task.id, "error", reason=f"cannot fetch {e}")
        except Exception as e:  # noqa: BLE001 - reported as the task's infrastructure error
            result = TaskResult(task.id, "error", reason=f"{type(e).__name__}: {e}")
        if task.stops_run and result.status in COMMAND_FAILURES:
            # The run ends: set before this thread can take the next task, so none starts.
            self.withdrawn = True
        self.results.put(result)

    def _execute(self, task: Task) -> TaskResult:
        if self.cancelled:
            return TaskResult(task.id, "error", reason="cancelled")
        if self.withdrawn:
            return TaskResult(task.id, "withdrawn", reason="not started: an earlier rule failed")
        if task.id in self.subworkflows:
            return self._subworkflow(task)
        top = os.path.join(self.scratch, f"{self.token}.{task.id}.{task.attempt}")
        # `../x` sources are reached from a directory as deep as they climb (core/outside.py).
        cwd, links = climbing_links(task.inputs, self.root)
        shadow = Shadow(self.root, os.path.join(top, cwd) if cwd else top,
                        _outputs(task, self.root))
        try:
            shadow.build()
            for name, target in links:
                link = os.path.join(top, name)
                if not os.path.lexists(link):
                    os.makedirs(os.path.dirname(link), exist_ok=True)
                    os.symlink(target, link)
            for f in task.inputs:
                if f.url:
                    _fetch(f, shadow)
            return self._finish(task, *self._start(task, ["/bin/sh", "-c", task.command],
                                                   shadow.path), shadow)
        finally:
            shadow.remove()
            if cwd:
                remove_path(top)

    def _subworkflow(self, task: Task) -> TaskResult:
        files = subworkflows.chain(self.workflow_file, os.environ)
        circle = subworkflows.loop(files, task.command, self.root)
        if circle is not None:  # refused before it starts: it would start this rule again
            return TaskResult(task.id, "failed", 2, worker="local", stderr_tail=(
                f"vinemake: sub-workflow loop: {circle}: not started\n"))
        extra = {subworkflows.CHAIN_VARIABLE: os.pathsep.join(files)}
        return self._finish(task, *self._start(task, subworkflow_argv(task.command),
                                               self.root, extra), None)

    def _start(self, task: Task, argv: list[str], cwd: str,
               extra: dict[str, str] | None = None) -> tuple[subprocess.Popen, float]:
        env = dict(os.environ)
        env.update(command_env(task))
        env.update(extra or {})
        env[RUN_ENV] = self.token  # what finds its leftovers if vinemake is killed
        if self.events is not None:
            self.events.emit("start", rule=task.id, worker="local", host=_HOST,
                             attempt=task.attempt)
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True,
                                preexec_fn=die_with_parent(os.getpid(), signal.SIGKILL))
        with self.lock:
            self.procs[task.id] = proc
            cancelled = self.cancelled
        if cancelled:  # cancel_all() ran between the check in _execute and the registration
            _stop(proc)
        return proc, time.monotonic()

    def _finish(self, task: Task, proc: subprocess.Popen, t0: float,
                shadow: Shadow | None) -> TaskResult:
        _, err = proc.communicate()
        with self.lock:
            self.procs.pop(task.id, None)
        measured = Measured(wall_time_s=time.monotonic() - t0)
        tail = err[-STDERR_TAIL:].decode("utf-8", "replace")
        made = {o.key: shadow.made(rel) if shadow else o.path
                for o, rel in zip(task.outputs, _outputs(task, self.root), strict=True)}
        if shadow is not None:
            shadow.return_side_files()
        if proc.returncode != 0:
            self._keep_failed(task, made)
            code = proc.returncode
            # The same status and reason a worker gives, so INFO records read alike.
            status, reason = ("signaled", f"killed by signal {-code}") if code < 0 else \
                ("failed", f"exit code {code}")
            return TaskResult(task.id, status, code, reason=reason, stderr_tail=tail,
                              measured=measured, worker="local")
        missing = [o.sandbox for o in task.outputs
                   if o.path is not None and not os.path.lexists(made[o.key])]
        if missing:
            self._keep_failed(task, made)
            return TaskResult(task.id, "missing_output", 0,
                              reason="missing output: " + ", ".join(missing),
                              stderr_tail=tail, measured=measured, worker="local")
        if shadow is not None:
            for rel in _outputs(task, self.root):
                shadow.place(rel)
        sizes = tuple((o.key, *hash_tree(o.path)) if o.path else (o.key, 0, "")
                      for o in task.outputs)
        return TaskResult(task.id, "ok", 0, stderr_tail=tail, measured=measured,
                          worker="local", outputs=sizes)

    def _keep_failed(self, task: Task, made: dict[str, str]) -> None:
        """Move whatever declared outputs exist out of the way, into the failed directory."""
        for out in task.outputs:
            src = made[out.key]
            if out.path is None or not os.path.lexists(src) or task.failed_dir is None:
                continue
            os.makedirs(task.failed_dir, exist_ok=True)
            dest = os.path.join(task.failed_dir, flat(out.sandbox))
            if os.path.isdir(dest) and not os.path.islink(dest):
                remove_path(dest)
            os.replace(src, dest)


def _sweep(scratch: str) -> None:
    """Clear up after a vinemake that was killed: its shadows (named `<pid>-<started>-<ns>.
    <task>.<attempt>`), and the processes its LOCAL commands left running.

    The parent-death signal kills each command's own process, not what that process started
    (`cmd &`, a pipeline's other members): those carry the run's token in their environment,
    and are killed here, before anything of the new run starts. A sub-workflow's vinemake
    shares the directory with its parent's running shadows: only those of processes that no
    longer exist go."""
    try:
        names = os.listdir(scratch)
    except FileNotFoundError:
        return
    dead = set()
    for name in names:
        token = name.split(".", 1)[0]
        pid, tick, ns = (token.split("-") + ["", ""])[:3]
        if not (tick and ns) or not still_running(f"{pid}-{tick}"):  # "pid-ns": before ticks
            dead.add(token)
            remove_path(os.path.join(scratch, name))
    if dead:
        _kill_leftovers(dead)


def _kill_leftovers(tokens: set[str]) -> None:
    """SIGKILL every process of ours whose environment names one of `tokens`."""
    marks = {f"{RUN_ENV}={t}".encode() for t in tokens}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue  # gone, or another user's
        if marks.intersection(env):
            with contextlib.suppress(OSError):
                os.kill(int(entry), signal.SIGKILL)


def _fetch(f: TaskFile, shadow: Shadow) -> None:
    """A URL source of a LOCAL rule, fetched into its shadow under its name: the rule runs
    here, not on a worker, and the document never reaches the workflow directory."""
    if "/" in f.sandbox:
        raise UrlFetchError(f"{f.url}: a LOCAL rule reads a URL under a plain name, not "
                            f"'{f.sandbox}'")
    path = shadow.provide(f.sandbox)
    fetch_url(f.url, path + ".fetching")
    os.rename(path + ".fetching", path)


def _outputs(task: Task, root: str) -> list[str]:
    """Each output's path relative to the workflow directory, in the task's order."""
    return [os.path.relpath(o.path, root) if o.path else o.sandbox for o in task.outputs]


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to a LOCAL command's whole session (it leads its own)."""
    try:
        os.killpg(proc.pid, 15)
    except ProcessLookupError:
        pass
