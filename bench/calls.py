"""Function calls: trivial calls per second per worker, and a heavy-import library against plain
tasks doing the same work.

    python3 bench/calls.py                           # 1,000 trivial calls, one local worker,
                                                     # fork and direct mode (issue 18 target 6)
    python3 bench/calls.py --calls 1000 --slots 4 --modes direct --repeat 3
    python3 bench/calls.py --pool                    # the library hop alone: LibraryPool and a
                                                     # real library process, no manager
    python3 bench/calls.py --channel                 # the library program alone, over its
                                                     # channel: server and calls' CPU, faults
    sudo python3 bench/calls.py --cluster            # 8 emulated workers (network namespaces):
                                                     # heavy-import library calls against plain
                                                     # tasks each paying the import, same run

Rates come from the run's own record (`.vinemake/runs/<id>/events.jsonl`): from the first
call's `start` (the worker's clock, when the call began in its library) to the last call's
`end` (when the engine took its result), so the library's start-up and vinemake's own start
are left out, as the target asks. Manager CPU per call is the manager process's CPU (wait4;
the worker is not its child) of N calls less that of one call, over N - 1, so parsing and
start-up cancel out. Worker CPU per call is the worker process's (wait4 after it stops),
which includes its library process and, in fork mode, every call's child. That is split three
ways from `/proc` (sampled while the run goes, the last sample kept): the worker's own process,
the library's server process, and what the server reaped (a fork-mode call's children, a direct
mode's slots); with their minor page faults per call, counts the machine's load does not change.
`--baseline DIR` runs vinemake from another copy of the sources (e.g. `git archive`) too, in
turn with this checkout's, so two trees are compared in the same hold.

The trivial call is `touch c.N` in a library whose functions create the named file; the
heavy case imports numpy (or --heavy MODULE) at the top of the module both the library and the
plain tasks run: a library pays it once per worker, each plain task pays it again, which is the
shape of the TaskVine serverless paper's applications (a large import, many short calls).
Files are written under --workdir, never the repository.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "cluster"))

import peers  # noqa: E402  (sibling modules, found through the paths set just above)

TRIVIAL = '''"""Trivial calls: each creates the file it is given."""


def touch(name):
    open(name, "w").close()
'''

HEAVY = '''"""A heavy import, then a short computation per call (or per plain task)."""
import sys

import {module} as heavy  # paid once per library instance, or once per plain task


def score(seed, out):
    with open(out, "w") as f:
        f.write(f"{{len(dir(heavy)) * int(seed)}}\\n")


if __name__ == "__main__":
    score(*sys.argv[1:])
'''


def library_flow(calls: int, slots: int, mode: str, module: str, function: str,
                 args: str = "c.{i}", cores: int = 1) -> str:
    """A library (started by its first call on each worker) and `calls` calls to it."""
    option = "" if mode == "fork" else f"--mode {mode} "
    rules = [f"@library lib slots={slots}\n@resources cores={cores} memory=300MB\n: {module}\n"
             f"\tpython3 -m vinemake.library {option}{module}\n"]
    rules += [f"@call lib\nc.{i}:\n\t{function} {args.format(i=i)}\n" for i in range(calls)]
    return "\n".join(rules)


def null_flow(tasks: int) -> str:
    """The trivial call's work as plain commands, for the manager's CPU per task beside it."""
    return "\n".join(f"c.{i}:\n\ttouch c.{i}\n" for i in range(tasks))


def plain_flow(tasks: int, module: str) -> str:
    """The same work as plain tasks: each starts Python and pays the import itself."""
    return "\n".join(f"@resources cores=1\np.{i}: {module}\n\tpython3 {module} {i} p.{i}\n"
                     for i in range(tasks))


# ------------------------------------------------------------------ what a run recorded


@dataclass(frozen=True)
class Rates:
    """What the run's events say about its tasks (calls or plain tasks)."""

    tasks: int  # ended ok
    failed: int
    span_s: float  # first start to last end
    per_worker: dict[str, float]  # tasks/s of each worker over its own first start..last end
    median_wall_s: float  # a task's wall as its worker measured it
    import_s: float  # median library start-up (spawn to ready), 0 without a library

    @property
    def per_s(self) -> float:
        return self.tasks / self.span_s if self.span_s > 0 else 0.0


