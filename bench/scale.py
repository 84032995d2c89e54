"""Scale benchmark: a random DAG of a million rules, vinemake against GNU make.

    python bench/scale.py                          # 1M rules: -n, --check, make -n
    python bench/scale.py --rules 100k --repeat 3  # smaller, medians of interleaved runs
    python bench/scale.py --profile n:100k         # cProfile of `vinemake -n` at 100k
    python bench/scale.py --memory n:100k          # tracemalloc: top lines by bytes held

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
    for _ in range(args.repeat):
        for case in cases:  # interleaved: each round runs every case once
            loads.append(os.getloadavg()[0])
            got[case].append(peers.measure(argv_of(case, make), d, timeout=args.timeout))
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
    import cProfile
    import io
    import pstats

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


def memory(spec: str, workdir: str) -> None:
    """What is held when the plan is made and the listing starts (the -n peak), by line."""
    import io
    import tracemalloc

    from vinemake.face import run as face_run

    d, argv = _in_process(spec, workdir)
    os.chdir(d)
    snaps = []
    listing = face_run.dry_run_text

    def snapshot_then_list(*a, **kw):
        snaps.append(tracemalloc.take_snapshot())
        return listing(*a, **kw)

    face_run.dry_run_text = snapshot_then_list
    out = sys.stdout
    sys.stdout = io.StringIO()
    tracemalloc.start()
    _invoke(argv)
    peak = tracemalloc.get_traced_memory()[1]
    sys.stdout = out
    print(f"peak traced {peak / 2**20:.0f} MB; held when the listing starts, by line:")
    for stat in snaps[0].statistics("lineno")[:25] if snaps else ():
        print(f"  {stat.size / 2**20:8.1f} MB {stat.count:>9} blocks  {stat.traceback[0]}")


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * scale)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rules", type=parse_size, default=1_000_000)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    p.add_argument("--workdir", default=os.path.join(peers.CACHE, "scale"))
    p.add_argument("--profile", metavar="CASE:SIZE", help="cProfile one case (n or check)")
    p.add_argument("--memory", metavar="CASE:SIZE", help="tracemalloc one case (n or check)")
    args = p.parse_args(argv)
    peers.byte_compile_vinemake()
    if args.profile:
        profile(args.profile, args.workdir)
    elif args.memory:
        memory(args.memory, args.workdir)
    else:
        run(args)


if __name__ == "__main__":
    main()
