"""`-T local`: one real `vinemake-worker` process on this machine, offering its resources."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

from vinemake.backends import Demand, ManagerAddress, ProviderOptions
from vinemake.common.errors import InfrastructureError
from vinemake.common.forked import ForkedChild, fork_child
from vinemake.common.lifeline import die_with_parent
from vinemake.common.machine import machine_resources
from vinemake.common.spec import Resources

__all__ = ["LocalWorkers", "worker_command", "standby_worker", "MAX_RESTARTS"]

log = logging.getLogger("vinemake.backends")

# A worker that dies (the kernel's OOM killer, a kill by hand) is replaced this many times in
# one run; one that dies again after that, or before it ever connected, ends the workflow.
MAX_RESTARTS = 3


def _worker_death(code: int, pid: int) -> str:
    """How the local worker ended, as the start of a sentence."""
    if code < 0:
        return f"the local worker (pid {pid}) was killed by signal {-code}"
    return f"the local worker (pid {pid}) exited with status {code}"


_WORKER = [sys.executable, "-m", "vinemake.worker.cli"]


def worker_command(manager: ManagerAddress, options: ProviderOptions, workdir: str,
                   name: str = "local") -> list[str]:
    """The command line of a worker for `manager`; resources left out are the machine's own."""
    r = options.worker_resources
    cmd = [*_WORKER, manager.host, str(manager.port),
           "--workdir", workdir, "--name", name,
           "--timeout", f"{options.worker_timeout_s:g}"]
    for flag, value in (("--cores", r.cores), ("--memory", r.memory_mb),
                        ("--disk", r.disk_mb), ("--gpus", r.gpus)):
        if value is not None:
            cmd += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    if manager.password_file:
        cmd += ["--password", manager.password_file]
    if manager.ssl:
        cmd.append("--ssl")
    return cmd


