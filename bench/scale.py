"""Scale benchmark: a random DAG of a million rules, vinemake against GNU make.

    python bench/scale.py                          # 1M rules: -n, --check, make -n
    python bench/scale.py --rules 100k --repeat 3  # smaller, medians of interleaved runs
    python bench/scale.py --profile n:100k         # cProfile of `vinemake -n` at 100k
    python bench/scale.py --profile first:100k     # cProfile of a first build until its
                                                   # first command starts
    python bench/scale.py --baseline /tmp/old      # also -n from another checkout (its parent
                                                   # directory of vinemake/), in the same run
    python bench/scale.py --memory n:100k          # tracemalloc: top lines by bytes held
    python bench/scale.py --first-task             # a first build until its first command
                                                   # starts: planning time and memory (and
                                                   # --baseline's, in the same run)
    python bench/scale.py --first-build --rules 100k   # a whole first build (and
                                                   # --baseline's): wall, CPU, memory
    python bench/scale.py --noop                   # a no-op rerun against make -q
    python bench/scale.py --phases --rules 100k    # parse and graph (what --check does) one
                                                   # after the other: CPU and RSS of each
    python bench/scale.py --manager 10,50:0,200k   # manager memory per worker, per queued task
    python bench/scale.py --throughput 8,100 --tasks 5000   # null tasks/s on W local workers,
                                                   # and Makeflow -T wq with W work_queue_workers;
                                                   # manager's and workers' CPU per task
                                                   # (bench/fleet.py); --baseline DIR
                                                   # --alternate: two of each, ABBA
    python bench/scale.py --run 1M                 # 1M null rules end to end, SIGKILL at half,
                                                   # rerun: memory, state sizes (scale_run.py)
    python bench/scale.py --run-memory 30k         # in process: bytes held a rule at the end
                                                   # of a first run and of a rerun

Rule i makes `o<i>` from two outputs of earlier rules picked at random (seeded, so every run
and every tool reads the same graph); the first two read the sources `s0` and `s1`. Each case
is run by every tool in turn (interleaved when --repeat > 1), measured with `wait4` (CPU time
and peak RSS of the process and its children), and printed with its ratio to make's in the
same run, beside the machine's load average: only the ratios are comparable across runs on a
shared machine. Files are written under --workdir, never the repository.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peers  # noqa: E402  (a sibling module, found through the path set just above)
from peers import parse_size  # noqa: E402

SEED = 18


def edges(n: int, seed: int = SEED):
    """(target, [two sources]) for each of n rules, in file order."""
    rng = random.Random(seed)
    for i in range(n):
        if i < 2:
            yield f"o{i}", ["s0", "s1"]
        else:
            a = rng.randrange(i)
            b = rng.randrange(i - 1)
            b += b >= a  # two distinct earlier rules
            yield f"o{i}", [f"o{a}", f"o{b}"]


def prepare(workdir: str, n: int) -> str:
    """A directory with the Vinefile and the equivalent Makefile (written once, reused)."""
    d = os.path.join(workdir, f"dag-{n}")
    marker = os.path.join(d, ".complete")
    if os.path.exists(marker):
        return d
    os.makedirs(d, exist_ok=True)
    read = set()
    with open(os.path.join(d, "Vinefile"), "w") as v, \
            open(os.path.join(d, "Makefile.rules"), "w") as m:
        for t, (a, b) in edges(n):
            read.update((a, b))
            v.write(f"{t}: {a} {b}\n\tcat {a} {b} > {t}\n")
            m.write(f"{t}: {a} {b}\n\tcat {a} {b} > {t}\n")
    # make's first goal asks for every output no rule reads, as vinemake builds by default.
    with open(os.path.join(d, "Makefile"), "w") as m:
        m.write("all: " + " ".join(f"o{i}" for i in range(n) if f"o{i}" not in read) + "\n")
        m.write("include Makefile.rules\n")
    for s in ("s0", "s1"):
        with open(os.path.join(d, s), "w") as f:
            f.write(s + "\n")
    open(marker, "w").close()
    return d


CASES = {
    # name: (tool, argv after the tool)
    "vinemake -n": ("vinemake", ["-n", "Vinefile"]),
    "vinemake --check": ("vinemake", ["--check", "Vinefile"]),
    "make -n": ("make", ["-n"]),
}


def argv_of(case: str, make: str) -> list[str]:
    tool, rest = CASES[case]
    return [*peers.vinemake_command(), *rest] if tool == "vinemake" else [make, *rest]


def run(args) -> None:
    make = peers.find_make()
    d = prepare(args.workdir, args.rules)
    cases = args.cases.split(",")
    got: dict[str, list[peers.Measurement]] = {c: [] for c in cases}
    loads = []
    if args.baseline:
        got["baseline -n"] = []
    for _ in range(args.repeat):
        for case in got:  # interleaved: each round runs every case once
            loads.append(os.getloadavg()[0])
            env = None
            if case == "baseline -n":
                case, env = "vinemake -n", dict(os.environ, PYTHONPATH=args.baseline)
            got["baseline -n" if env else case].append(
                peers.measure(argv_of(case, make), d, timeout=args.timeout, env=env))
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.rules:,} rules, "
          f"{os.cpu_count()} cores, load average {min(loads):.1f}-{max(loads):.1f}, "
          f"median of {args.repeat}")
    print(f"{'case':18} {'wall s':>8} {'cpu s':>8} {'RSS MB':>8} {'cpu/make':>9} "
          f"{'rss/make':>9}")
    med = {c: _median(ms) for c, ms in got.items()}
    ref = med.get("make -n")
    for case, (wall, cpu, rss, ok) in med.items():
        rc = rr = ""
        if ref and ref[3] and ok:
            rc, rr = f"{cpu / ref[1]:.2f}x", f"{rss / ref[2]:.2f}x"
        print(f"{case:18} {wall:8.2f} {cpu:8.2f} {rss:8.0f} {rc:>9} {rr:>9}"
              f"{'' if ok else '  FAILED'}", flush=True)


def first_task(args) -> None:
    """A real first build (the local worker) timed from launch to its first command's start,
    by this checkout and, with --baseline, by that one too (interleaved, in the same run).

    The start is the first `start` event of the run's record (its own time stamp, so the
    record's one-second flush does not count); vinemake is stopped as soon as it is seen.
    CPU and peak RSS are vinemake's own process when the event is read (up to a flush later).
    """
    d = prepare(args.workdir, args.rules)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.rules:,} rules, "
          f"{os.cpu_count()} cores, first build until the first command starts")
    print(f"{'tree':9} {'run':>4} {'to 1st start s':>15} {'cpu s':>8} {'RSS MB':>8}  load")
    trees = [("vinemake", None)] + ([("baseline", args.baseline)] if args.baseline else [])
    for i in range(args.repeat):
        for label, tree in trees:
            env = dict(os.environ, PYTHONPATH=tree) if tree else None
            load = os.getloadavg()[0]
            first, cpu, rss, code = _first_start(d, args, env)
            got = f"{first:15.2f}" if first is not None else f"{f'none, exit {code}':>15}"
            print(f"{label:9} {i + 1:>4} {got} {cpu:8.2f} {rss:8.0f}  {load:.1f}", flush=True)


def first_build(args) -> None:
    """A whole first build (the local worker), this checkout's and --baseline's interleaved:
    wall, CPU and peak RSS of vinemake and everything it waited for (its worker, the
    commands), so work moved to after the first command is seen if it costs more there."""
    import shutil

    d = prepare(args.workdir, args.rules)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.rules:,} rules, "
          f"{os.cpu_count()} cores, a whole first build")
    print(f"{'tree':9} {'run':>4} {'wall s':>8} {'cpu s':>8} {'RSS MB':>8}  load")
    trees = [("vinemake", None)] + ([("baseline", args.baseline)] if args.baseline else [])
    root = os.path.join(args.workdir, f"build-{args.rules}")
    for i in range(args.repeat):
        for label, tree in trees:
            shutil.rmtree(root, ignore_errors=True)
            os.makedirs(root)
            for name in ("Vinefile", "s0", "s1"):
                os.link(os.path.join(d, name), os.path.join(root, name))
            load = os.getloadavg()[0]
            m = peers.measure([*peers.vinemake_command(), "Vinefile"], root, args.timeout,
                              env=dict(os.environ, PYTHONPATH=tree) if tree else None)
            print(f"{label:9} {i + 1:>4} {m.wall_s:8.2f} {m.cpu_s:8.2f} {m.peak_rss_mb:8.0f}  "
                  f"{load:.1f}{'' if m.ok else '  FAILED'}", flush=True)
    shutil.rmtree(root, ignore_errors=True)


def _first_start(d: str, args, env: dict | None):
    """(seconds to the first start or None, CPU s, peak RSS MB, exit code) of one first
    build of the workflow in `d`, in a fresh copy."""
    import glob
    import shutil
    import signal
    import subprocess

    root = os.path.join(args.workdir, f"first-{args.rules}")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    for name in ("Vinefile", "s0", "s1"):
        os.link(os.path.join(d, name), os.path.join(root, name))
    start = time.time()
    proc = subprocess.Popen([*peers.vinemake_command(), "Vinefile"], cwd=root, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    first = None
    while first is None and proc.poll() is None and time.time() - start < args.timeout:
        time.sleep(0.1)
        for path in glob.glob(os.path.join(root, ".vinemake", "runs", "*", "events.jsonl")):
            with open(path, "rb") as f:
                first = next((_event_time(line) for line in f if b'"ev":"start"' in line),
                             None)
    cpu, rss = _proc_usage(proc.pid)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait()
    shutil.rmtree(root, ignore_errors=True)
    return (None if first is None else first - start), cpu, rss, proc.returncode


def _event_time(line: bytes) -> float:
    import json

    return json.loads(line)["t"]


def _proc_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS MB) of a running process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/status") as f:
            hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return float("nan"), float("nan")
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks, hwm / 1024


def noop(args) -> None:
    """A no-op rerun: vinemake against `make -q`, over the same up-to-date files.

    Every output is created (in rule order, so make sees each newer than what it reads) and
    vinemake's journal seeded as a finished run leaves it (bench/dispatch.py's seed_built, in
    a child). Then: vinemake's first rerun goes down the full path (parse, keys, journal,
    plan: all skipped) and leaves the up-to-date snapshot; the second is what every later
    no-op rerun costs (the snapshot: a stat of every source and output, as make -q stats
    them); `make -q` last. Both tools read the same directory.
    """
    import subprocess

    d = prepare(args.workdir, args.rules)
    root = os.path.join(args.workdir, f"noop-{args.rules}")
    marker = os.path.join(root, ".seeded")
    if not os.path.exists(marker):
        import shutil

        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
        for name in ("Vinefile", "Makefile", "Makefile.rules", "s0", "s1"):
            os.link(os.path.join(d, name), os.path.join(root, name))
        subprocess.run([sys.executable, os.path.abspath(__file__), "--rules", str(args.rules),
                        "--seed", root], check=True)
        open(marker, "w").close()
    else:  # the full path again: without the snapshot a previous round left
        for state in ("uptodate", "rules"):
            path = os.path.join(root, ".vinemake", state)
            if os.path.exists(path):
                os.remove(path)
    make = peers.find_make()
    load = os.getloadavg()[0]
    rows = {"vinemake, full path": peers.measure([*peers.vinemake_command(), "Vinefile"],
                                                 root, args.timeout),
            "vinemake": peers.measure([*peers.vinemake_command(), "Vinefile"], root,
                                      args.timeout),
            "make -q": peers.measure([make, "-q"], root, args.timeout)}
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.rules:,} rules, "
          f"{os.cpu_count()} cores, no-op rerun, load average {load:.1f}-"
          f"{os.getloadavg()[0]:.1f}")
    ref = rows["make -q"]
    for case, m in rows.items():
        print(f"{case:20} {m.wall_s:8.2f} s  cpu {m.cpu_s:7.2f} s  rss {m.peak_rss_mb:7.0f} MB"
              f"  {m.cpu_s / ref.cpu_s:5.2f}x make -q cpu{'' if m.ok else '  FAILED'}",
              flush=True)


def phases(args) -> None:
    """Reading the Vinefile and building its graph, each phase's CPU and RSS growth, in a
    fresh interpreter per run (and one of --baseline's per run, interleaved); the Vinefile
    is read from memory, with the cyclic collector paused as the command line does."""
    import json
    import subprocess

    d = prepare(args.workdir, args.rules)
    trees = [("vinemake", None)] + ([("baseline", args.baseline)] if args.baseline else [])
    got: dict[str, list[dict]] = {label: [] for label, _ in trees}
    loads = []
    for _ in range(args.repeat):
        for label, tree in trees:
            loads.append(os.getloadavg()[0])
            env = dict(os.environ, PYTHONPATH=tree) if tree else None
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--phases-child",
                                  d], env=env, capture_output=True, text=True, check=True)
            got[label].append(json.loads(out.stdout))
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.rules:,} rules, "
          f"load average {min(loads):.1f}-{max(loads):.1f}, median of {args.repeat}")
    print(f"{'tree':9} {'parse s':>8} {'+MB':>6} {'graph s':>8} {'+MB':>6} {'B/rule':>7} "
          f"{'peak MB':>8}")
    for label, runs in got.items():
        m = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{label:9} {m['parse_s']:8.2f} {m['parse_mb']:6.0f} {m['graph_s']:8.2f} "
              f"{m['graph_mb']:6.0f} {m['parse_mb'] * 2**20 / args.rules:7.0f} "
              f"{m['peak_mb']:8.0f}", flush=True)


def _phases_child(d: str) -> None:
    import json
    import resource

    from vinemake.common.collector import collector_paused
    from vinemake.core.graph import BuildGraph
    from vinemake.language.parser import _lark, parse_bytes

    os.chdir(d)
    _lark()  # the grammar is loaded before a run reads a Vinefile: not part of the parse
    with open("Vinefile", "rb") as f:
        data = f.read()
    rss0, t0 = _rss_mb(), time.process_time()
    with collector_paused():
        workflow = parse_bytes(data, "Vinefile", os.environ)
        rss1, t1 = _rss_mb(), time.process_time()
        BuildGraph.build(workflow, d)
        rss2, t2 = _rss_mb(), time.process_time()
    print(json.dumps({"parse_s": t1 - t0, "parse_mb": rss1 - rss0, "graph_s": t2 - t1,
                      "graph_mb": rss2 - rss1,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _median(ms: list[peers.Measurement]) -> tuple[float, float, float, bool]:
    return (statistics.median(m.wall_s for m in ms), statistics.median(m.cpu_s for m in ms),
            statistics.median(m.peak_rss_mb for m in ms), all(m.ok for m in ms))


def _in_process(spec: str, workdir: str):
    """(directory, argv) for running one case inside this interpreter."""
    case, size = spec.split(":")
    d = prepare(workdir, parse_size(size))
    return d, {"n": ["-n", "Vinefile"], "check": ["--check", "Vinefile"]}[case]


def _invoke(argv: list[str]) -> None:
    from vinemake.face.cli import command

    try:
        command.main(argv, prog_name="vinemake", standalone_mode=False)
    except SystemExit:
        pass


def profile(spec: str, workdir: str) -> None:
    """cProfile of one case in process; `first:SIZE` is a first build, profiled on the main
    thread until the engine's loop sees the first `start` event (see _until_first_start)."""
    import cProfile
    import io
    import pstats

    if spec.startswith("first:"):
        _profile_first(spec, workdir)
        return
    d, argv = _in_process(spec, workdir)
    os.chdir(d)
    prof = cProfile.Profile()
    out = sys.stdout
    sys.stdout = io.StringIO()  # the dry run's listing is not what is measured
    prof.enable()
    _invoke(argv)
    prof.disable()
    sys.stdout = out
    pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


class _FirstStart(Exception):
    """Raised in the engine's loop once a command has started: the profile ends there."""


def _profile_first(spec: str, workdir: str) -> None:
    """A first build (local worker) in a fresh copy, in process, until its first command
    starts: the engine's wait raises once a `start` event was emitted (on the manager's
    thread), and the run's own cleanup closes the manager and the record."""
    import cProfile
    import pstats
    import shutil

    from vinemake.core import engine as engine_module
    from vinemake.core.events import EventLog

    size = parse_size(spec.split(":")[1])
    d = prepare(workdir, size)
    root = os.path.join(workdir, f"first-{size}")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    for name in ("Vinefile", "s0", "s1"):
        os.link(os.path.join(d, name), os.path.join(root, name))
    os.chdir(root)
    started = []
    emit, wait = EventLog.emit, engine_module.Engine._wait

    def noting_emit(self, kind, /, t=None, **fields):
        if kind == "start":
            started.append(True)
        emit(self, kind, t, **fields)

    def stopping_wait(self, st):
        got = wait(self, st)
        if started:
            prof.disable()  # what the run does on its way out is not measured
            cpu.append(time.process_time() - t0)
            raise _FirstStart
        return got

    EventLog.emit, engine_module.Engine._wait = noting_emit, stopping_wait
    prof = cProfile.Profile()
    cpu: list[float] = []
    t0 = time.process_time()
    prof.enable()
    try:
        _invoke(["Vinefile"])
    except _FirstStart:
        pass
    finally:
        prof.disable()
        os.chdir(workdir)
        shutil.rmtree(root, ignore_errors=True)
    if not cpu:
        raise SystemExit("the build ended without a command started")
    cpu = cpu[0]
    print(f"# {size:,} rules, first build to its first start: {cpu:.2f} s of CPU (this "
          f"process, profiled), load average {os.getloadavg()[0]:.1f}")
    pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
    pstats.Stats(prof).sort_stats("tottime").print_stats(30)


def memory(spec: str, workdir: str) -> None:
    """What is held when the plan is made and the listing starts (the -n peak), by line."""
    import io
    import tracemalloc

    from vinemake.face import run as face_run

    d, argv = _in_process(spec, workdir)
    os.chdir(d)
    snaps = []
    listing = face_run.write_dry_run

    def snapshot_then_list(*a, **kw):
        snaps.append(tracemalloc.take_snapshot())
        return listing(*a, **kw)

    face_run.write_dry_run = snapshot_then_list
    out = sys.stdout
    sys.stdout = io.StringIO()
    tracemalloc.start()
    _invoke(argv)
    peak = tracemalloc.get_traced_memory()[1]
    sys.stdout = out
    print(f"peak traced {peak / 2**20:.0f} MB; held when the listing starts, by line:")
    for stat in snaps[0].statistics("lineno")[:25] if snaps else ():
        print(f"  {stat.size / 2**20:8.1f} MB {stat.count:>9} blocks  {stat.traceback[0]}")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _traced_mb() -> float:
    import tracemalloc

    return tracemalloc.get_traced_memory()[0] / 2**20


def manager_memory(spec: str, workdir: str) -> None:
    """Memory a real manager (in this process) holds per connected worker and per queued task.

    `spec` is WORKERS:TASKS, each two counts (`10,50:0,200k`): the cost per item is the
    difference between the two measurements over the difference between the counts, so what
    a manager holds anyway cancels out. Workers are real `vinemake-worker` processes over TCP
    on 127.0.0.1 (their own memory is theirs, not the manager's); tasks are queued on a
    manager with no worker, so every one stays queued.
    """
    import shutil
    import subprocess
    import tempfile
    import tracemalloc

    from vinemake.backends import ManagerAddress, ProviderOptions
    from vinemake.backends.local import worker_command
    from vinemake.common.spec import Resources
    from vinemake.common.task import Task, TaskFile
    from vinemake.manager.config import ManagerConfig
    from vinemake.manager.manager import Manager

    workers, tasks = ([parse_size(x) for x in part.split(",")] for part in spec.split(":"))
    tmp = tempfile.mkdtemp(dir=workdir if os.path.isdir(workdir) else None)
    tracemalloc.start()
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")

    def until(cond, what, timeout=600.0):
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            time.sleep(0.05)

    try:
        seen = []
        for m_tasks in tasks:
            m = Manager.start(ManagerConfig(workdir=os.path.join(tmp, f"q{m_tasks}")))
            built = _traced_mb()
            made = [Task(i, f"rule-{i:032x}", f"o{i}", f"cat a{i} b{i} > o{i}",
                         (TaskFile(f"out-{2 * i:032x}", f"a{i}", f"/w/a{i}", 10),
                          TaskFile(f"out-{2 * i + 1:032x}", f"b{i}", f"/w/b{i}", 10)),
                         (TaskFile(f"out-{i:032x}", f"o{i}", f"/w/o{i}"),))
                    for i in range(m_tasks)]
            before = (_traced_mb(), _rss_mb())
            task_mb = before[0] - built
            for t in made:
                m.submit(t)
            until(lambda m=m, n=m_tasks: (m.wait(0.05), len(m.queue))[1] >= n, "the queue")
            seen.append((m_tasks, _traced_mb() - before[0], _rss_mb() - before[1]))
            if m_tasks:
                print(f"one Task of a two-input, one-output rule (what the engine builds): "
                      f"{task_mb * 2**20 / m_tasks:.0f} B traced")
            m.close()
            del made
        (n0, t0, r0), (n1, t1, r1) = seen
        print(f"queued task (manager's own, beyond the Task object): "
              f"{(t1 - t0) * 2**20 / (n1 - n0):.0f} B traced, "
              f"{(r1 - r0) * 2**20 / (n1 - n0):.0f} B RSS ({n0:,} vs {n1:,} tasks)")
        m = Manager.start(ManagerConfig(workdir=os.path.join(tmp, "w")))
        addr = ManagerAddress(m.host, m.port, None, False)
        opts = ProviderOptions(worker_resources=Resources(cores=1, memory_mb=1000,
                                                          disk_mb=1000), worker_timeout_s=60)
        procs = []
        seen = []
        for n in workers:
            while len(procs) < n:
                name = f"w{len(procs)}"
                procs.append(subprocess.Popen(
                    worker_command(addr, opts, os.path.join(tmp, name), name),
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            until(lambda n=n: len(m.workers) >= n, f"{n} workers to join")
            time.sleep(2)  # a heartbeat each way, so every connection's buffers exist
            seen.append((n, _traced_mb(), _rss_mb(), threading_count()))
        (n0, t0, r0, h0), (n1, t1, r1, h1) = seen
        print(f"worker connection: {(t1 - t0) * 2**20 / (n1 - n0):.0f} B traced, "
              f"{(r1 - r0) * 2**20 / (n1 - n0):.0f} B RSS, "
              f"{(h1 - h0) / (n1 - n0):.2f} threads ({n0} vs {n1} workers)")
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        m.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def threading_count() -> int:
    import threading

    return threading.active_count()


def throughput(spec: str, tasks: int, workdir: str, baseline: str | None = None,
               alternate: bool = False) -> None:
    """Null tasks per second through vinemake's manager and Makeflow's (-T wq) on W local
    workers of one core each, and where the CPU goes (bench/fleet.py says how); with
    `baseline`, vinemake from that checkout too (manager and workers), in the same run, and
    with `alternate` twice each, in the order baseline, vinemake, vinemake, baseline: of two
    vinemakes in one invocation the later ran 10-13% slower whichever it was (both orders,
    docs/performance.md), so only a pair in both orders compares them.

    Each tool's workflows and workers' directories sit in a new directory of their own, in an
    ext4 block group of their own (fleet.own_groups): this VM's ext4 makes a new file step
    over the inodes its group freed in the last minutes, so a tool sharing directories with
    the one before it paid for that one's removed caches and sandboxes."""
    import shutil
    import subprocess
    import tempfile

    import fleet

    makeflow = shutil.which("makeflow") or peers.find_makeflow()
    wq_worker = shutil.which("work_queue_worker")
    os.makedirs(workdir, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="throughput-", dir=workdir)
    fleet.own_groups(scratch)

    def home(name: str) -> str:
        # a new name each time: ext4 picks a top directory's group from a hash of its name
        return tempfile.mkdtemp(prefix=f"{name}-", dir=scratch)

    def started(argv_of, home: str, workers: int, env: dict | None = None):
        def start(port: int):
            # not in this checkout: `python -m` would import vinemake from its directory
            return [subprocess.Popen(argv_of(home, port, i), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True,
                                     env=env, cwd=home)
                    for i in range(workers)]
        return start

    def vinemake_worker(home: str, port: int, i: int) -> list[str]:
        return [sys.executable, "-m", "vinemake.worker.cli", "127.0.0.1", str(port),
                "--cores", "1", "--workdir", os.path.join(home, "workers", f"w{i}"),
                "--name", f"w{i}", "--timeout", "120", "--quiet"]

    def wq(home: str, port: int, i: int) -> list[str]:
        d = os.path.join(home, "wq-workers", f"w{i}")
        os.makedirs(d, exist_ok=True)
        # reconnect every second (by default its backoff grows to 60 s between managers)
        return [wq_worker, "--cores", "1", "-s", d, "-t", "120", "-i", "1", "-b", "1",
                "127.0.0.1", str(port)]

    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}, {tasks} null tasks")
    print(fleet.HEADER)
    try:
        for workers in (int(w) for w in spec.split(",")):
            def manager(d: str, port: int) -> list[str]:
                return [*peers.vinemake_command(), "-T", "workers", "-p", str(port),
                        "Vinefile"]

            tools = [("vinemake", manager, vinemake_worker, "Vinefile", None)]
            if baseline:
                base = ("baseline", manager, vinemake_worker, "Vinefile",
                        dict(os.environ, PYTHONPATH=baseline))
                tools = [base, *tools, *tools, base] if alternate else [base, *tools]
            if makeflow and wq_worker:
                tools.append(("makeflow", lambda d, port: [makeflow, "-T", "wq", "-p",
                                                           str(port), "Makeflow"],
                              wq, "Makeflow", None))
            rates: dict[str, list[float]] = {}
            for name, argv, worker_argv, flow, env in tools:
                d = home(name)
                tool = fleet.Tool(name, argv, started(worker_argv, d, workers, env), flow, env)
                result = fleet.measure(tool, workers, tasks, d)
                rates.setdefault(name, []).append(result.rate)
                print(result.line(), flush=True)
            if alternate:
                print("# means: " + ", ".join(f"{name} {sum(r) / len(r):.0f}/s"
                                              for name, r in rates.items()))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rules", type=parse_size, default=1_000_000)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    p.add_argument("--workdir", default=os.path.join(peers.CACHE, "scale"))
    p.add_argument("--baseline", metavar="DIR",
                   help="a checkout to run `-n` (or --first-task, or --throughput's "
                   "vinemake) from as well")
    p.add_argument("--throughput", metavar="W1,W2", help="null tasks/s on W local workers")
    p.add_argument("--tasks", type=parse_size, default=5000, help="for --throughput")
    p.add_argument("--alternate", action="store_true",
                   help="--throughput with --baseline: baseline, vinemake, vinemake, baseline "
                        "(the later vinemake of one invocation runs slower), and the means")
    p.add_argument("--profile", metavar="CASE:SIZE", help="cProfile one case (n, check or first)")
    p.add_argument("--memory", metavar="CASE:SIZE", help="tracemalloc one case (n or check)")
    p.add_argument("--first-task", action="store_true",
                   help="a first build's time to its first command started")
    p.add_argument("--first-build", action="store_true",
                   help="a whole first build: wall, CPU (with its worker's) and memory")
    p.add_argument("--noop", action="store_true", help="a no-op rerun against make -q")
    p.add_argument("--seed", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--phases", action="store_true", help="parse and graph: CPU and RSS each")
    p.add_argument("--phases-child", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--run", metavar="SIZE", type=parse_size,
                   help="SIZE null rules end to end, killed halfway, rerun (scale_run.py)")
    p.add_argument("--kill-at", type=float, default=0.5,
                   help="for --run: the share of rules done when vinemake is killed (0: never)")
    p.add_argument("--window", type=int, help="for --run: VINEMAKE_SUBMIT_WINDOW")
    p.add_argument("--run-memory", metavar="SIZE", type=parse_size,
                   help="tracemalloc of SIZE null rules run, and run again after half")
    p.add_argument("--manager", metavar="W0,W1:T0,T1",
                   help="manager memory per worker connection and per queued task")
    args = p.parse_args(argv)
    if args.seed:
        from dispatch import seed_built

        seed_built(args.seed, list(edges(args.rules)))
        return
    if args.phases_child:
        _phases_child(args.phases_child)
        return
    peers.byte_compile_vinemake()
    if args.phases:
        phases(args)
    elif args.profile:
        profile(args.profile, args.workdir)
    elif args.memory:
        memory(args.memory, args.workdir)
    elif args.manager:
        manager_memory(args.manager, args.workdir)
    elif args.first_task:
        first_task(args)
    elif args.first_build:
        first_build(args)
    elif args.noop:
        noop(args)
    elif args.run_memory:
        from scale_run import held_per_rule

        held_per_rule(args.run_memory, args.workdir)
    elif args.run:
        from scale_run import run_end_to_end

        run_end_to_end(args.run, args.workdir, args.kill_at, args.window)
    elif args.throughput:
        throughput(args.throughput, args.tasks, args.workdir, args.baseline, args.alternate)
    else:
        run(args)


if __name__ == "__main__":
    main()
