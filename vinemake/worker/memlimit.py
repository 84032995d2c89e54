"""Memory limits a spike cannot outrun: a cgroup per task where the kernel lets us, else rlimits.

The monitor samples memory a few times a second, so a command that allocates 150 MB and exits
within a quarter of a second never shows in a sample. A task that declares memory therefore
also runs under a limit the kernel enforces on every allocation:

- cgroup v1 memory controller (mounted at /sys/fs/cgroup/memory, the worker's own cgroup
  writable): each task gets a child cgroup of the worker's, `memory.limit_in_bytes` (and
  `memory.memsw.limit_in_bytes`, so swap is no way out) set to what it declares. The command
  joins it before it runs (`echo $$ > cgroup.procs`, then exec), so all it starts is inside.
  Over the limit the kernel's OOM killer ends it; the task is reported `resource_exceeded`,
  with the peak the kernel counted (`memory.max_usage_in_bytes`: its pages and the page cache
  of the files it wrote). Inside a SLURM job the child sits under SLURM's job cgroup, whose
  own limit applies too; where that cgroup is not ours to write, the next method is used.
- otherwise RLIMIT_DATA (`ulimit -d`): an allocation beyond the limit fails in the command
  itself (malloc returns NULL, Python raises MemoryError), so it usually exits non-zero and
  is reported failed, the reason naming the limit. It counts heap and private mappings per
  process, not resident memory, and not the sum over the processes a command starts.
- `sampling`: only the monitor's samples (what vinemake did before).

cgroup v2 needs the memory controller enabled in the worker's parent cgroup's subtree, which a
process cannot do from inside a cgroup it shares with others; such machines use RLIMIT_DATA.
"""

from __future__ import annotations

import itertools
import logging
import os
import shlex
import signal
import time

from vinemake.common.errors import InfrastructureError
from vinemake.common.process import identity, still_running
from vinemake.common.records import dataclass

__all__ = ["MemoryLimits", "Limit", "METHODS"]

log = logging.getLogger("vinemake.worker")

METHODS = ("auto", "cgroup", "rlimit", "sampling")
CGROUP_V1 = "/sys/fs/cgroup/memory"
MB = 1_000_000  # the project's MB, as the monitor counts it


@dataclass
class Limit:
    """One task's limit: `cgroup` is its directory under the cgroup method."""

    memory_mb: int
    cgroup: str | None = None


