"""Null tasks per second through one manager on W workers that outlive it, and where the CPU goes.

Both benchmarks of many workers (bench/scale.py --throughput on this host, bench/cluster.py's
throughput in network namespaces) measure vinemake and Makeflow `-T wq` the same way:

1. The W workers start first and settle (their interpreters and imports are not the run's).
2. On the same port, one after the other: a warm-up manager with one task (every worker joins
   it), a manager with one task whose only rule sleeps (the workers' CPU while idle and
   connected is sampled meanwhile), a manager with one null task, and one with N. Workers of
   both tools outlive a manager and join the next one a moment after it listens.
3. Tasks per second = (N - 1) / (wall of N - wall of 1), each wall from the first worker's
   connection to the manager's exit: start-up cancels out, and the wait for the first worker
   (on the workers' reconnect schedule) is left out.
   Manager CPU per task = (CPU of N - CPU of 1) / (N - 1), from wait4; the workers' CPU per
   task likewise, from /proc/PID/stat (their reaped commands included), and their idle CPU
   in ms per second for all W together.

`joined` is from the first to the last of the W connections to the port (polled from
/proc/net/tcp every 20 ms): how much of a run the joining took.

`spread` (vinemake's runs, from the N run's record, .vinemake/runs/*/events.jsonl): how many
workers ran a task, by when every one of them had started its first (seconds from the first
worker's joining), the tasks each ran (fewest, median, most), and the tail, from the last
task's start to the run's end: whether all workers got work early, and where the rest of the
wall went.
"""

from __future__ import annotations

import array
import fcntl
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Tool", "Throughput", "measure", "null_flow", "free_port", "own_groups"]

HZ = os.sysconf("SC_CLK_TCK")
IDLE_S = 3  # the sleeping rule of the idle run; the middle of it is sampled


@dataclass(frozen=True)
class Tool:
    """How to run one tool: its manager in a workflow directory on a port, and its workers."""

    name: str
    manager: Callable[[str, int], list[str]]  # (workflow dir, port) -> argv
    workers: Callable[[int], list[subprocess.Popen]]  # port -> the started worker processes
    flow_file: str  # "Vinefile" or "Makeflow"
    env: dict | None = None  # the manager's environment (None: this one's)


@dataclass(frozen=True)
class Throughput:
    tool: str
    workers: int
    tasks: int
    wall_1: float
    wall_n: float
    rate: float  # tasks per second
    manager_cpu_us: float  # per task, marginal
    workers_cpu_us: float  # per task, marginal, all workers and their commands
    idle_ms_per_s: float  # all workers together, idle and connected
    joined_s: float  # from the manager's start until all workers were connected (N's run)
    ok: bool
    spread: str = ""  # how the N run's tasks went to the workers (vinemake's only)

    def line(self) -> str:
        ok = "" if self.ok else "  FAILED (see the manager's log)"
        spread = f"\n{'':10} spread: {self.spread}" if self.spread else ""
        return (f"{self.tool:10} {self.workers:>7} {self.wall_n:8.2f} {self.wall_1:8.2f} "
                f"{self.rate:8.0f} {self.manager_cpu_us:9.0f} µs {self.workers_cpu_us:9.0f} µs "
                f"{self.idle_ms_per_s:8.1f} {self.joined_s:7.2f}{ok}{spread}")


HEADER = (f"{'tool':10} {'workers':>7} {'wall N':>8} {'wall 1':>8} {'tasks/s':>8} "
          f"{'mgr cpu/task':>12} {'wkr cpu/task':>12} {'idle ms/s':>9} {'joined':>7}")


def null_flow(d: str, name: str, tasks: int, command: str = ": > t.{i}") -> None:
    """A workflow of `tasks` rules `t.i` (Vinefile and Makeflow read it alike) in `d`."""
    os.makedirs(d, exist_ok=True)
    text = "".join(f"t.{i}:\n\t{command.format(i=i)}\n" for i in range(tasks))
    with open(os.path.join(d, name), "w") as f:
        f.write(text)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def own_groups(scratch: str) -> None:
    """Mark `scratch` a top of ext4's directory hierarchy (`chattr +T`), so that each directory
    made in it gets a block group of its own, as a directory made at / does.

    A new file on ext4 without a journal (this VM's) steps over every inode of its group freed
    in the last minutes (docs/performance.md, Cluster 3), and ext4 puts a directory's files in
    its parent's group: without this every tool's files share the group of the workdir (under
    /tmp, everyone's tests'), and a tool finds the inodes the previous one's workers freed.
    Elsewhere (tmpfs) there are no groups: nothing to do."""
    get_flags, set_flags, topdir = 0x80086601, 0x40086602, 0x00020000
    fd = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY)
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, get_flags, flags, True)
        flags[0] |= topdir
        fcntl.ioctl(fd, set_flags, flags)
    except OSError:
        pass
    finally:
        os.close(fd)


