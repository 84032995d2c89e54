"""Watches running tasks' process trees with psutil; kills one that exceeds its allocation.

One thread samples every running task at an interval, and only once a task has lived for
`delay` seconds: most tasks are over before then and cost the monitor nothing, which matters
when thousands of tiny tasks go through a worker (psutil itself is loaded at the first
sample, or when the loop first falls asleep, whichever comes first: a worker starting does
not wait for it, and a worker between managers loads it idle rather than in the middle of a
run, where a loaded machine makes tasks outlive the delay). The
processes of every task sampled at one tick are found in one pass over /proc (proctree.py).
With nothing to watch for a while the thread blocks until a task comes, so an idle worker
costs no wake-ups. Each task leads its own process group (cheaper to start than a session),
so a kill takes everything it started.

The same thread reaps the commands: it waits on a pidfd per command (epoll) and hands each
exit to the watch's `on_exit`. A thread blocked in `wait4` per running command cost a thread
hand-off per task, which for a short command was a good part of the worker's CPU. Where pidfds
are missing (Linux before 5.3), a small thread per command waits instead.

A reaped command's `on_gone` (its slot goes to the next task) runs at once; its `on_exit`
(collect the outputs, report) may wait a few milliseconds while the owner says tasks queue
(`defer`), and then several run back to back. Between the commands that ran meanwhile the
CPU caches are cold, and finishing tasks one by one cost this thread measurably more CPU per
task (docs/performance.md); a task waiting in the queue makes the delay free.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import field
from typing import TYPE_CHECKING

from vinemake.common import batching
from vinemake.common.records import dataclass
from vinemake.common.spec import Resources
from vinemake.common.task import Measured
from vinemake.worker.memlimit import Limit, MemoryLimits
from vinemake.worker.proctree import Lineage, ProcessTrees
from vinemake.worker.sandbox import tree_size

if TYPE_CHECKING:
    import psutil

__all__ = ["Sample", "exceeded", "Monitor", "Watch"]

log = logging.getLogger("vinemake.worker")

# Finishing reaped tasks together: common/batching.py has the policy.
DEFER_S = batching.FINISH_WAIT_S  # longest a reaped task waits to be finished with others
DEFER_MAX = batching.FINISH_MAX  # most finished together

# Idle this long (nothing watched, nothing due), the loop blocks until a task comes: an idle
# worker's monitor costs no wake-ups. Not at once: a chain of short tasks would pay a wake-up
# of this thread (watch() writing to its pipe) for every task.
SLEEP_AFTER_S = 1.0

# on_exit(exit code as subprocess gives it, resource usage from wait4 or None)
ExitListener = Callable[[int, object], None]


@dataclass(frozen=True)
class Sample:
    memory_mb: float
    disk_mb: float
    wall_time_s: float


def exceeded(limits: Resources, s: Sample) -> str | None:
    """Which declared limit a sample breaks, as a sentence; None if it fits. Pure."""
    if limits.memory_mb is not None and s.memory_mb > limits.memory_mb:
        return f"memory: used {s.memory_mb:.0f} MB, declared {limits.memory_mb} MB"
    if limits.disk_mb is not None and s.disk_mb > limits.disk_mb:
        return f"disk: used {s.disk_mb:.0f} MB, declared {limits.disk_mb} MB"
    if limits.wall_time_s is not None and s.wall_time_s > limits.wall_time_s:
        return f"wall time: ran {s.wall_time_s:.1f} s, declared {limits.wall_time_s:g} s"
    return None


@dataclass
class Watch:
    """One running task as the monitor sees it; `reason` is set if it was killed."""

    pid: int
    limits: Resources
    sandbox: str
    start: float = field(default_factory=time.monotonic)
    reason: str | None = None
    peak_memory_mb: float = 0.0
    peak_disk_mb: float = 0.0
    cpu_s: float = 0.0
    on_exit: ExitListener | None = None  # called once, on the monitor's thread, when it exits
    on_gone: Callable[[], None] | None = None  # called just before on_exit, see reap()
    _proc: psutil.Process | None = None
    # How its tree is found (proctree.py): made at its first sample, which most commands
    # never reach.
    lineage: Lineage | None = field(default=None, init=False)
    _fd: int = -1  # its pidfd, while registered
    reaped: bool = False  # its pid may belong to another process now: never signal it
    ended: float | None = None  # monotonic time it was reaped
    code: int | None = None  # its exit status once reaped (-signal if killed)
    io: dict = field(default_factory=dict)  # pid -> (bytes read, written) when last sampled
    samples: int = 0
    memory_limit: Limit | None = None  # what the kernel holds it to (memlimit.py), if anything

    def measured(self, end: float) -> Measured:
        wall = max(end - self.start, 0.0)
        io = self.io
        # Positional, in Measured's order: once a task, for every task.
        return Measured(round(self.cpu_s / wall, 3) if wall > 0 else 0.0,
                        round(self.peak_memory_mb, 1), round(self.peak_disk_mb, 3),
                        round(wall, 4), sum([r for r, _ in io.values()]) if io else 0,
                        sum([w for _, w in io.values()]) if io else 0, self.samples)


class Monitor:
    """Samples registered Watches every `interval` seconds after `delay`; reaps their exits."""

    def __init__(self, interval: float = 0.25, delay: float = 0.1,
                 tick: Callable[[], float | None] | None = None,
                 defer: Callable[[], bool] | None = None,
                 memory: MemoryLimits | None = None, trees: ProcessTrees | None = None):
        self.trees = trees or ProcessTrees()
        # Samples catch a task growing slowly; `memory` holds it to its declared memory at
        # every allocation, where the kernel lets us (memlimit.py).
        self.memory = memory or MemoryLimits("sampling")
        self.interval = interval
        self.delay = delay
        self._watches: dict[int, Watch] = {}
        self._by_fd: dict[int, Watch] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._epoll = select.epoll()
        # Wakes the loop for close(); a pidfd registered meanwhile is seen by epoll itself.
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll.register(self._wake_r, select.EPOLLIN)
        # Set while the loop blocks with no timeout (nothing to sample, nothing due): an idle
        # worker's monitor then costs no wake-up at all; watch() wakes it.
        self._asleep = False
        # Called on the monitor's thread after each batch of exits: seconds until it wants
        # to be called again, or None.
        self.tick = tick
        # Asked after commands are reaped: may their on_exit wait (see the module's doc)?
        self.defer = defer
        self.finishing = False  # True while on_exits run back to back (tick() comes next)
        self._thread = threading.Thread(target=self._loop, name="monitor", daemon=True)
        self._thread.start()

    def watch(self, pid: int, limits: Resources, sandbox: str,
              start: float | None = None) -> Watch:
        w = Watch(pid, limits, sandbox) if start is None else Watch(pid, limits, sandbox, start)
        with self._lock:
            self._watches[pid] = w
            asleep, self._asleep = self._asleep, False
        if asleep:  # it blocks with no timeout: it must wake to sample this one
            self._wake()
        return w

    def on_its_thread(self) -> bool:
        """Is the caller the monitor's own thread (which calls tick() after each batch)?"""
        return threading.get_ident() == self._thread.ident

    @property
    def asleep(self) -> bool:
        """Is the loop blocked with no timeout (idle: nothing watched for a while)?"""
        return self._asleep

    def reap(self, w: Watch, on_exit: ExitListener,
             on_gone: Callable[[], None] | None = None) -> None:
        """Wait for `w`'s process (a child of this one) to exit, then call `on_exit`.

        `on_gone()` comes first, as soon as it is reaped: when several commands end
        together, every `on_gone` runs before any `on_exit` (which collects outputs), so the
        next commands start without waiting for that.
        """
        w.on_exit = on_exit
        w.on_gone = on_gone
        self._reap_later(w)

    def kill(self, w: Watch, reason: str) -> None:
        with self._lock:  # not reaped meanwhile: the pid is still the command's
            if w.reaped:
                return  # it exited already, and its outcome says how
            w.reason = w.reason or reason
            try:
                os.killpg(w.pid, signal.SIGKILL)
            except OSError:
                pass

    def kill_all(self, reason: str) -> None:
        """Kill every watched task (the manager that sent them is gone)."""
        with self._lock:
            watches = list(self._watches.values())
        for w in watches:
            self.kill(w, reason)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the loop and wait for it: no callback runs (nor starts a task) after this."""
        self._closed = True
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        self.memory.close()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    # ------------------------------------------------------------ reaping

    def _reap_later(self, w: Watch) -> None:
        try:
            fd = os.pidfd_open(w.pid)
        except (AttributeError, OSError):  # no pidfds here: one waiting thread per command
            threading.Thread(target=self._wait_blocking, args=(w,), daemon=True).start()
            return
        with self._lock:
            w._fd = fd
            self._by_fd[fd] = w
        try:
            # Already readable if it exited meanwhile. One-shot: see _reap.
            self._epoll.register(fd, select.EPOLLIN | select.EPOLLONESHOT)
        except (ValueError, OSError):  # the monitor is closing: wait the slow way
            with self._lock:
                self._by_fd.pop(fd, None)
            os.close(fd)
            threading.Thread(target=self._wait_blocking, args=(w,), daemon=True).start()

    def _wait_blocking(self, w: Watch) -> None:
        try:  # until it has exited, without reaping it: kill() may signal it till then
            os.waitid(os.P_PID, w.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass
        with self._lock:
            self._watches.pop(w.pid, None)
            w.reaped = True
        self._exited(w, *self._reaped(w))

    def _reap(self, fd: int):
        """Reap the command behind a readable pidfd: (watch, code, usage), or None."""
        with self._lock:
            w = self._by_fd.pop(fd, None)
            if w is not None:
                self._watches.pop(w.pid, None)  # no more samples
                w.reaped = True
        if w is None:
            return None
        # Closing takes the pidfd out of the epoll set only once no descriptor is left on
        # its file, and a command spawned meanwhile holds a copy of every descriptor until
        # it execs. Were it still armed, epoll would report the exited command again under
        # this number, which the next command's pidfd may have been given, and that command
        # would be taken for reaped (its outputs collected before it made them). Registered
        # one-shot, it was disarmed as this exit was reported: no system call to take it out.
        os.close(fd)
        return (w, *self._reaped(w))  # readable: it has exited, so the wait does not block

    def _reaped(self, w: Watch):
        """Reap `w`'s exited command (marked reaped already), give its slot back at once:
        (exit code, resource usage)."""
        code, usage = _wait(w.pid, 0)
        w.ended, w.code = time.monotonic(), code
        if w.on_gone is not None:
            try:
                w.on_gone()
            except Exception:  # a bug in one task's ending must not stop the monitor
                log.exception("freeing the slot of pid %s failed", w.pid)
        return code, usage

    def _exited(self, w: Watch, code: int, usage) -> None:
        try:
            w.on_exit(code, usage)
        except Exception:  # a bug in one task's ending must not stop the monitor
            log.exception("finishing the task of pid %s failed", w.pid)

    # ------------------------------------------------------------ the loop

    def _loop(self) -> None:
        next_sample = busy = time.monotonic() + self.interval
        tick_due = None
        later: list = []
        later_due = 0.0
        wake_r = self._wake_r
        try:
            while not self._closed:
                due = next_sample if tick_due is None else min(next_sample, tick_due)
                if later:
                    due = min(due, later_due)
                now = time.monotonic()
                timeout = max(0.0, due - now)
                if later or tick_due is not None:
                    busy = now
                else:  # under the lock: watch() must see it fall asleep, or wake it
                    with self._lock:
                        if self._watches:
                            busy = now
                        elif now - busy > SLEEP_AFTER_S:
                            self._asleep, timeout = True, -1
                if timeout < 0:
                    import psutil  # noqa: F401 - idle: load it now, not at a sample in a run
                events = self._epoll.poll(timeout)
                woken = self._asleep
                for fd, _ in events:
                    if fd == wake_r:
                        woken = True
                if woken:
                    self._drain_wake()
                    next_sample = time.monotonic() + self.delay
                waited = len(later)
                for fd, _ in events:
                    if fd != wake_r:
                        e = self._reap(fd)
                        if e is not None:
                            later.append(e)
                if not waited and later:
                    later_due = time.monotonic() + DEFER_S
                if later and not self._may_wait(later, later_due):
                    self._finish_all(later)
                    later = []
                if self.tick is not None:
                    wait = self.tick()
                    tick_due = None if wait is None else time.monotonic() + wait
                now = time.monotonic()
                if now >= next_sample:
                    next_sample = now + self.interval
                    with self._lock:
                        due = [w for w in self._watches.values()
                               if now - w.start >= self.delay and w.reason is None]
                    if due:
                        self._sample_all(due, now)
        finally:
            with self._lock:
                fds, self._by_fd = list(self._by_fd), {}
            for fd in fds:
                os.close(fd)
            self._epoll.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _drain_wake(self) -> None:
        with self._lock:
            self._asleep = False
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _may_wait(self, later: list, due: float) -> bool:
        """May these reaped tasks wait to be finished with more (see the module's doc)?"""
        return (len(later) < DEFER_MAX and time.monotonic() < due
                and self.defer is not None and self.defer())

    def _finish_all(self, later: list) -> None:
        self.finishing = True
        try:
            for e in later:
                self._exited(*e)
        finally:
            self.finishing = False

    def _sample_all(self, due: list[Watch], now: float) -> None:
        """Sample these watches, their process trees found in one pass."""
        for w in due:
            if w.lineage is None:
                w.lineage = Lineage.of(w.pid)
        trees = self.trees.trees([w.lineage for w in due])
        for w in due:
            self._sample(w, now, trees.get(w.pid, ()))

    def _sample(self, w: Watch, now: float, below=()) -> None:
        import psutil  # (see the module's doc)

        try:
            if w._proc is None:
                w._proc = psutil.Process(w.pid)
        except psutil.Error:
            return
        procs = [w._proc, *self._processes(below)]
        rss = cpu = 0.0
        w.samples += 1
        for p in procs:
            try:
                rss += p.memory_info().rss
                t = p.cpu_times()
                cpu += t.user + t.system + t.children_user + t.children_system
                io = p.io_counters()
                w.io[p.pid] = (io.read_chars, io.write_chars)
            except psutil.Error:
                continue
        disk = tree_size(w.sandbox) / 1e6 if w.limits.disk_mb is not None else 0.0
        w.peak_memory_mb = max(w.peak_memory_mb, rss / 1e6)
        w.peak_disk_mb = max(w.peak_disk_mb, disk)
        w.cpu_s = max(w.cpu_s, cpu)
        reason = exceeded(w.limits, Sample(rss / 1e6, disk, now - w.start))
        if reason is not None:
            self.kill(w, reason)  # (not if a waiting thread reaped it meanwhile)

    @staticmethod
    def _processes(pids) -> list[psutil.Process]:
        """psutil's handle on each of these processes that is still there."""
        import psutil

        procs = []
        for pid in pids:
            try:
                procs.append(psutil.Process(pid))
            except psutil.Error:
                continue
        return procs


def _wait(pid: int, options: int):
    """wait4 `pid`: (exit code as subprocess gives it, its resource usage)."""
    while True:
        try:
            _, status, usage = os.wait4(pid, options)
            break
        except InterruptedError:
            continue
        except ChildProcessError:  # reaped elsewhere: nothing left to learn
            return -1, None
    return os.waitstatus_to_exitcode(status), usage