def read_events(workflow: Path) -> list[dict]:
    paths = sorted(glob.glob(str(workflow / ".vinemake" / "runs" / "*" / "events.jsonl")))
    if not paths:
        raise SystemExit(f"no run record under {workflow}/.vinemake/runs")
    with open(paths[-1]) as f:
        return [json.loads(line) for line in f if line.strip()]


def rates_of(events: list[dict]) -> Rates:
    starts = {e["rule"]: e for e in events if e["ev"] == "start"}
    ends = [e for e in events if e["ev"] == "end" and e["rule"] in starts]
    ok = [e for e in ends if e["status"] == "ok"]
    if not ok:
        return Rates(0, len(ends), 0.0, {}, 0.0, 0.0)
    by_worker: dict[str, list[dict]] = {}
    for e in ok:
        by_worker.setdefault(e["worker"], []).append(e)
    per_worker = {}
    for worker, mine in sorted(by_worker.items()):
        span = max(e["t"] for e in mine) - min(starts[e["rule"]]["t"] for e in mine)
        per_worker[worker] = len(mine) / span if span > 0 else 0.0
    libs = [e["end"] - e["start"] for e in events if e["ev"] == "library_start"]
    return Rates(len(ok), len(ends) - len(ok),
                 max(e["t"] for e in ok) - min(starts[e["rule"]]["t"] for e in ok),
                 per_worker, statistics.median(e["wall_s"] for e in ok),
                 statistics.median(libs) if libs else 0.0)


# ------------------------------------------------------------------ one local worker


# (CPU s, minor faults) of the worker's own process, the library server's own, and of what
# the server reaped (its calls' children or slots), in that order.
Split = tuple[float, int, float, int, float, int]
NO_SPLIT: Split = (0.0, 0, 0.0, 0, 0.0, 0)


