"""Dispatch benchmark: how fast vinemake runs many tiny rules, and how fast it does nothing.

    python bench/dispatch.py                 # 1k, 2k and 10k null rules, a 200-rule chain, each
                                             # rerun with nothing to do; a 100k no-op rerun
    python bench/dispatch.py --quick         # 1k and 2k null rules and the chain only
    python bench/dispatch.py --only null1000,null2000,chain200 --tools vinemake,make --repeat 5
                                             # start-up and latency cases alone
    python bench/dispatch.py --only chain200 --tools vinemake,make --repeat 5 --baseline DIR
                                             # the same, and vinemake from the sources in DIR
                                             # (git archive of an older commit) in turn
    python bench/dispatch.py --profile null:10000   # cProfile of vinemake's own process
    python bench/dispatch.py --tools vinemake,make --repeat 5 --workdir /dev/shm/d
                                             # first builds 5 times, tools taking turns,
                                             # medians; on tmpfs, away from the disk's noise

Side by side in one run: vinemake, GNU make -j2, ninja -j2, Snakemake (capped: it needs minutes
beyond a few thousand rules) and Makeflow -T local -j 2, and for independent rules "floor"
(bench/spawnfloor.py): a bare Python loop starting the same commands the way vinemake's worker
does, cores at once, the least any Python runner can spend. Each prints wall time and the ratio
to vinemake. vinemake also reports the CPU its own process spent (manager and engine, not the
worker or the commands): the per-task figure is (CPU of the run − CPU of a no-op rerun of the
same workflow down the full path, its up-to-date snapshot removed) / rules, i.e. dispatch only,
with parsing and hashing taken out. The no-op row is the rerun after that one, as a user sees
it (the snapshot check).

The 100k no-op needs a built workflow. Building 100k rules for real takes minutes, so the
benchmark creates the outputs itself and seeds vinemake's journal the way a finished run
leaves it (through vinemake's own prepare/Journal), and compares with `make -q` over the same
files; ninja, Makeflow and Snakemake need their own logs and are compared at 10k (1k) only.
Files go under --workdir, never the repository. vinemake's modules are byte-compiled first,
as an installed copy has them (peers.byte_compile_vinemake).
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peers  # noqa: E402  (a sibling module, found through the path set just above)

SNAKEMAKE_MAX = 1000

# The tree the "baseline" tool runs vinemake from (--baseline DIR).
BASELINE: list[str] = []

# Runs vinemake's CLI in this process and writes the process's own CPU time (not the
# worker's: it is a child), then that of its reaped children (the worker and, through it,
# the commands), to $VINEMAKE_BENCH_CPU, as it leaves: through os._exit (the CLI's main,
# once everything is written) or, in an older tree, at the end of main. A first build's local
# worker is a fork of this process that leaves through os._exit too: it writes its own CPU
# and its commands' to $VINEMAKE_BENCH_CPU.worker, so the worker's share can be told from
# the commands'.
VINEMAKE_WRAPPER = """
import os, resource, sys
_exit, _parent = os._exit, os.getpid()
def _note(path):
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(path, "w") as f:
        f.write(f"{s.ru_utime + s.ru_stime} {c.ru_utime + c.ru_stime}")
def _exit_noting(code):
    worker = os.getpid() != _parent
    _note(os.environ["VINEMAKE_BENCH_CPU"] + (".worker" if worker else ""))
    _exit(code)
os._exit = _exit_noting
from vinemake.face.cli import main
try:
    main()
finally:
    _note(os.environ["VINEMAKE_BENCH_CPU"])
"""

FAST_PATH = """
import os, sys
from vinemake.face.options import RunOptions
from vinemake.face.run import nothing_to_do
sys.exit(0 if nothing_to_do(RunOptions(vinefile=os.path.abspath("Vinefile"),
                                       root=os.getcwd())) else 1)
