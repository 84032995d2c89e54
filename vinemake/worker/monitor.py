"""Watches running tasks' process trees with psutil; kills one that exceeds its allocation.

One thread samples every running task at an interval, and only once a task has lived for
`delay` seconds: most tasks are over before then and cost the monitor nothing, which matters
when thousands of tiny tasks go through a worker. Each task leads its own process group
(cheaper to start than a session), so a kill takes everything it started.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field

import psutil

from vinemake.spec import Resources
from vinemake.task import Measured
from vinemake.worker.sandbox import tree_size

__all__ = ["Sample", "exceeded", "Monitor", "Watch"]


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
    _proc: psutil.Process | None = None

    def measured(self, end: float) -> Measured:
        wall = max(end - self.start, 0.0)
        return Measured(cores=round(self.cpu_s / wall, 3) if wall > 0 else 0.0,
                        memory_mb=round(self.peak_memory_mb, 1),
                        disk_mb=round(self.peak_disk_mb, 3), wall_time_s=round(wall, 4))


class Monitor:
    """Samples registered Watches every `interval` seconds after `delay`."""

    def __init__(self, interval: float = 0.25, delay: float = 0.1):
        self.interval = interval
        self.delay = delay
        self._watches: dict[int, Watch] = {}
        self._cond = threading.Condition()
        self._closed = False
        threading.Thread(target=self._loop, name="monitor", daemon=True).start()

    def watch(self, pid: int, limits: Resources, sandbox: str) -> Watch:
        w = Watch(pid, limits, sandbox)
        with self._cond:
            self._watches[pid] = w
            self._cond.notify()
        return w

    def unwatch(self, w: Watch) -> None:
        with self._cond:
            self._watches.pop(w.pid, None)

    def kill(self, w: Watch, reason: str) -> None:
        w.reason = w.reason or reason
        try:
            os.killpg(w.pid, signal.SIGKILL)
        except OSError:
            pass

    def kill_all(self, reason: str) -> None:
        """Kill every watched task (the manager that sent them is gone)."""
        with self._cond:
            watches = list(self._watches.values())
        for w in watches:
            w.reason = w.reason or reason
            try:
                os.killpg(w.pid, signal.SIGKILL)
            except OSError:
                pass

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._watches and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
            time.sleep(self.interval)
            with self._cond:
                watches = list(self._watches.values())
            now = time.monotonic()
            for w in watches:
                if now - w.start >= self.delay and w.reason is None:
                    self._sample(w, now)

    def _sample(self, w: Watch, now: float) -> None:
        try:
            if w._proc is None:
                w._proc = psutil.Process(w.pid)
            procs = [w._proc, *w._proc.children(recursive=True)]
        except psutil.Error:
            return
        rss = cpu = 0.0
        for p in procs:
            try:
                rss += p.memory_info().rss
                t = p.cpu_times()
                cpu += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                continue
        disk = tree_size(w.sandbox) / 1e6 if w.limits.disk_mb is not None else 0.0
        w.peak_memory_mb = max(w.peak_memory_mb, rss / 1e6)
        w.peak_disk_mb = max(w.peak_disk_mb, disk)
        w.cpu_s = max(w.cpu_s, cpu)
        reason = exceeded(w.limits, Sample(rss / 1e6, disk, now - w.start))
        if reason is not None:
            w.reason = reason
            try:
                os.killpg(w.pid, signal.SIGKILL)
            except OSError:
                pass
