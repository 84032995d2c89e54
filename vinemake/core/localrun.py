"""LOCAL rules and MAKEFLOW sub-workflows: run on the manager's host, in the workflow directory.

Makeflow runs these on the submitting machine (`LOCAL cmd`, `BATCH_LOCAL=1`, `MAKEFLOW file`),
typically because they need the shared filesystem or the user's own tools. They run in the
workflow directory itself, not in a sandbox, so `local->remote` renames do not apply. They sit
behind the same Executor interface as the manager; a small thread pool starts them with
`subprocess` (never a fork of this process). Outputs stay atomic as far as the outside world
sees: a failed run's declared outputs are moved to the failed directory, never left in place.
"""

from __future__ import annotations

import os
import queue
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from vinemake.common.names import flat
from vinemake.common.paths import remove_path
from vinemake.common.spec import Resources
from vinemake.common.task import Measured, Task, TaskResult

__all__ = ["LocalRunner", "subworkflow_argv"]

STDERR_TAIL = 4096


def subworkflow_argv(command: str) -> list[str]:
    """`MAKEFLOW sub.vf arg...` (prefix already removed) → a vinemake run of that file."""
    return [sys.executable, "-m", "vinemake", *shlex.split(command)]


class LocalRunner:
    """Runs tasks on this host with up to `slots` at once, in `root`."""

    def __init__(self, root: str, slots: int | None = None):
        self.root = root
        self.pool = ThreadPoolExecutor(max_workers=slots or os.cpu_count() or 1,
                                       thread_name_prefix="vinemake-local")
        self.results: queue.Queue[TaskResult] = queue.Queue()
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
        self.cancelled = True
        with self.lock:
            procs = list(self.procs.values())
        for p in procs:
            try:
                os.killpg(p.pid, 15)
            except ProcessLookupError:
                pass

    def withdraw(self) -> None:
        self.withdrawn = True

    def largest_worker(self) -> Resources | None:
        return None

    def close(self) -> None:
        self.cancel_all()
        self.pool.shutdown(wait=True)

    def _run(self, task: Task) -> None:
        try:
            self.results.put(self._execute(task))
        except Exception as e:  # noqa: BLE001 - reported as the task's infrastructure error
            self.results.put(TaskResult(task.id, "error", reason=f"{type(e).__name__}: {e}"))

    def _execute(self, task: Task) -> TaskResult:
        if self.cancelled:
            return TaskResult(task.id, "error", reason="cancelled")
        if self.withdrawn:
            return TaskResult(task.id, "withdrawn", reason="not started: an earlier rule failed")
        env = dict(os.environ)
        env.update(task.env)
        argv = subworkflow_argv(task.command) if task.id in self.subworkflows \
            else ["/bin/sh", "-c", task.command]
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, cwd=self.root, env=env, stdin=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        with self.lock:
            self.procs[task.id] = proc
        _, err = proc.communicate()
        with self.lock:
            self.procs.pop(task.id, None)
        measured = Measured(wall_time_s=time.monotonic() - t0)
        tail = err[-STDERR_TAIL:].decode("utf-8", "replace")
        if proc.returncode != 0:
            self._keep_failed(task)
            status = "signaled" if proc.returncode < 0 else "failed"
            return TaskResult(task.id, status, proc.returncode, stderr_tail=tail,
                              measured=measured, worker="local")
        missing = [o.sandbox for o in task.outputs
                   if o.path is not None and not os.path.lexists(o.path)]
        if missing:
            self._keep_failed(task)
            return TaskResult(task.id, "missing_output", 0,
                              reason=f"declared output '{missing[0]}' was not created",
                              stderr_tail=tail, measured=measured, worker="local")
        sizes = tuple((o.key, os.path.getsize(o.path) if o.path else 0) for o in task.outputs)
        return TaskResult(task.id, "ok", 0, stderr_tail=tail, measured=measured,
                          worker="local", outputs=sizes)

    def _keep_failed(self, task: Task) -> None:
        """Move whatever declared outputs exist out of the way, into the failed directory."""
        for out in task.outputs:
            if out.path is None or not os.path.lexists(out.path) or task.failed_dir is None:
                continue
            os.makedirs(task.failed_dir, exist_ok=True)
            dest = os.path.join(task.failed_dir, flat(out.sandbox))
            if os.path.isdir(dest) and not os.path.islink(dest):
                remove_path(dest)
            os.replace(out.path, dest)