"""


# --- workflows: (target, [sources]) in file order --------------------------------------------


def null_rules(n: int):
    return [(f"out.{i}", []) for i in range(n)]


def chain_rules(n: int):
    return [(f"c.{i}", [f"c.{i - 1}"] if i else []) for i in range(n)]


def write_all(root: str, rules) -> None:
    """Equivalent Vinefile, Makefile, build.ninja, Snakefile and Makeflow file in `root`."""
    os.makedirs(root, exist_ok=True)
    targets = [t for t, _ in rules]
    with open(os.path.join(root, "Vinefile"), "w") as f:
        f.writelines(f"{t}: {' '.join(s)}\n\t: > {t}\n\n" for t, s in rules)
    shutil.copy(os.path.join(root, "Vinefile"), os.path.join(root, "Makeflow"))
    with open(os.path.join(root, "Makefile"), "w") as f:
        f.write(f"all: {' '.join(targets)}\n\n")
        f.writelines(f"{t}: {' '.join(s)}\n\t: > {t}\n\n" for t, s in rules)
    with open(os.path.join(root, "build.ninja"), "w") as f:
        f.write("rule null\n  command = : > $out\n\n")
        f.writelines(f"build {t}: null {' '.join(s)}\n" for t, s in rules)
    with open(os.path.join(root, "Snakefile"), "w") as f:
        f.write(f"rule all:\n    input: {', '.join(repr(t) for t in targets)}\n\n")
        for i, (t, s) in enumerate(rules):
            inputs = f"    input: {', '.join(repr(x) for x in s)}\n" if s else ""
            f.write(f"rule r{i}:\n{inputs}    output: {t!r}\n    shell: ': > {t}'\n\n")


def fresh(base: str, name: str, rules) -> str:
    root = os.path.join(base, name)
    if os.path.isdir(os.path.join(root, ".vinemake", "failed")):
        # A run failed here: kept, with its reason, instead of removed by the next round.
        kept = next(f"{root}.failed-{n}" for n in itertools.count(1)
                    if not os.path.exists(f"{root}.failed-{n}"))
        os.rename(root, kept)
        print(f"  (a failed run kept in {kept})", file=sys.stderr)
    shutil.rmtree(root, ignore_errors=True)
    write_all(root, rules)
    return root


# --- tools ------------------------------------------------------------------------------------


def run_vinemake(root: str, timeout: float, tree: str | None = None):
    """vinemake from this checkout, or (`tree`) from another copy of the sources."""
    cpu_file = os.path.join(root, ".bench-cpu")
    env = dict(os.environ, VINEMAKE_BENCH_CPU=cpu_file)
    if tree:
        env["PYTHONPATH"] = tree
    m = peers.measure([sys.executable, "-c", VINEMAKE_WRAPPER], root, timeout, env)
    try:
        with open(cpu_file) as f:
            cpu, children = (float(x) for x in f.read().split())
    except (OSError, ValueError):
        cpu = children = float("nan")
    try:  # the worker's own and its commands' (none when the worker was not forked)
        with open(cpu_file + ".worker") as f:
            worker, commands = (float(x) for x in f.read().split())
        os.remove(cpu_file + ".worker")
    except (OSError, ValueError):
        worker = commands = float("nan")
    return m, cpu, children, (cpu, worker, commands)


def tool_argv(tool: str, noop: bool) -> list[str]:
    if tool == "make":
        return [peers.find_make(), "-q" if noop else "-j2", "all"]
    if tool == "ninja":
        return [peers.find_ninja(), "-j2"]
    if tool == "snakemake":
        return [peers.find_snakemake(), "-c2", "--quiet"]
    if tool == "makeflow":
        return [peers.find_makeflow(), "-T", "local", "-j", "2", "Makeflow"]
    if tool == "floor":
        return [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                             "spawnfloor.py"), "."]
    raise ValueError(tool)


def seed_built(root: str, rules) -> None:
    """Outputs on disk and a journal as a finished vinemake run leaves them."""
    from vinemake.core.graph import BuildGraph
    from vinemake.face.run import prepare
    from vinemake.language.parser import parse_file

    for t, _ in rules:
        open(os.path.join(root, t), "w").close()
    wf = parse_file(os.path.join(root, "Vinefile"))
    prep = prepare(wf, BuildGraph.build(wf, root), root)
    prep.journal.open()
    for rid in prep.plan.order:
        rk = prep.keys.rules[rid]
        placed = []
        for path, _, key in rk.outputs:
            st = os.stat(os.path.join(root, path))
            placed.append((path, key, st.st_size, st.st_mtime_ns))
        prep.journal.done(rk.key, wf.rules[rid].name, "ran", rk.parts, rk.inputs, placed)
    prep.journal.close()


# --- the cases --------------------------------------------------------------------------------


def case(base: str, name: str, rules, tools, timeout: float, repeat: int = 1):
    """Run every tool on its own copy, then again with nothing to do: (run rows, no-op rows).

    With `repeat` > 1 the first builds go round the tools that many times (each on a fresh
    copy, so a slow spell of the machine hits every tool alike) and each row is the run of
    median wall time; the no-op reruns and the CPU breakdown come from the first round.
    """
    runs: dict[str, list] = {}
    noop, cpu = {}, {}
    for round_ in range(repeat):
        for tool in tools:
            if tool == "snakemake" and len(rules) > SNAKEMAKE_MAX:
                continue
            if tool == "floor" and any(deps for _, deps in rules):
                continue  # it runs commands in file order, blind to dependencies
            root = fresh(base, f"{name}-{tool}", rules)
            try:
                runs.setdefault(tool, []).append(
                    first_build(tool, root, timeout, noop, cpu if round_ == 0 else None,
                                cpu.setdefault("shares", {})))
            except peers.PeerMissing as e:
                print(f"  {tool}: skipped ({e})")
    rows = {tool: sorted(ms, key=lambda m: m.wall_s)[len(ms) // 2] for tool, ms in runs.items()}
    report(f"{name}: {len(rules)} rules" + (f" (median of {repeat})" if repeat > 1 else ""),
           rows)
    if repeat > 1:
        for tool, ms in runs.items():
            print(f"  {tool:<10} runs: {' / '.join(f'{m.wall_s:.2f}' for m in ms)} s")
    report(f"{name}: no-op rerun", noop)
    if "run" in cpu:
        per = (cpu["run"] - cpu["noop"]) / len(rules) * 1e6
        print(f"  vinemake process CPU: run {cpu['run']:.2f} s, full-path no-op rerun"
              f" {cpu['noop']:.2f} s"
              f" -> dispatch {per:.0f} us/task")
        # The worker and the commands it ran: compare with make's total CPU, which is
        # mostly the same commands.
        print(f"  vinemake worker + commands CPU: {cpu['children']:.2f} s"
              f" ({cpu['children'] / len(rules) * 1e6:.0f} us/task)")
    for tool, shares in cpu.get("shares", {}).items():
        # Medians of every round: vinemake's process, its worker and the commands, per task.
        process, worker, commands = (sorted(x)[len(x) // 2] / len(rules) * 1e6
                                     for x in zip(*shares, strict=True))
        print(f"  {tool} CPU per task (medians of {len(shares)}): process {process:.0f} us,"
              f" worker {worker:.0f} us, commands {commands:.0f} us")
    return rows, noop


def first_build(tool: str, root: str, timeout: float, noop: dict, cpu: dict | None,
                shares: dict | None = None):
    """One first build by `tool` in `root`; with `cpu`, also its no-op rerun (into `noop`)
    and, for vinemake, the CPU breakdown (into `cpu`); with `shares`, vinemake's (and the
    baseline's) CPU by process (into shares[tool])."""
    if tool == "baseline":
        m, _, _, own = run_vinemake(root, timeout, BASELINE[0])
        if shares is not None:
            shares.setdefault(tool, []).append(own)
        return m
    if tool == "vinemake":
        m, run_cpu, children, own = run_vinemake(root, timeout)
        if shares is not None:
            shares.setdefault(tool, []).append(own)
        if cpu is not None:
            cpu["run"], cpu["children"] = run_cpu, children
            # The CPU subtracted is a no-op rerun down the full path (parse, keys, journal,
            # plan): without the up-to-date snapshot, which would skip them, and without the
            # parsed-rules cache, so it parses (and writes the cache) as the run did.
            for state in ("uptodate", "rules"):
                try:
                    os.remove(os.path.join(root, ".vinemake", state))
                except FileNotFoundError:
                    pass  # a failed run leaves none
            _, cpu["noop"], _, _ = run_vinemake(root, timeout)
            noop[tool], _, _, _ = run_vinemake(root, timeout)
        return m
    m = peers.measure(tool_argv(tool, False), root, timeout)
    if cpu is not None and tool != "floor":  # the floor keeps no state: nothing to rerun
        noop[tool] = peers.measure(tool_argv(tool, True), root, timeout)
    return m