@dataclass(frozen=True)
class LocalRun:
    wall_s: float
    manager_cpu_s: float
    worker_cpu_s: float
    code: int
    rates: Rates
    split: Split  # the last sample taken while the worker ran


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3 is index 0), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _library_of(worker: int) -> int | None:
    """The library server under the worker: a child of it (or of the shell that is its child)
    running `vinemake.library`; the calls' children, a level deeper, are not it."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        fields = _stat(int(name)) if name.isdigit() else None
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(name))
    for pid in children.get(worker, []):
        for candidate in (pid, *children.get(pid, [])):
            try:
                with open(f"/proc/{candidate}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if not argv[0].endswith(b"sh") and b"vinemake.library" in argv:
                return candidate
    return None


class SplitSampler(threading.Thread):
    """Samples the worker's own CPU and faults, its library server's, and what the server
    reaped, until stopped; `last` is the latest sample that found the worker alive."""

    def __init__(self, worker: int, period: float = 0.05):
        super().__init__(daemon=True)
        self.worker, self.period = worker, period
        self.library: int | None = None
        self.last: Split = NO_SPLIT
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.sample()
            self.stopped.wait(self.period)

    def sample(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        w = _stat(self.worker)
        if w is None:
            return
        if self.library is None:
            self.library = _library_of(self.worker)
        lib = _stat(self.library) if self.library is not None else None
        split: Split = (
            (int(w[11]) + int(w[12])) / tick, int(w[7]),
            (int(lib[11]) + int(lib[12])) / tick if lib else 0.0, int(lib[7]) if lib else 0,
            (int(lib[13]) + int(lib[14])) / tick if lib else 0.0, int(lib[8]) if lib else 0)
        if _stat(self.worker) is not None:  # still the worker's: not a reused pid
            self.last = split

    def stop(self) -> Split:
        self.stopped.set()
        self.join()
        return self.last


def run_local(d: Path, vinefile: str, files: dict[str, str], worker_cores: int,
              timeout: float, tree: str | None = None) -> LocalRun:
    """`vinemake -T workers` and one `vinemake-worker` on this host, each measured by wait4;
    vinemake from this checkout, or (`tree`) from another copy of the sources."""
    env = dict(os.environ, PYTHONPATH=tree) if tree else None
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    (d / "Vinefile").write_text(vinefile)
    for name, text in files.items():
        (d / name).write_text(text)
    port_file = d / "port"
    start = time.perf_counter()
    manager = subprocess.Popen([*peers.vinemake_command(), "-T", "workers", "-p", "0",
                                "--port-file", str(port_file)], cwd=d, env=env,
                               stdout=subprocess.DEVNULL, stderr=open(d / "manager.log", "w"))
    while not port_file.exists() or not port_file.read_text().strip():
        if manager.poll() is not None or time.perf_counter() - start > 60:
            raise SystemExit(f"vinemake did not write its port: see {d}/manager.log")
        time.sleep(0.02)
    worker = subprocess.Popen(
        [sys.executable, "-m", "vinemake.worker.cli", "127.0.0.1", port_file.read_text().split()[0],
         "--cores", str(worker_cores), "--memory", "2000", "--workdir", str(d / "w"),
         "--name", "w0", "--timeout", "60"], cwd=d, env=env, stdout=subprocess.DEVNULL,
        stderr=open(d / "worker.log", "w"), start_new_session=True)
    sampler = SplitSampler(worker.pid)
    sampler.start()
    killer = threading.Timer(timeout, os.killpg, (manager.pid, signal.SIGKILL))
    killer.start()
    try:
        _, status, usage = os.wait4(manager.pid, 0)
    finally:
        killer.cancel()
        sampler.sample()  # the calls are over; the worker has not been told to stop yet
        split = sampler.stop()
        wall = time.perf_counter() - start
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGTERM)  # it stops its library, then exits
        _, _, worker_usage = os.wait4(worker.pid, 0)
        worker.returncode = 0
        manager.returncode = os.waitstatus_to_exitcode(status)
    return LocalRun(wall, usage.ru_utime + usage.ru_stime,
                    worker_usage.ru_utime + worker_usage.ru_stime,
                    os.waitstatus_to_exitcode(status), rates_of(read_events(d)), split)


def trivial(args) -> None:
    """1,000 trivial calls on one worker, per mode: calls/s, CPU per call, latency; and the
    same work as null commands (`command`), whose manager CPU per task is the floor."""
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.calls} "
          f"trivial calls, slots={args.slots}, one worker with {args.worker_cores} cores; "
          f"{sys.executable}")
    print("# per call: CPU in µs of the manager, the worker (its own process and library, "
          "and split:\n# worker alone, library server, its calls' children or slots), minor "
          "page faults of those three")
    print(f"{'mode':13} {'calls/s':>7} {'span':>6} {'call wall':>9} {'mgr':>5} "
          f"{'wrk+lib':>7} {'worker':>6} {'server':>6} {'calls':>6} "
          f"{'faults':>6} {'server':>6} {'calls':>6}")
    files = {"lib.py": TRIVIAL}
    trees = [("", None)] + ([("base ", os.path.abspath(args.baseline))] if args.baseline else [])
    for _ in range(args.repeat):
        for mode in [*args.modes, "command"]:
            for label, tree in trees:
                _trivial_row(args, files, mode, label, tree)
    print(f"# load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def _trivial_row(args, files: dict[str, str], mode: str, label: str, tree: str | None) -> None:
    base = Path(args.workdir) / f"calls-{mode}"

    def flow(n: int) -> str:
        return null_flow(n) if mode == "command" else \
            library_flow(n, args.slots, mode, "lib.py", "touch")

    one = run_local(base.with_name(base.name + "-1"), flow(1), files, args.worker_cores,
                    args.timeout, tree)
    many = run_local(base, flow(args.calls), files, args.worker_cores, args.timeout, tree)
    r = many.rates
    n = max(1, args.calls - 1)
    bad = "" if many.code == 0 and r.tasks == args.calls else \
        f"  (exit {many.code}, {r.tasks} ok, {r.failed} failed)"
    cpu = [(a - b) / n * 1e6 for a, b in zip(many.split[0::2], one.split[0::2], strict=True)]
    faults = [(a - b) / n for a, b in zip(many.split[1::2], one.split[1::2], strict=True)]
    print(f"{label + mode:13} {r.per_s:7.0f} {r.span_s:5.2f}s {r.median_wall_s * 1e3:7.2f}ms "
          f"{(many.manager_cpu_s - one.manager_cpu_s) / n * 1e6:5.0f} "
          f"{(many.worker_cpu_s - one.worker_cpu_s) / n * 1e6:7.0f} "
          f"{cpu[0]:6.0f} {cpu[1]:6.0f} {cpu[2]:6.0f} "
          f"{faults[0]:6.0f} {faults[1]:6.0f} {faults[2]:6.0f}{bad}", flush=True)


# ------------------------------------------------------------------ the library hop alone


def pool(args) -> None:
    """LibraryPool and a real library process, no manager: what the hop itself costs."""
    from vinemake.common.spec import Resources
    from vinemake.common.task import LibrarySpec
    from vinemake.worker.libraries import LibraryPool

    d = Path(tempfile.mkdtemp(prefix="vinemake-calls-", dir=args.workdir))
    (d / "lib.py").write_text(TRIVIAL)
    print(f"# load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.calls} "
          f"calls through LibraryPool, no manager, no worker")
    print(f"{'mode':7} {'slots':>5} {'calls/s':>8} {'pool CPU/call':>14} {'library CPU/call':>17} "
          f"{'library page faults/call':>25}")
    try:
        for mode in args.modes:
            for slots in sorted({1, args.slots}):
                option = "" if mode == "fork" else f"--mode {mode} "
                spec = LibrarySpec(name="lib", key=f"rule-xxh3_128-{mode}{slots:028d}",
                                   command=f"{sys.executable} -m vinemake.library {option}"
                                           f"{d / 'lib.py'}", slots=slots,
                                   resources=Resources(cores=1, memory_mb=300, disk_mb=0,
                                                       gpus=0))
                libraries = LibraryPool(str(d / f"pool-{mode}-{slots}"))
                try:
                    rate, pool_cpu, lib_cpu, lib_faults = _hop(
                        libraries.get(spec, lambda _: None), d, slots, args.calls)
                finally:
                    libraries.close()
                print(f"{mode:7} {slots:5} {rate:8.0f} {pool_cpu * 1e6:12.0f}µs "
                      f"{lib_cpu * 1e6:15.0f}µs {lib_faults:25.0f}", flush=True)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _hop(instance, d: Path, slots: int, calls: int) -> tuple[float, float, float, float]:
    """Calls/s from `slots` threads; this process's CPU, the library's CPU and page faults
    per call (faults do not depend on the machine's load, so they compare runs)."""
    sandboxes = [d / f"sandbox{j}" for j in range(slots)]
    for s in sandboxes:
        s.mkdir(exist_ok=True)
    assert instance.call("touch", ["warm"], str(sandboxes[0])).ok  # starts the library
    lib_before, faults_before = _session_usage(instance.pid)

    def serve(j: int) -> None:
        for i in range(calls // slots):
            result = instance.call("touch", [f"c{i}"], str(sandboxes[j]))
            assert result.ok, result

    threads = [threading.Thread(target=serve, args=(j,)) for j in range(slots)]
    cpu, start = time.process_time(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    n = calls // slots * slots
    lib_after, faults_after = _session_usage(instance.pid)
    return n / wall, cpu / n, (lib_after - lib_before) / n, (faults_after - faults_before) / n


def _session_usage(sid: int) -> tuple[float, int]:
    """CPU seconds and minor page faults of every process in session sid (a library instance:
    its shell, the library, its slots or spares) and of the children they waited for (a
    fork-mode call's)."""
    total = faults = 0
    for name in os.listdir("/proc"):
        fields = _stat(int(name)) if name.isdigit() else None  # None: gone
        if fields is not None and fields[3] == str(sid):
            # minflt, cminflt at 7, 8; utime, stime, cutime, cstime 11..14
            faults += int(fields[7]) + int(fields[8])
            total += sum(int(x) for x in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK"), faults


# ------------------------------------------------------------------ the library program alone


def channel(args) -> None:
    """The Python library program driven over its own channel (no pool, worker or manager):
    its server's CPU and page faults per call, and its calls' processes' (fork mode's children,
    reaped; direct mode's slots, alive), from /proc."""
    d = Path(tempfile.mkdtemp(prefix="vinemake-calls-", dir=args.workdir))
    (d / "lib.py").write_text(TRIVIAL)
    (d / "sandbox").mkdir()
    print(f"# load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.calls} "
          f"calls straight to `{sys.executable} -m vinemake.library`; per call:")
    print(f"{'mode':7} {'in flight':>9} {'calls/s':>8} {'server CPU':>11} {'faults':>7} "
          f"{'calls CPU':>10} {'faults':>7}")
    try:
        for mode in args.modes:
            for inflight in sorted({1, args.slots}):
                rate, cpu, faults = _drive(d, mode, inflight, args.calls)
                print(f"{mode:7} {inflight:9} {rate:8.0f} {cpu[0] * 1e6:9.0f}µs "
                      f"{faults[0]:7.1f} {cpu[1] * 1e6:8.0f}µs {faults[1]:7.1f}", flush=True)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _drive(d: Path, mode: str, inflight: int, calls: int):
    """Calls/s, (server, calls') CPU s per call and (server, calls') minor faults per call."""
    option = [] if mode == "fork" else ["--mode", mode]
    lib = subprocess.Popen([sys.executable, "-m", "vinemake.library", *option, str(d / "lib.py")],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=d)
    try:
        assert json.loads(lib.stdout.readline())["ready"] is True

        def send(i: int) -> None:
            lib.stdin.write(json.dumps({"id": i, "function": "touch", "args": [f"c{i}"],
                                        "cwd": str(d / "sandbox")}).encode() + b"\n")

        def answered() -> None:
            line = lib.stdout.readline()
            assert b'"status": "ok"' in line, line

        for i in range(max(inflight, 20)):  # warm: the slots are forked, the loop has run
            send(i)
            lib.stdin.flush()
            answered()
        before, start = _library_usage(lib.pid), time.perf_counter()
        for i in range(inflight):
            send(i)
        lib.stdin.flush()
        for i in range(inflight, calls + inflight):
            answered()
            if i < calls:
                send(i)
                lib.stdin.flush()
        wall, after = time.perf_counter() - start, _library_usage(lib.pid)
    finally:
        lib.stdin.close()
        lib.wait()
    return (calls / wall, tuple((a - b) / calls for a, b in zip(after[0], before[0], strict=True)),
            tuple((a - b) / calls for a, b in zip(after[1], before[1], strict=True)))


def _library_usage(pid: int) -> tuple[tuple[float, float], tuple[int, int]]:
    """((server CPU s, calls' CPU s), (server minor faults, calls' minor faults)): the calls'
    are what the server reaped plus its children still alive (direct mode's slots)."""
    tick = os.sysconf("SC_CLK_TCK")
    me = _stat(pid)
    assert me is not None, "the library exited"
    cpu, faults = (int(me[13]) + int(me[14])) / tick, int(me[8])
    for name in os.listdir("/proc"):
        fields = _stat(int(name)) if name.isdigit() else None
        if fields is not None and int(fields[1]) == pid:
            cpu += (int(fields[11]) + int(fields[12])) / tick
            faults += int(fields[7])
    return ((int(me[11]) + int(me[12])) / tick, cpu), (int(me[7]), faults)


# ------------------------------------------------------------------ emulated cluster


def cluster(args) -> None:
    """Heavy-import library calls against plain tasks, on the same emulated hosts."""
    import netns

    reason = netns.unavailable_reason()
    if reason:
        raise SystemExit(f"--cluster needs {reason}")
    module = "work.py"
    files = {module: HEAVY.format(module=args.heavy)}
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.workers} workers x "
          f"{args.worker_cores} cores in network namespaces ({args.rate} links), "
          f"`import {args.heavy}` in the module")
    print(f"{'run':16} {'tasks':>6} {'per s':>7} {'per s/worker':>13} {'span':>7} "
          f"{'task wall':>10} {'import':>7} {'mgr CPU/task':>13}")
    runs = [(f"library {mode}", library_flow(args.cluster_calls, args.slots, mode, module,
                                             "score", "{i} c.{i}"))
            for mode in args.modes]
    runs.append(("plain tasks", plain_flow(args.plain, module)))
    c = netns.Cluster.up(args.workers, args.rate, kind="vmc")
    results = {}
    try:
        for label, flow in runs:
            results[label] = _cluster_run(c, label, flow, files, args)
            r, cpu, code = results[label]
            bad = "" if code == 0 and not r.failed else f"  (exit {code}, {r.failed} failed)"
            print(f"{label:16} {r.tasks:6} {r.per_s:7.1f} {r.per_s / args.workers:13.1f} "
                  f"{r.span_s:6.1f}s {r.median_wall_s * 1e3:8.1f}ms {r.import_s:6.2f}s "
                  f"{cpu / max(r.tasks, 1) * 1e6:11.0f}µs{bad}", flush=True)
    finally:
        c.down()
    plain = results["plain tasks"][0].per_s
    for label, (r, _, _) in results.items():
        if label != "plain tasks" and plain > 0:
            print(f"# {label}: {r.per_s / plain:.1f}x the plain tasks' rate")
    print(f"# load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def _cluster_run(c, label: str, flow: str, files: dict[str, str], args):
    """One workflow on the cluster: manager in the root namespace, a worker in each host."""
    import netns

    scratch = Path(tempfile.mkdtemp(prefix="vinemake-calls-", dir=args.workdir))
    d = netns.Deployment(c, scratch / "run", "bench-secret")
    try:
        wf = scratch / "wf"
        wf.mkdir()
        (wf / "Vinefile").write_text(flow)
        for name, text in files.items():
            (wf / name).write_text(text)
        d.start_manager(wf)
        for i in range(args.workers):
            d.start_worker(i, cores=args.worker_cores, memory_mb=2000)
        _, status, usage = os.wait4(d.manager.pid, 0)
        d.manager.returncode = code = os.waitstatus_to_exitcode(status)
        if code != 0:
            print(f"  {label}: vinemake exited {code}\n{d.manager_output()[-2000:]}",
                  file=sys.stderr)
        return rates_of(read_events(wf)), usage.ru_utime + usage.ru_stime, code
    finally:
        d.close()
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=peers.parse_size, default=1000, help="trivial calls")
    p.add_argument("--slots", type=int, default=4, help="the library's slots")
    p.add_argument("--modes", default="fork,direct", type=lambda t: t.split(","),
                   help="library modes to run, comma-separated (fork, direct)")
    p.add_argument("--worker-cores", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--pool", action="store_true", help="the library hop alone")
    p.add_argument("--channel", action="store_true",
                   help="the library program alone, driven over its channel")
    p.add_argument("--cluster", action="store_true", help="heavy import on emulated workers")
    p.add_argument("--workers", type=int, default=8, help="--cluster: emulated workers")
    p.add_argument("--rate", default="1gbit", help="--cluster: every host link")
    p.add_argument("--cluster-calls", type=peers.parse_size, default=2000,
                   help="--cluster: calls to the heavy library")
    p.add_argument("--plain", type=peers.parse_size, default=160,
                   help="--cluster: plain tasks, each paying the import")
    p.add_argument("--heavy", default="numpy", help="--cluster: the module imported")
    p.add_argument("--workdir", default=tempfile.gettempdir())
    p.add_argument("--baseline", metavar="DIR",
                   help="another copy of vinemake's sources (e.g. from git archive), run in "
                        "turn with this checkout's (the trivial calls only)")
    p.add_argument("--timeout", type=float, default=600.0)
    args = p.parse_args(argv)
    unknown = set(args.modes) - {"fork", "direct"}
    if unknown:
        p.error(f"unknown mode {sorted(unknown)[0]!r} (choose from fork, direct)")
    if args.cluster:
        cluster(args)
    elif args.pool:
        pool(args)
    elif args.channel:
        channel(args)
    else:
        trivial(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