class MemoryLimits:
    """Chooses the method once per worker; makes, applies and removes each task's limit."""

    def __init__(self, choice: str = "auto", root: str = CGROUP_V1,
                 proc_cgroup: str = "/proc/self/cgroup", environ=os.environ):
        self.method = "sampling"
        self.base = ""  # this worker's cgroup directory (cgroup method)
        self._seq = itertools.count(1)  # task cgroup names; next() is atomic under the GIL
        why = ""
        if choice in ("auto", "cgroup"):
            why = self._try_cgroup(root, proc_cgroup)
            if self.base:
                self.method = "cgroup"
            elif choice == "cgroup":
                raise InfrastructureError(f"--memory-limits cgroup: {why}")
        if self.method == "sampling" and choice in ("auto", "rlimit"):
            self.method = "rlimit"
        self.why_not_cgroup = why
        self.in_slurm = "SLURM_JOB_ID" in environ

    def describe(self) -> str:
        """One line: which enforcement is in force, and why not a better one."""
        if self.method == "cgroup":
            slurm = " (inside the SLURM job's cgroup, whose limit applies too)" \
                if self.in_slurm else ""
            return f"memory limits: a cgroup per task under {self.base}{slurm}"
        why = f" (no cgroup: {self.why_not_cgroup})" if self.why_not_cgroup else ""
        if self.method == "rlimit":
            return f"memory limits: RLIMIT_DATA per process{why}"
        return f"memory limits: sampled only{why}"

    # ------------------------------------------------------------ per task

    def start(self, memory_mb: int | None) -> Limit | None:
        """The limit for a task declaring `memory_mb` (None: it declares none)."""
        if memory_mb is None or self.method == "sampling":
            return None
        limit = Limit(memory_mb)
        if self.method == "cgroup":
            path = os.path.join(self.base, f"t{next(self._seq)}")
            try:
                os.mkdir(path)
                _set_limit(path, memory_mb * MB)
            except OSError as e:
                log.warning("cannot make a memory cgroup for a task (%s): sampled only", e)
                _remove(path)
                return None
            limit.cgroup = path
        return limit

    @staticmethod
    def command(limit: Limit | None, command: str) -> str:
        """`command`, made to run under `limit` from its first instruction."""
        if limit is None:
            return command
        if limit.cgroup is not None:
            join = f"echo $$ > {shlex.quote(os.path.join(limit.cgroup, 'cgroup.procs'))}"
        else:
            join = f"ulimit -d {limit.memory_mb * MB // 1024}"
        return f"{join} && exec /bin/sh -c {shlex.quote(command)}"

    @staticmethod
    def end(limit: Limit | None, code: int) -> str | None:
        """After the command exited with `code`: why it failed, if its limit made it fail
        (the sentence for its reason); its cgroup is removed."""
        if limit is None:
            return None
        if limit.cgroup is None:
            if code == 0:
                return None
            return (f"memory limited to {limit.memory_mb} MB per process by RLIMIT_DATA: an "
                    "allocation beyond it fails")
        killed = _oom_killed(limit.cgroup, code)
        peak = _read_int(os.path.join(limit.cgroup, "memory.max_usage_in_bytes")) / MB
        _remove(limit.cgroup)
        if not killed:
            return None
        return (f"memory: over the declared {limit.memory_mb} MB (its cgroup's limit stopped "
                f"it at {peak:.0f} MB)")

    def close(self) -> None:
        if self.base:
            for name in os.listdir(self.base) if os.path.isdir(self.base) else ():
                if name.startswith("t") and name[1:].isdigit():
                    _remove(os.path.join(self.base, name))
            _remove(self.base)

    # ------------------------------------------------------------ choosing

    def _try_cgroup(self, root: str, proc_cgroup: str) -> str:
        """Make this worker's cgroup; "" when done, else why not."""
        try:
            with open(proc_cgroup) as f:
                lines = f.read().splitlines()
        except OSError as e:
            return f"cannot read {proc_cgroup}: {e.strerror}"
        mine = next((parts[2] for parts in (line.split(":", 2) for line in lines)
                     if len(parts) == 3 and "memory" in parts[1].split(",")), None)
        if mine is None:
            return "no cgroup v1 memory controller"
        parent = os.path.join(root, mine.lstrip("/"))
        _remove_stale(parent)
        base = os.path.join(parent, f"vinemake-worker-{identity()}")
        try:
            os.mkdir(base)
        except FileExistsError:
            pass
        except OSError as e:
            return f"cannot make a cgroup under {parent}: {e.strerror}"
        probe = os.path.join(base, "probe")
        try:
            os.mkdir(probe)
            _set_limit(probe, 64 * MB)
        except OSError as e:
            _remove(probe)
            _remove(base)
            return f"cannot set a memory limit under {parent}: {e.strerror}"
        _remove(probe)
        self.base = base
        return ""


def _remove_stale(parent: str) -> None:
    """Remove the cgroups of workers that were killed (kill -9 skips their cleanup)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if name.startswith("vinemake-worker-") and not still_running(
                name.removeprefix("vinemake-worker-")):
            base = os.path.join(parent, name)
            for child in os.listdir(base) if os.path.isdir(base) else ():
                if os.path.isdir(os.path.join(base, child)):
                    _remove(os.path.join(base, child))
            _remove(base)


def _set_limit(path: str, limit: int) -> None:
    _write(os.path.join(path, "memory.limit_in_bytes"), limit)
    swap = os.path.join(path, "memory.memsw.limit_in_bytes")
    if os.path.exists(swap):  # after the memory limit: it may never be below it
        _write(swap, limit)


def _write(path: str, value: int) -> None:
    with open(path, "w") as f:
        f.write(str(value))


def _read_int(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _oom_killed(cgroup: str, code: int) -> bool:
    """Did the kernel's OOM killer end something in `cgroup`? (`oom_kill` counts kills since
    Linux 4.13; before, a SIGKILL after the limit was hit.)"""
    try:
        with open(os.path.join(cgroup, "memory.oom_control")) as f:
            fields = dict(line.split() for line in f if len(line.split()) == 2)
    except OSError:
        fields = {}
    if "oom_kill" in fields:
        return int(fields["oom_kill"]) > 0
    return code == -signal.SIGKILL and _read_int(os.path.join(cgroup, "memory.failcnt")) > 0


def _remove(path: str) -> None:
    """Remove a task's cgroup, killing what the command left running in it first."""
    for _ in range(50):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            pass
        try:
            with open(os.path.join(path, "cgroup.procs")) as f:
                pids = [int(p) for p in f.read().split()]
        except (OSError, ValueError):
            pids = []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.01)
    log.warning("cannot remove cgroup %s", path)