def noop_seeded(base: str, n: int, timeout: float):
    rules = null_rules(n)
    rows = {}
    root = fresh(base, f"noop{n}-vinemake", rules)
    # In a child: seeding here would grow this process, and a child forked from it inherits
    # that peak RSS in its own ru_maxrss.
    subprocess.run([sys.executable, os.path.abspath(__file__), "--seed", root], check=True)
    # The first no-op parses, keys and plans (the full path) and leaves the up-to-date
    # snapshot; the second is what a user sees on every later rerun. The CLI takes the
    # snapshot fast path only once it calls run.nothing_to_do() before parsing, so the check
    # is also timed alone, in a fresh interpreter.
    rows["vinemake"], cpu, _, _ = run_vinemake(root, timeout)
    rows["vinemake 2nd"], _, _, _ = run_vinemake(root, timeout)
    rows["fast path"] = peers.measure([sys.executable, "-c", FAST_PATH], root, timeout)
    root = fresh(base, f"noop{n}-make", rules)
    for t, _ in rules:
        open(os.path.join(root, t), "w").close()
    rows["make -q"] = peers.measure(tool_argv("make", True), root, timeout)
    report(f"no-op rerun, {n} rules (seeded)", rows)
    return rows, cpu


def noop_touched(base: str, n: int, timeout: float):
    """A no-op rerun down the full path (a source touched, its bytes the same, so the
    up-to-date snapshot no longer holds): rules read from the parsed-rules cache, then parsed
    (the cache removed first, so the run also writes it again)."""
    rules = [(f"out.{i}", ["in.txt"]) for i in range(n)]
    root = fresh(base, f"touched{n}-vinemake", rules)
    with open(os.path.join(root, "in.txt"), "w") as f:
        f.write("in\n")
    subprocess.run([sys.executable, os.path.abspath(__file__), "--seed", root], check=True)
    run_vinemake(root, timeout)  # leaves the snapshot and the rules cache
    rows = {}
    for name, drop in (("vinemake", False), ("parsed", True)) * 3:  # the best of three
        os.utime(os.path.join(root, "in.txt"))
        if drop:
            os.remove(os.path.join(root, ".vinemake", "rules"))
        m, _, _, _ = run_vinemake(root, timeout)
        if name not in rows or m.wall_s < rows[name].wall_s:
            rows[name] = m
    report(f"full-path no-op rerun, {n} rules, a source touched (best of 3): rules from "
           "cache, or parsed", rows)
    return rows