class LocalWorkers:
    """Starts the worker when the manager listens; stops it when the workflow ends.

    The worker never leaves for being idle (a long LOCAL rule would otherwise starve the
    workflow); if the manager dies it gives up reconnecting after the worker timeout.

    The worker's workdir is the `workdir` entry of ProviderOptions.extra (the workflow's
    state directory gives it: `.vinemake/worker`), so `@cache forever` entries survive
    between runs of the workflow.
    """

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._joined_before = 0  # workers that had joined when this one was started
        self._command: list[str] = []
        self._offer: Resources | None = None

    def start(self, manager: ManagerAddress, options: ProviderOptions) -> None:
        workdir = dict(options.extra).get("workdir")
        if workdir is None:
            raise InfrastructureError("the local worker needs a workdir (ProviderOptions.extra)")
        workdir = os.path.abspath(workdir)
        r = options.worker_resources
        self._offer = machine_resources(workdir, r.cores, r.memory_mb, r.disk_mb, r.gpus or 0)
        # Quiet: vinemake started it, and its lines would cross vinemake's status line.
        self._command = worker_command(manager, options, workdir) + ["--no-idle-exit",
                                                                      "--quiet"]
        self._spawn()

    def promised(self) -> Resources | None:
        """What its one worker will offer, known before it joins (None before start())."""
        return self._offer

    def scale(self, demand: Demand) -> None:
        """One worker with the whole machine is the most this backend offers; one that died
        is replaced (the manager has put its tasks back in the queue)."""
        if self.proc is None or self.proc.poll() is None:
            return
        why = _worker_death(self.proc.returncode, self.proc.pid)
        if demand.workers_joined == self._joined_before:
            # It never connected: a second one would fail the same way, forever.
            raise InfrastructureError(f"{why} before it connected (what it said is above)")
        if self.restarts >= MAX_RESTARTS:
            raise InfrastructureError(f"{why}, and it was restarted {MAX_RESTARTS} times "
                                      "already: giving up")
        self.restarts += 1
        log.warning("%s: starting another one", why)
        self._joined_before = demand.workers_joined
        self._spawn()

    def _spawn(self) -> None:
        self.proc = (_STANDBY.claim(self._command) or _STANDBY.fork(self._command)
                     or _start(self._command))

    def close(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        if not wait_exit(self.proc, 10):
            self.proc.kill()
            self.proc.wait()


def _start(command: list[str], stdin=subprocess.DEVNULL) -> subprocess.Popen:
    # SIGTERM when vinemake dies (even by kill -9): the worker then stops its commands and
    # removes its run directory, instead of retrying a manager that is gone for a minute.
    return subprocess.Popen(command, stdin=stdin,
                            preexec_fn=die_with_parent(os.getpid(), signal.SIGTERM))


class _Standby:
    """At most one worker interpreter loading ahead of need (worker/standby.py), which the
    next worker started on this machine becomes instead of a new process."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.serve: Callable[[int], int] | None = None  # forks a worker when it is started

    def start(self, serve: Callable[[int], int] | None = None) -> None:
        if self.proc is None:
            if serve is not None:
                # The wire both sides of a run load (the manager here, the worker in the
                # child), loaded once before the fork instead of once in each process.
                import vinemake.wire.fileserver  # noqa: F401
            # Ctrl-C ignored until claimed, as the exec'd standby has it (worker/standby.py).
            forked = serve and fork_child(serve, signal.SIGTERM, (signal.SIGINT,))
            self.proc = forked or _start([sys.executable, "-m", "vinemake.worker.standby"],
                                         stdin=subprocess.PIPE)

    def claim(self, command: list[str]) -> subprocess.Popen | None:
        """The standby, told to serve as `command` (as if started now, from here); None
        when there is none, or it cannot be that command, or it died meanwhile."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if command[:len(_WORKER)] != _WORKER or proc.poll() is not None:
            _release(proc)
            return None
        job = {"argv": command[len(_WORKER):], "env": dict(os.environ), "cwd": os.getcwd()}
        try:
            proc.stdin.write(json.dumps(job).encode() + b"\n")
            proc.stdin.close()
        except OSError:  # it died as it was told
            _release(proc)
            return None
        return proc

    def fork(self, command: list[str]) -> ForkedChild | None:
        """A worker for `command` forked from this process now, as a standby claimed at once;
        None when no block asked for that, forking is not safe here, or this process is too
        large to fork (see _FORK_LIMIT_MB)."""
        if self.serve is None or self.proc is not None or _resident_mb() > _FORK_LIMIT_MB:
            return None
        import vinemake.wire.fileserver  # noqa: F401  (loaded once: see start)
        self.proc = fork_child(self.serve, signal.SIGTERM, (signal.SIGINT,))
        return self.claim(command)

    def release(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            _release(proc)


def _release(proc: subprocess.Popen) -> None:
    """An unclaimed standby: its stdin closed, it exits by itself as soon as it has loaded,
    reaped by a thread meanwhile (the run goes on, or ends, without waiting for it)."""
    with contextlib.suppress(OSError):
        proc.stdin.close()
    threading.Thread(target=proc.wait, name="standby-reaper", daemon=True).start()


_STANDBY = _Standby()


@contextlib.contextmanager
def standby_worker(serve: Callable[[int], int] | None = None,
                   ahead: bool = True) -> Iterator[subprocess.Popen | None]:
    """For the block, a worker interpreter (the process given) loads meanwhile, and the first
    local worker started in it is that one; unclaimed, it leaves at the end of the block.

    With `serve` (worker/standby.py's `forked`, which this layer may not import), the standby
    is forked from this process when that is safe (common/forked.py), running serve(fd).
    Not `ahead`: no standby now, but a local worker started in the block is such a fork, made
    as it is started, when that is safe then (no new interpreter to start)."""
    if ahead:
        _STANDBY.start(serve)
    _STANDBY.serve = serve
    try:
        yield _STANDBY.proc
    finally:
        _STANDBY.serve = None
        _STANDBY.release()


# A process larger than this is not forked for a worker: the fork copies its page tables, and
# every page it writes afterwards is copied while the worker lives (a large plan held by
# vinemake would be held twice). A short workflow's vinemake is well under it.
_FORK_LIMIT_MB = 256


def _resident_mb() -> float:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("inf")  # not Linux: do not fork for the size's sake either


def wait_exit(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait up to `timeout` seconds for `proc` to exit (and reap it); False if it did not.

    On its pidfd, woken the moment it exits: Popen.wait(timeout) polls with sleeps that
    double as they go, which overshoots a worker's quick exit at the end of every run.
    """
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfds (Linux < 5.3, not Linux), or reaped
        try:
            proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        exited = bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)
    if exited:
        proc.wait()
    return exited