def cpu_s(pids: Sequence[int]) -> float:
    """User + system CPU of the processes and the children they reaped, from /proc."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15])
    return total / HZ


def established(port: int) -> int:
    """Connections to `port` on this namespace's side (the manager's), from /proc/net/tcp."""
    want = f":{port:04X}"
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split(None, 4)
                    if parts[1].endswith(want) and parts[3] == "01":
                        count += 1
        except OSError:
            continue
    return count


def spread(d: str) -> str:
    """The module doc's `spread` of the run whose workflow directory is `d`, or "" when it
    left no record (Makeflow)."""
    records = sorted(glob.glob(os.path.join(d, ".vinemake", "runs", "*", "events.jsonl")))
    if not records:
        return ""
    joined, first, ran, last, end = [], {}, {}, None, None
    with open(records[-1], "rb") as f:
        for line in f:
            e = json.loads(line)
            if e["ev"] == "worker_join":
                joined.append(e["t"])
            elif e["ev"] == "start":
                first.setdefault(e["worker"], e["t"])
                ran[e["worker"]] = ran.get(e["worker"], 0) + 1
                last = e["t"] if last is None else max(last, e["t"])
            elif e["ev"] == "run_end":
                end = e["t"]
    if not joined or not ran or end is None:
        return ""
    counts = sorted(ran.values())
    return (f"{len(ran)} workers ran tasks, all by {max(first.values()) - min(joined):.2f} s; "
            f"{counts[0]}/{counts[len(counts) // 2]}/{counts[-1]} tasks each "
            f"(fewest/median/most); tail {end - last:.2f} s")


def _run(tool: Tool, d: str, port: int, workers: int, pids: list[int],
         sample_idle: bool = False) -> tuple[float, float, float, float, int]:
    """One manager run: (wall, manager CPU, workers' CPU, joined, exit status); with
    `sample_idle`, the workers' CPU is their idle cost in ms/s instead."""
    log = open(os.path.join(d, "manager.log"), "w")
    before = cpu_s(pids)
    start = time.perf_counter()
    manager = subprocess.Popen(tool.manager(d, port), cwd=d, stdout=log, stderr=log,
                               env=tool.env)
    first, joined = _wait_joined(manager, port, workers, start)
    workers_cpu = None
    if sample_idle:
        time.sleep(0.5)
        a, ta = cpu_s(pids), time.perf_counter()
        time.sleep(IDLE_S / 2)
        workers_cpu = (cpu_s(pids) - a) / (time.perf_counter() - ta) * 1000
    _, status, usage = os.wait4(manager.pid, 0)
    wall = time.perf_counter() - start - first  # from the first worker's connection
    log.close()
    if workers_cpu is None:
        workers_cpu = cpu_s(pids) - before
    return (wall, usage.ru_utime + usage.ru_stime, workers_cpu, joined - first,
            os.waitstatus_to_exitcode(status))


def _wait_joined(manager: subprocess.Popen, port: int, workers: int,
                 start: float) -> tuple[float, float]:
    """Poll until all workers are connected (or the manager is done): seconds from start to
    the first connection and to the last."""
    first = None
    while not _exited(manager.pid) and time.perf_counter() - start < 120:
        up = established(port)
        if up and first is None:
            first = time.perf_counter() - start
        if up >= workers:
            break
        time.sleep(0.02)
    now = time.perf_counter() - start
    return (now if first is None else first), now


def _exited(pid: int) -> bool:
    """Has `pid` exited? Without reaping it (wait4 measures it afterwards)."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _settle(pids: list[int], limit_s: float = 120.0) -> None:
    """Wait until the freshly started workers stop using CPU (their start-up is over)."""
    deadline = time.monotonic() + limit_s
    last = cpu_s(pids)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu_s(pids)
        if now - last < 0.05 * len(pids) / 100 + 0.01:
            return
        last = now


def measure(tool: Tool, workers: int, tasks: int, workdir: str) -> Throughput:
    """Run `tool` as the module's doc says; the workflow directories stay under `workdir`."""
    port = free_port()
    procs = tool.workers(port)
    pids = [p.pid for p in procs]
    try:
        _settle(pids)

        def run(label: str, n: int, **kw):
            d = os.path.join(workdir, f"{tool.name}-{workers}-{label}")
            shutil.rmtree(d, ignore_errors=True)
            null_flow(d, tool.flow_file, n, **({"command": f"sleep {IDLE_S}; : > t.{{i}}"}
                                                if kw.get("sample_idle") else {}))
            return (*_run(tool, d, port, workers, pids, **kw), spread(d))

        run("warm", 1)
        idle = run("idle", 1, sample_idle=True)
        one = run("1", 1)
        many = run(str(tasks), tasks)
    finally:
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except OSError:
                    p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    marginal = max(many[0] - one[0], 1e-9)
    return Throughput(tool.name, workers, tasks, one[0], many[0], (tasks - 1) / marginal,
                      (many[1] - one[1]) / (tasks - 1) * 1e6,
                      (many[2] - one[2]) / (tasks - 1) * 1e6, idle[2], many[3],
                      idle[4] == 0 and one[4] == 0 and many[4] == 0, many[5])