def report(title: str, rows) -> None:
    print(f"\n{title}")
    base = rows.get("vinemake")
    for tool, m in rows.items():
        ratio = f"{m.wall_s / base.wall_s:6.2f}x vinemake" if base and base.wall_s else ""
        status = "" if m.ok else f"  (exit {m.returncode})"
        print(f"  {tool:<10} {m.wall_s:8.2f} s  cpu {m.cpu_s:7.2f} s  rss {m.peak_rss_mb:7.1f} MB"
              f"  {ratio}{status}")


def profile(spec: str, base: str) -> None:
    kind, n = spec.split(":")
    rules = null_rules(int(n)) if kind == "null" else chain_rules(int(n))
    root = fresh(base, f"profile-{kind}{n}", rules)
    out = os.path.join(base, "dispatch.prof")
    # command.main, not main: main ends the process, before the profile is written.
    code = ("import cProfile; from vinemake.face.cli import command\n"
            f"cProfile.run('try:\\n    command.main([])\\nexcept SystemExit:\\n    pass', {out!r})")
    subprocess.run([sys.executable, "-c", code], cwd=root, stderr=subprocess.DEVNULL)
    import pstats

    pstats.Stats(out).sort_stats("cumulative").print_stats(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "vinemake-dispatch"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--tools", default="vinemake,make,ninja,snakemake,makeflow,floor")
    ap.add_argument("--profile", metavar="KIND:N")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="first builds of each case N times, tools taking "
                         "turns; rows are the median runs")
    ap.add_argument("--only", metavar="CASES",
                    help="only these first-build cases, comma-separated: nullN (N rules), "
                         "chainN (N rules in a chain); --repeat applies to each")
    ap.add_argument("--baseline", metavar="DIR",
                    help="another copy of vinemake's sources (e.g. from git archive), run as "
                         "the tool 'baseline' in turn with the others")
    ap.add_argument("--seed", metavar="DIR", help=argparse.SUPPRESS)
    ap.add_argument("--touched", metavar="N", type=int,
                    help="only the full-path no-op rerun of N rules, rules cached vs parsed")
    args = ap.parse_args()
    if args.seed:
        with open(os.path.join(args.seed, "Vinefile")) as f:
            n = sum(1 for line in f if line.startswith("out."))
        seed_built(args.seed, null_rules(n))
        return
    os.makedirs(args.workdir, exist_ok=True)
    peers.byte_compile_vinemake()
    if args.profile:
        profile(args.profile, args.workdir)
        return
    if args.touched:
        noop_touched(args.workdir, args.touched, args.timeout)
        return
    tools = args.tools.split(",")
    if args.baseline:
        import compileall

        BASELINE.append(os.path.abspath(args.baseline))
        compileall.compile_dir(os.path.join(BASELINE[0], "vinemake"), quiet=1)
        tools.insert(0, "baseline")
    if args.only:
        for name in args.only.split(","):
            kind = name.rstrip("0123456789")
            rules = {"null": null_rules, "chain": chain_rules}[kind](int(name[len(kind):]))
            case(args.workdir, name, rules, tools, args.timeout, args.repeat)
        return
    for n in (1000, 2000) if args.quick else (1000, 2000, 10_000):
        case(args.workdir, f"null{n}", null_rules(n), tools, args.timeout, args.repeat)
    case(args.workdir, "chain200", chain_rules(200), tools, args.timeout, args.repeat)
    if not args.quick:
        noop_seeded(args.workdir, 100_000, args.timeout)
    for n in (10_000,) if args.quick else (10_000, 100_000):
        noop_touched(args.workdir, n, args.timeout)

if __name__ == "__main__":
    main()
