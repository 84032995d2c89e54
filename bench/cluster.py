"""Cluster benchmark on emulated hosts: peer replication, locality, and manager task throughput.

    sudo python3 bench/cluster.py            # full sizes (minutes; needs root for ip netns)
    sudo python3 bench/cluster.py --quick    # everything scaled down, about a minute
    sudo python3 bench/cluster.py --only replication --scale 0.25
    sudo python3 bench/cluster.py --only replication --no-star --repeat 3
    sudo python3 bench/cluster.py --only throughput --workers 32 --workdir /dev/shm
    sudo python3 bench/cluster.py --only throughput --workers 32 --workdir /tmp --own-groups

Three measurements, each compared with its baseline in the same run:

1. replication: one input needed by tasks on 8 workers behind 200 Mbit/s links, with peer
   transfers vs `--no-peer-transfers` (target: peers at least 2.5x faster), and vs one copy
   over one link (the same input to a single task on the same cluster: target, peers within
   1.2x of it). The transfer log gives the most transfers any one source served at once (a
   worker forwarding the file while it still receives it counts as a source from the moment
   its forward starts). `--repeat N` alternates the single copy and the peer runs N times and
   reports medians.
2. chains: 20 chains of 30 dependent tasks passing 50 MB @temp intermediates; bytes that crossed
   host links and wall time, `--placement locality` vs `random` (target: locality moves at most
   10% of random's bytes).
3. throughput: null tasks on W workers of 4 cores (--workers, 8 by default); tasks per second
   through the manager, from the difference between a large and a one-task run on workers
   started first (bench/fleet.py), and the same with Makeflow -T wq and a work_queue_worker in
   each host; the manager's and the workers' CPU per task (target: 1,000/s).

Each measurement runs on its own emulated cluster (namespace prefix `vmb`, tests/cluster), so a
host's link counters count exactly that run's bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "cluster"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import fleet  # noqa: E402  (bench/fleet.py)
import netns  # noqa: E402

MB = 1_000_000
THROUGHPUT_CORES = 4  # per worker in the throughput benchmark
KEEP = False  # --keep: leave each run's workflow, logs and transfer log for a post-mortem
WORKDIR: str | None = None  # --workdir: where the runs' files go (None: the temporary dir)


@dataclass(frozen=True)
class Run:
    """One vinemake run on a fresh cluster: wall time, bytes over host links, transfer peaks."""

    label: str
    wall_s: float
    link_bytes: int  # bytes sent over every host link (root + workers), i.e. between hosts
    root_bytes: int  # bytes the manager's host sent
    transfers: int
    peak_per_source: int  # most transfers to workers one source served at once
    peak_with_outputs: int  # the same, counting outputs the manager fetched back
    big_copies: int  # transfers of the largest file in the log
    big_span_s: float  # from the first of them starting to the last one ending
    ok: bool  # vinemake exited 0 and the outputs are right (when the benchmark checks them)
    peak_disk_bytes: int = 0  # most scratch space in use at once, beyond what was at start
    recreated: int = 0  # files the manager made again by re-running their producer (its log)
    cpu: Cpu | None = None  # where the machine's CPU went during the run
    # each copy of the largest file: source, dest, its start after the first one's, seconds
    big: tuple[tuple[str, str, float, float], ...] = ()
    resent: int = 0  # TCP segments the workers' hosts sent again (lost ones: /proc/net/snmp)
    input_drops: int = 0  # packets this machine's per-CPU input queues dropped during the run
    manager_resent: int = 0  # TCP segments the manager's host resent (the root namespace's)
    joins_s: float = 0.0  # from the first worker joining to the last (a hop starts at its join)
    from_first_s: float = 0.0  # from the first worker's join to the manager's exit
    from_all_s: float = 0.0  # from the last worker's join (all of them there) to the exit
    warm: bool = False  # the workers had started and served a warm-up manager first


@dataclass(frozen=True)
class Cpu:
    """CPU seconds spent during one run: the workers' and the manager's own (user and system,
    from /proc/PID/stat and the manager's rusage), and the whole machine's by kind (/proc/stat:
    softirq is mostly the emulated links' packets), with its context switches."""

    workers_user_s: float
    workers_sys_s: float
    manager_user_s: float
    manager_sys_s: float
    machine_user_s: float
    machine_sys_s: float
    machine_softirq_s: float
    machine_idle_s: float
    ctxt: int

    def line(self, mb: float) -> str:
        """Per MB that reached a worker (ms of CPU per MB)."""
        per = 1000 / max(mb, 1e-9)
        ms = {k: f"{v * per:.2f}" for k, v in asdict(self).items()}
        return (f"per MB to a worker: workers {ms['workers_user_s']} user + "
                f"{ms['workers_sys_s']} sys ms, manager {ms['manager_user_s']} + "
                f"{ms['manager_sys_s']} ms; machine user {ms['machine_user_s']}, sys "
                f"{ms['machine_sys_s']}, softirq {ms['machine_softirq_s']}, idle "
                f"{ms['machine_idle_s']} ms, {self.ctxt / max(mb, 1e-9):.0f} context switches")


TICK = os.sysconf("SC_CLK_TCK")


def _machine_cpu() -> tuple[list[float], int]:
    """/proc/stat: seconds of user, nice, system, idle, iowait, irq, softirq; context switches."""
    lines = Path("/proc/stat").read_text().splitlines()
    times = [int(v) / TICK for v in lines[0].split()[1:8]]
    ctxt = next(int(line.split()[1]) for line in lines if line.startswith("ctxt "))
    return times, ctxt


def _input_drops() -> int:
    """Packets dropped so far by the per-CPU input queues (/proc/net/softnet_stat), which
    every emulated host's received packets pass through: none should be."""
    lines = Path("/proc/net/softnet_stat").read_text().splitlines()
    return sum(int(line.split()[1], 16) for line in lines)


def _resent(cluster: netns.Cluster, workers: int) -> int:
    """TCP segments retransmitted by the hosts' kernels (each namespace counts its own)."""
    return sum(_retrans(cluster.run(i, ["cat", "/proc/net/snmp"]).stdout)
               for i in range(workers))


def _retrans(snmp: str) -> int:
    """RetransSegs of one namespace's /proc/net/snmp text."""
    rows = [line.split() for line in snmp.splitlines() if line.startswith("Tcp:")]
    if len(rows) == 2 and "RetransSegs" in rows[0]:
        return int(rows[1][rows[0].index("RetransSegs")])
    return 0


def _manager_resent() -> int:
    """RetransSegs of the manager's namespace, the root one (the whole machine's other TCP
    traffic too, nearly all on loopback, which loses nothing)."""
    return _retrans(Path("/proc/net/snmp").read_text())


def _joins(wf: Path) -> list[float]:
    """The Unix times the run's workers joined (its `worker_join` events), in order."""
    times = []
    for events in wf.glob(".vinemake/runs/*/events.jsonl"):
        for line in events.read_text().splitlines():
            if '"worker_join"' in line:
                times.append(json.loads(line)["t"])
    return sorted(times)


def _process_cpu(pid: int) -> tuple[float, float]:
    """A live process's user and system seconds (all its threads, finished ones too)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def run_on_cluster(label: str, workers: int, rate: str, files: dict[str, bytes | str],
                   vinefile: str, options: list[str], cores: int = 1, disk_mb: int = 4000,
                   check: Callable[[Path], str | None] | None = None,
                   warm: bool = False) -> Run:
    """Write the workflow, start manager + workers on a new cluster, wait, measure, tear down.

    `check(workflow dir)` says what is wrong with the outputs, or None. `warm`: the workers
    start first and serve a warm-up manager (`_warm_up`), and the run is timed from the
    measured manager's start; otherwise they start with it.
    """
    cluster = netns.Cluster.up(workers, rate, kind="vmb")
    scratch = Path(tempfile.mkdtemp(prefix="vinemake-bench-", dir=WORKDIR))
    d = netns.Deployment(cluster, scratch / "run", "bench-secret")
    disk = _DiskWatch(scratch)
    try:
        wf = scratch / "wf"
        wf.mkdir()
        (wf / "Vinefile").write_text(vinefile)
        for name, data in files.items():
            (wf / name).write_bytes(data if isinstance(data, bytes) else data.encode())
        port = _warm_up(d, scratch, workers, cores, disk_mb) if warm else 0
        before = cluster.stats()
        workers_before = [_process_cpu(p.pid) for p in d.workers.values()]
        start = time.perf_counter()
        cpu_before, children_before = _machine_cpu(), resource.getrusage(resource.RUSAGE_CHILDREN)
        drops_before, manager_resent = _input_drops(), _manager_resent()
        d.start_manager(wf, *options, port=port)
        if not warm:
            for i in range(workers):
                d.start_worker(i, cores=cores, disk_mb=disk_mb)
        code = d.wait_manager(timeout=3600)
        wall, ended = time.perf_counter() - start, time.time()
        cpu = _cpu_since(cpu_before, children_before, [p.pid for p in d.workers.values()],
                         workers_before)
        drops = _input_drops() - drops_before
        manager_resent = _manager_resent() - manager_resent
        after = cluster.stats()
        resent = _resent(cluster, workers)
        peak = disk.stop()
        if code != 0:
            print(f"  {label}: vinemake exited {code}\n{d.manager_output()[-2000:]}",
                  file=sys.stderr)
        wrong = check(wf) if check is not None and code == 0 else None
        if wrong:
            print(f"  {label}: wrong outputs: {wrong}", file=sys.stderr)
        sent = {name: after[name].up - before[name].up for name in after}
        try:
            log = d.transfers(wf)
        except FileNotFoundError:
            log = []
        names = {d.worker_name(i) for i in range(workers)}
        to_workers = netns.max_concurrent([t for t in log if t.dest in names])
        everything = netns.max_concurrent(log)
        largest = max((t.size for t in log), default=0)
        big = [t for t in log if t.size == largest]
        span = max((t.end for t in big), default=0) - min((t.start for t in big), default=0)
        joins = _joins(wf) or [ended]
        return Run(label, wall, sum(sent.values()), sent.get("root", 0), len(log),
                   max(to_workers.values(), default=0), max(everything.values(), default=0),
                   len(big), span, code == 0 and not wrong, peak,
                   d.manager_output().count("to re-create"), cpu,
                   tuple((t.source, t.dest, round(t.start - big[0].start, 2),
                          round(t.end - t.start, 2))
                         for t in sorted(big, key=lambda t: t.start)), resent, drops,
                   manager_resent=manager_resent, joins_s=joins[-1] - joins[0],
                   from_first_s=ended - joins[0], from_all_s=ended - joins[-1], warm=warm)
    finally:
        disk.stop()
        d.close()
        cluster.down()
        # worker caches can be tens of GB: never kept; --keep keeps the logs
        for i in range(workers):
            shutil.rmtree(scratch / "run" / f"w{i}", ignore_errors=True)
        if KEEP:
            print(f"  {label}: kept {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def _warm_up(d: netns.Deployment, scratch: Path, workers: int, cores: int,
             disk_mb: int) -> int:
    """Start the workers and let them serve a warm-up manager: one null task each, so every
    one of them joined it; its port, which the next manager takes over.

    Pilot workers on a real cluster start on their own hosts' CPUs and wait for a manager;
    started with the run on this machine's two cores, eight interpreters starting at once
    joined up to 0.7 s apart. Leaving the warm-up manager together, they knock again on the
    same schedule (worker.py: every 0.5 s at most), so they join the next manager together.
    """
    warm = scratch / "warm"
    barrier = warm / "barrier"
    barrier.mkdir(parents=True)
    (warm / "Vinefile").write_text(_barrier_rules(workers, barrier, "warm", ""))
    port = d.start_manager(warm)
    for i in range(workers):
        d.start_worker(i, cores=cores, disk_mb=disk_mb)
    code = d.wait_manager(timeout=600)
    if code != 0:
        raise RuntimeError(f"the warm-up manager exited {code}: {d.manager_output()[-2000:]}")
    return port


def _cpu_since(machine: tuple[list[float], int], children, workers: list[int],
               workers_before: list[tuple[float, float]]) -> Cpu:
    """The CPU spent since `machine`, `children` and `workers_before` (each worker's user
    and system seconds, none for workers started since) were taken; the manager is the child
    just reaped, the workers are still alive (they wait for the next manager)."""
    (t0, c0), (t1, c1) = machine, _machine_cpu()
    d = [b - a for a, b in zip(t0, t1, strict=True)]
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    per = [_process_cpu(pid) for pid in workers]
    per += [(-u, -s) for u, s in workers_before]
    return Cpu(sum(u for u, _ in per), sum(s for _, s in per),
               now.ru_utime - children.ru_utime, now.ru_stime - children.ru_stime,
               d[0] + d[1], d[2], d[6], d[3] + d[4], c1 - c0)


class _DiskWatch:
    """Samples the free space of a filesystem: how much more of it a run used at peak."""

    def __init__(self, path: Path, every_s: float = 0.5):
        self.path = path
        self.start = shutil.disk_usage(path).free
        self.low = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(every_s,), daemon=True)
        self._thread.start()

    def _watch(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self.low = min(self.low, shutil.disk_usage(self.path).free)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(0, self.start - self.low)


# ------------------------------------------------------------------ the three workloads


def replication_workflow(workers: int, barrier: Path) -> str:
    """One task per worker (one core each on one-core workers), all running at once.

    Left alone, the manager would rather run every task on the first worker that got the input
    than copy it eight times; the barrier (tasks wait in a shared directory until all have
    started, on an emulated cluster whose hosts share one filesystem) makes each task hold its
    worker, so the input must reach every worker, which is what this benchmark measures.
    """
    return _barrier_rules(workers, barrier, "sum", "big.in", "cksum < big.in")


def _barrier_rules(tasks: int, barrier: Path, name: str, inputs: str,
                   command: str = "true") -> str:
    """`tasks` one-core rules name.i, each waiting until all have started, then `command`."""
    # single quotes: the Vinefile expands nothing inside them, the shell does. The count is
    # the shell's own glob: a task that waits forks one `sleep` a round, not `ls` and `wc` in
    # a subshell as well (the early workers' tasks wait while the last copies still run, on
    # the same two cores, and a single copy's task never waits).
    wait = (f"timeout 600 sh -c 'until set -- {barrier}/*; [ $# -ge {tasks} ]; "
            f"do sleep 0.1; done'")
    return "\n".join(f"@resources cores=1\n{name}.{i}: {inputs}\n\t"
                     f"touch {barrier}/{name}.{i}; {wait}; {command} > {name}.{i}\n"
                     for i in range(tasks))


ONE_CORE = "@resources cores=1\n"
TEMP = "@temp\n" + ONE_CORE


def chains_workflow(chains: int, length: int, size: int) -> str:
    """Chain c: step 1 makes `size` bytes from nothing, each next step rewrites it (all @temp),
    the last one keeps only a checksum, so only a few bytes need to leave the workers.

    Steps declare no disk: the workers drop each intermediate once its reader has succeeded
    (the engine's forget), so caches hold only the few a chain still needs.
    """
    res = ONE_CORE
    temp = TEMP
    rules = []
    for c in range(chains):
        rules.append(f"{temp}c{c}.1: seed\n\thead -c {size} /dev/zero | tr '\\0' a > c{c}.1\n")
        for s in range(2, length + 1):
            rules.append(f"{temp}c{c}.{s}: c{c}.{s - 1}\n\ttr a-y b-z < c{c}.{s - 1} > c{c}.{s}\n")
        rules.append(f"{res}c{c}.sum: c{c}.{length}\n\tcksum < c{c}.{length} > c{c}.sum\n")
    return "\n".join(rules)


LIVE = 3  # intermediates of one chain on the workers at once at most: input, output, a copy
WORKER_DISK_MB = 4000  # what each worker offers (steps declare no disk, so it is not binding)
SPARE_DISK = 5_000_000_000  # bytes the chains benchmark leaves free under the scratch dir


def chain_sums(chains: int, length: int, size: int) -> Callable[[Path], str | None]:
    """A check that every chain's sum is the cksum of its last step's bytes."""
    letter = chr(min(ord("a") + length - 1, ord("z")))  # each step moves a-y one letter up
    want = subprocess.run(f"head -c {size} /dev/zero | tr '\\0' {letter} | cksum", shell=True,
                          capture_output=True, check=True).stdout

    def check(wf: Path) -> str | None:
        wrong = [c for c in range(chains) if (wf / f"c{c}.sum").read_bytes() != want]
        return f"the sums of chains {wrong} differ" if wrong else None
    return check


def null_workflow(tasks: int) -> str:
    return "\n".join(f"t.{i}:\n\ttouch t.{i}\n" for i in range(tasks))


# ------------------------------------------------------------------ benchmarks


def bench_replication(args) -> dict:
    size = max(1, round(200 * args.scale)) * MB
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    files = {"big.in": data}

    def one(label: str, options: list[str], tasks: int = args.workers) -> Run:
        barrier = Path(tempfile.mkdtemp(prefix="vinemake-barrier-"))
        try:
            return run_on_cluster(label, args.workers, args.rate, files,
                                  replication_workflow(tasks, barrier), options,
                                  warm=not args.cold_start)
        finally:
            shutil.rmtree(barrier, ignore_errors=True)

    star = None if args.no_star else one("manager-only", ["--no-peer-transfers"])
    # The baseline of the pipeline: the same input, the same cluster and start-up, one task,
    # so one copy over one link; runs alternate with the peer runs so drifting load hits both.
    # --baseline: the peer runs of another checkout alternate with this one's too.
    singles, peers = [], {limit: [] for limit in args.transfer_limits}
    before = {limit: [] for limit in args.transfer_limits}
    for _ in range(args.repeat):
        singles.append(one("single copy", [], tasks=1))
        for limit in args.transfer_limits:
            options = ["--transfer-limit", str(limit)]
            if args.baseline:
                with _pythonpath(args.baseline):
                    before[limit].append(one(f"baseline peer, limit {limit}", options))
            peers[limit].append(one(f"peer, limit {limit}", options))
    single = _median_run(singles)
    best = {limit: _median_run(runs) for limit, runs in peers.items()}
    base = {limit: _median_run(runs) for limit, runs in before.items() if runs}
    return {"input_mb": size / MB, "workers": args.workers, "rate": args.rate,
            "repeat": args.repeat, "loadavg": Path("/proc/loadavg").read_text().split()[:3],
            "manager_only": asdict(star) if star else None,
            "single": asdict(single), "singles": [asdict(r) for r in singles],
            "peer": {limit: asdict(run) for limit, run in best.items()},
            "peers": {limit: [asdict(r) for r in runs] for limit, runs in peers.items()},
            "baseline_peer": {limit: asdict(run) for limit, run in base.items()},
            "baseline_peers": {limit: [asdict(r) for r in runs] for limit, runs in before.items()
                               if runs},
            "speedup": {limit: star.wall_s / run.wall_s for limit, run in best.items()}
            if star else {},
            "vs_single": {limit: run.wall_s / single.wall_s for limit, run in best.items()},
            "span_vs_single": {limit: run.big_span_s / single.big_span_s
                               for limit, run in best.items()},
            "baseline_vs_single": {limit: run.wall_s / single.wall_s
                                   for limit, run in base.items()},
            "baseline_span_vs_single": {limit: run.big_span_s / single.big_span_s
                                        for limit, run in base.items()},
            "medians": {"single": _medians(singles),
                        **{f"peer {limit}": _medians(runs) for limit, runs in peers.items()},
                        **{f"baseline peer {limit}": _medians(runs)
                           for limit, runs in before.items() if runs}},
            "target_speedup": 2.5, "target_vs_single": 1.2}


@contextlib.contextmanager
def _pythonpath(checkout: str):
    """Run what starts meanwhile (manager, workers) from another checkout."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = checkout
    try:
        yield
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old


MEASURES = ("wall_s", "from_first_s", "from_all_s", "big_span_s", "joins_s")


def _medians(runs: list[Run]) -> dict[str, float]:
    """Each measure's median over the runs (the lower middle one of an even count)."""
    return {m: sorted(getattr(r, m) for r in runs)[(len(runs) - 1) // 2] for m in MEASURES}


def _median_run(runs: list[Run]) -> Run:
    """The run of median wall time (the lower middle one of an even count)."""
    return sorted(runs, key=lambda r: r.wall_s)[(len(runs) - 1) // 2]


def bench_chains(args) -> dict:
    chains = max(2, round(20 * args.scale))
    length = max(3, round(30 * args.scale))
    size = max(1, round(50 * args.scale)) * MB
    if args.chain_shape:
        chains, length, mb = (int(n) for n in args.chain_shape.split("x"))
        size = mb * MB
    flow = chains_workflow(chains, length, size)
    # Dead intermediates leave the workers as their readers finish, so at peak each chain has
    # a few on the workers, and nothing else is large: the sums and the manager's files are
    # bytes. The caches are removed after each run.
    disk = WORKER_DISK_MB
    need = chains * LIVE * size + SPARE_DISK
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if free < need:
        raise SystemExit(f"chains needs {need / 1e9:.0f} GB free under {tempfile.gettempdir()} "
                         f"({chains} chains x {LIVE} intermediates of {size / MB:.0f} MB and "
                         f"{SPARE_DISK / 1e9:.0f} GB to spare; {free / 1e9:.0f} GB free): "
                         "use a smaller --chain-shape")
    # --gc ref_cnt: an intermediate is deleted once its consumer is done, as a user would run it
    options = ["--gc", "ref_cnt"]
    sums = chain_sums(chains, length, size)
    local = run_on_cluster("locality", args.workers, args.rate, {"seed": ""}, flow, options,
                           cores=args.chain_cores, disk_mb=disk, check=sums)
    rand = run_on_cluster("random", args.workers, args.rate, {"seed": ""}, flow,
                          [*options, "--placement", "random"], cores=args.chain_cores,
                          disk_mb=disk, check=sums)
    return {"chains": chains, "length": length, "intermediate_mb": size / MB,
            "worker_cores": args.chain_cores, "worker_disk_mb": disk,
            "locality": asdict(local), "random": asdict(rand),
            "bytes_ratio": local.link_bytes / max(rand.link_bytes, 1), "target_bytes_ratio": 0.10}


def bench_throughput(args) -> dict:
    """vinemake and Makeflow -T wq on the same hosts, workers started first (bench/fleet.py).

    Each tool's workflows and workers' directories sit in a directory of its own; with
    --own-groups that directory gets an ext4 block group of its own too (fleet.own_groups)."""
    tasks = max(100, round(5000 * args.scale))
    cluster = netns.Cluster.up(args.workers, "1gbit", kind="vmb")
    scratch = Path(tempfile.mkdtemp(prefix="vinemake-bench-", dir=WORKDIR))
    if args.own_groups:
        fleet.own_groups(str(scratch))
    addr = cluster.addr("root")

    def started(home: Path, argv_of, env: dict | None = None):
        def start(port: int) -> list[subprocess.Popen]:
            return [cluster.popen(i, argv_of(home, port, i), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True, env=env)
                    for i in range(args.workers)]
        return start

    def vinemake_worker(home: Path, port: int, i: int) -> list[str]:
        return [shutil.which("vinemake-worker") or "vinemake-worker", addr, str(port),
                "--cores", str(THROUGHPUT_CORES), "--workdir", str(home / f"w{i}"),
                "--timeout", "120", "--name", f"w{i}", "--quiet"]

    def wq_worker(home: Path, port: int, i: int) -> list[str]:
        (home / f"wq{i}").mkdir(exist_ok=True)
        # reconnect every second (by default its backoff grows to 60 s between managers)
        return [shutil.which("work_queue_worker") or "work_queue_worker", "--cores",
                str(THROUGHPUT_CORES), "-s", str(home / f"wq{i}"), "-t", "120", "-i", "1",
                "-b", "1", addr, str(port)]

    def manager(d: str, port: int) -> list[str]:
        return [shutil.which("vinemake") or "vinemake", "-T", "workers", "-p", str(port),
                "--manager-host", addr, "Vinefile"]

    def home(name: str) -> Path:
        # A name of its own each run: ext4 starts its search for a top directory's group
        # from a hash of the name, so a fixed one lands where the last run's files were freed.
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=scratch))

    homes = {}
    tools = [fleet.Tool("vinemake", manager,
                        started(homes.setdefault("vinemake", home("vinemake")), vinemake_worker),
                        "Vinefile")]
    if args.baseline:
        env = dict(os.environ, PYTHONPATH=args.baseline)
        tools.insert(0, fleet.Tool("baseline", manager,
                                   started(homes.setdefault("baseline", home("baseline")),
                                           vinemake_worker, env),
                                   "Vinefile", env))
    if "makeflow" in args.tools and shutil.which("makeflow") and shutil.which("work_queue_worker"):
        tools.append(fleet.Tool("makeflow", lambda d, port: [
            "makeflow", "-T", "wq", "-p", str(port), "Makeflow"],
            started(homes.setdefault("makeflow", home("makeflow")), wq_worker), "Makeflow"))
    try:
        measured = {t.name: fleet.measure(t, args.workers, tasks, str(homes[t.name]))
                    for t in tools}
    finally:
        cluster.down()
        if KEEP:
            print(f"  throughput: kept {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return {"tasks": tasks, "workers": args.workers, "worker_cores": THROUGHPUT_CORES,
            **{name: asdict(m) for name, m in measured.items()},
            "tasks_per_s": measured["vinemake"].rate, "target_tasks_per_s": 1000}


BENCHES = {"replication": bench_replication, "chains": bench_chains,
           "throughput": bench_throughput}


def report(name: str, r: dict) -> str:
    """Lines a person reads: the measured ratio next to its target."""
    if name == "replication":
        return _report_replication(r)
    if name == "chains":
        lo, ra = r["locality"], r["random"]
        return (f"chains       {r['chains']}x{r['length']} tasks, {r['intermediate_mb']:.0f} MB "
                f"on {r['worker_cores']}-core workers "
                f"@temp: locality {lo['link_bytes'] / MB:.0f} MB in {lo['wall_s']:.1f}s vs random "
                f"{ra['link_bytes'] / MB:.0f} MB in {ra['wall_s']:.1f}s: "
                f"{100 * r['bytes_ratio']:.3g}% of random's bytes (target <= 10%); "
                f"scratch at peak {lo['peak_disk_bytes'] / 1e9:.1f} / "
                f"{ra['peak_disk_bytes'] / 1e9:.1f} GB "
                f"(worker caches of {r['worker_disk_mb']} MB); re-made "
                f"{lo['recreated']} / {ra['recreated']} intermediates; "
                f"sums {'right' if lo['ok'] and ra['ok'] else 'WRONG or run failed'}")
    lines = [f"throughput   {r['tasks']} null tasks on {r['workers']} workers of "
             f"{r['worker_cores']} cores (target >= {r['target_tasks_per_s']}/s, "
             f"Makeflow -T wq alongside):", "             " + fleet.HEADER]
    lines += ["             " + fleet.Throughput(**r[name]).line()
              for name in ("baseline", "vinemake", "makeflow") if name in r]
    return "\n".join(lines)


def _report_replication(r: dict) -> str:
    s, one = r["manager_only"], r["single"]
    of = f" (median of {r['repeat']})" if r["repeat"] > 1 else ""
    mb = r["input_mb"]
    warm = one.get("warm")
    lines = [f"replication  {mb:.0f} MB to {r['workers']} workers at {r['rate']}, workers "
             + ("started first (a warm-up manager each)" if warm else "started with the run")
             + f" (load average at the end {' '.join(r['loadavg'])}):"]
    if s:
        lines.append(f"             manager-only {s['wall_s']:.1f}s ({s['big_copies']} copies "
                     f"in {s['big_span_s']:.1f}s, root sent {s['root_bytes'] / MB:.0f} MB)")
    lines += _report_measures(r)
    lines.append(f"             single copy (one task){of}: {one['wall_s']:.1f}s, the copy "
                 f"{one['big_span_s']:.1f}s")
    lines += _report_runs(r["singles"])
    if one.get("cpu"):
        lines.append("               all told, " + Cpu(**one["cpu"]).line(mb))
    for name, key in (("baseline peer", "baseline_"), ("peer", "")):
        for limit, p in r[f"{key}peer"].items():
            held = "held" if p["peak_per_source"] <= limit else "EXCEEDED"
            faster = (f"; {r['speedup'][limit]:.2f}x faster than manager-only (target >= 2.5x)"
                      if s and not key else "")
            lines.append(f"             {name}, --transfer-limit {limit}{of}: {p['wall_s']:.1f}s "
                         f"({p['big_copies']} copies in {p['big_span_s']:.1f}s, root sent "
                         f"{p['root_bytes'] / MB:.0f} MB, at most {p['peak_per_source']} "
                         f"transfers per source at once: limit {held}){faster}")
            lines.append("               copies (source>dest +start/seconds): " + ", ".join(
                f"{src}>{dest} +{at:.1f}/{took:.1f}" for src, dest, at, took in p["big"]))
            lines += _report_runs(r[f"{key}peers"][limit])
            if p.get("cpu") and one.get("cpu"):
                # the single run started as many workers and made one copy: the difference is
                # what each further copy (received and forwarded) cost
                more = {k: v - one["cpu"][k] for k, v in p["cpu"].items()}
                lines.append("               each further copy, " +
                             Cpu(**more).line(mb * (r["workers"] - 1)))
    return "\n".join(lines)


MEASURE_NAMES = {"wall_s": "wall", "from_first_s": "from first join",
                 "from_all_s": "from all joined", "big_span_s": "copies",
                 "joins_s": "joins spread"}


def _report_measures(r: dict) -> list[str]:
    """A table of each measure's median, single copy and peers, and the ratios to the single
    copy; the target is on the time from all workers' joining."""
    medians = r["medians"]
    single = medians["single"]
    width = max(len(name) for name in medians) + 2
    lines = ["             " + f"{'medians, s':{width}}" +
             "".join(f"{MEASURE_NAMES[m]:>17}" for m in MEASURES)]
    for name, m in medians.items():
        lines.append("             " + f"{name:{width}}" +
                     "".join(f"{m[k]:17.2f}" for k in MEASURES))
        if name != "single":
            lines.append("             " + f"{'  x the single':{width}}" + "".join(
                f"{m[k] / max(single[k], 1e-9):16.2f}x" for k in MEASURES[:-1]))
    lines.append("             target: peers within 1.2x of the single copy from all "
                 "workers' joining (both runs timed from their last worker's join)")
    return lines


def _report_runs(runs: list[dict]) -> list[str]:
    """Each run's measures, and the packets it lost."""
    return ["               runs (s, " + ", ".join(MEASURE_NAMES[m] for m in MEASURES) + "): "
            + "; ".join(" / ".join(f"{x.get(m, 0):.2f}" for m in MEASURES) for x in runs),
            "               packets lost: TCP segments the workers resent " +
            ", ".join(str(x.get("resent", 0)) for x in runs) + ", the manager's host " +
            ", ".join(str(x.get("manager_resent", 0)) for x in runs) +
            "; dropped by this machine's input queues " +
            ", ".join(str(x.get("input_drops", 0)) for x in runs)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="same as --scale 0.1")
    p.add_argument("--scale", type=float, default=1.0, help="multiply sizes and counts")
    p.add_argument("--only", default=",".join(BENCHES), help="comma-separated benchmarks")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--rate", default="200mbit", help="every host link, each direction")
    p.add_argument("--chain-cores", type=int, default=1,
                   help="cores per worker in the chains benchmark (one-core rules)")
    p.add_argument("--chain-shape", metavar="CxLxMB",
                   help="chains x tasks per chain x MB per intermediate (default 20x30x50, scaled)")
    p.add_argument("--transfer-limits", default="3", metavar="N,...",
                   type=lambda text: [int(n) for n in text.split(",")],
                   help="peer replication runs, one per --transfer-limit (default 3)")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="replication: alternate the single-copy and peer runs N times, medians")
    p.add_argument("--cold-start", action="store_true",
                   help="replication: start the workers with each measured manager instead of "
                        "first (they then join up to 0.7 s apart on this machine's 2 cores)")
    p.add_argument("--no-star", action="store_true",
                   help="replication: skip the manager-only (--no-peer-transfers) run")
    p.add_argument("--baseline", metavar="DIR",
                   help="throughput and replication: also vinemake from this checkout, "
                        "in the same run")
    p.add_argument("--tools", default="vinemake,makeflow",
                   help="throughput: makeflow too (-T wq), or vinemake only")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--keep", action="store_true", help="keep each run's files (paths printed)")
    p.add_argument("--own-groups", action="store_true",
                   help="throughput: each tool's files in an ext4 block group of their own, "
                        "whatever else the file system's groups hold (chattr +T on the "
                        "run's directory)")
    p.add_argument("--workdir", metavar="DIR",
                   help="where the workflows and the workers' caches go (default: the "
                        "temporary directory); /dev/shm takes this VM's file creation out")
    args = p.parse_args(argv)
    global KEEP, WORKDIR
    KEEP, WORKDIR = args.keep, args.workdir
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.quick:
        args.scale = 0.1
    reason = netns.unavailable_reason()
    if reason:
        print(f"bench/cluster.py needs {reason}", file=sys.stderr)
        return 2
    results = {}
    for name in args.only.split(","):
        if name not in BENCHES:
            p.error(f"unknown benchmark {name!r} (choose from {', '.join(BENCHES)})")
        results[name] = BENCHES[name](args)
        print(report(name, results[name]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
