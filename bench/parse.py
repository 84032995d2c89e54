"""Parse benchmark: `vinemake --check` against `make -n`, `ninja -n` and `snakemake -n`.

    python bench/parse.py                      # quick: 10k rules, every shape
    python bench/parse.py --sizes 100k,200k    # chosen sizes
    python bench/parse.py --full               # 10k, 100k, 200k and 1M
    python bench/parse.py --profile fanin:100k # where vinemake's time goes (cProfile)

For each shape (a chain, a fan-out from one source, a fan-in where one rule reads every other
rule's output) and size it writes an equivalent Vinefile, Makefile, build.ninja and Snakefile,
runs each tool once per --repeat in the same run (the best wall time is kept), and prints wall
time, peak RSS and the ratios to GNU make. Snakemake only runs up to --snakemake-max rules: it
needs minutes and gigabytes beyond that. Files are written under --workdir, never the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peers  # noqa: E402  (a sibling module, found through the path set just above)
from peers import parse_size  # noqa: E402

SHAPES = ("chain", "fanout", "fanin")
QUICK_SIZES = (10_000,)
FULL_SIZES = (10_000, 100_000, 200_000, 1_000_000)
TOOLS = ("vinemake", "make", "ninja", "snakemake")


# --- the workflows, as (target, sources) pairs in file order --------------------------------


def edges(shape: str, n: int) -> Iterator[tuple[str, list[str]]]:
    """The n rules of a shape: each makes one file from zero or more others."""
    if shape == "chain":
        for i in range(1, n + 1):
            yield f"f{i}", [f"f{i - 1}"]
    elif shape == "fanout":
        for i in range(n):
            yield f"out{i}", ["in.txt"]
    elif shape == "fanin":
        for i in range(n - 1):
            yield f"p{i}", []
        yield "all.out", [f"p{i}" for i in range(n - 1)]
    else:
        raise ValueError(shape)


def sources(shape: str) -> list[str]:
    return {"chain": ["f0"], "fanout": ["in.txt"], "fanin": []}[shape]


def finals(shape: str, n: int) -> list[str]:
    return {"chain": [f"f{n}"], "fanout": [f"out{i}" for i in range(n)],
            "fanin": ["all.out"]}[shape]


def write_vinefile(path: str, shape: str, n: int) -> None:
    with open(path, "w") as f:
        f.writelines(f"{t}: {' '.join(s)}\n\ttouch {t}\n" for t, s in edges(shape, n))


def write_makefile(path: str, shape: str, n: int) -> None:
    with open(path, "w") as f:
        f.write(f".PHONY: all\nall: {' '.join(finals(shape, n))}\n")
        f.writelines(f"{t}: {' '.join(s)}\n\ttouch {t}\n" for t, s in edges(shape, n))


def write_ninja(path: str, shape: str, n: int) -> None:
    with open(path, "w") as f:
        f.write("rule touch\n  command = touch $out\n")
        f.writelines(f"build {t}: touch {' '.join(s)}\n" for t, s in edges(shape, n))


def write_snakefile(path: str, shape: str, n: int) -> None:
    # One wildcard rule per shape: the same n jobs as n explicit rules, written as a
    # Snakemake user would.
    text = {
        "chain": f'''rule all:
    input: "f{n}"

rule step:
    output: "f{{i}}"
    input: lambda w: f"f{{int(w.i) - 1}}"
    wildcard_constraints: i=r"[1-9][0-9]*"
    shell: "touch {{output}}"
''',
        "fanout": f'''rule all:
    input: expand("out{{i}}", i=range({n}))

rule make:
    input: "in.txt"
    output: "out{{i}}"
    wildcard_constraints: i=r"[0-9]+"
    shell: "touch {{output}}"
''',
        "fanin": f'''rule all:
    input: expand("p{{i}}", i=range({n - 1}))
    output: "all.out"
    shell: "touch {{output}}"

rule part:
    output: "p{{i}}"
    wildcard_constraints: i=r"[0-9]+"
    shell: "touch {{output}}"
''',
    }[shape]
    with open(path, "w") as f:
        f.write(text)


def prepare(workdir: str, shape: str, n: int) -> str:
    """A directory holding the four equivalent files (written once, reused)."""
    d = os.path.join(workdir, f"{shape}-{n}")
    marker = os.path.join(d, ".complete")
    if os.path.exists(marker):
        return d
    os.makedirs(d, exist_ok=True)
    write_vinefile(os.path.join(d, "Vinefile"), shape, n)
    write_makefile(os.path.join(d, "Makefile"), shape, n)
    write_ninja(os.path.join(d, "build.ninja"), shape, n)
    write_snakefile(os.path.join(d, "Snakefile"), shape, n)
    for name in sources(shape):
        open(os.path.join(d, name), "w").close()
    open(marker, "w").close()
    return d


# --- running --------------------------------------------------------------------------------


def command(tool: str, finder: dict) -> list[str]:
    if tool == "vinemake":
        return [*peers.vinemake_command(), "--check", "Vinefile"]
    if tool == "make":
        return [finder["make"], "-n"]
    if tool == "ninja":
        return [finder["ninja"], "-n"]
    if tool == "snakemake":
        return [finder["snakemake"], "-n", "-c1", "--quiet", "all"]
    raise ValueError(tool)


_SPLIT = """\
import gc, json, os, sys, time
gc.disable()  # as the command line does while it reads a workflow
t0 = time.process_time()
from vinemake.language.evaluate import evaluate
from vinemake.core.graph import BuildGraph
from vinemake.language.parser import _lark
from vinemake.language.statements import Source
lark = _lark()
t1 = time.process_time()
text = open("Vinefile", encoding="utf-8").read()
statements = lark.parse(text)
t2 = time.process_time()
wf = evaluate(statements, Source("Vinefile", text), os.environ)
t3 = time.process_time()
BuildGraph.build(wf, ".")
t4 = time.process_time()
print(json.dumps({"import": t1 - t0, "lark": t2 - t1, "evaluate": t3 - t2, "graph": t4 - t3}))
"""


def split(d: str) -> dict[str, float]:
    """vinemake's CPU time by phase: imports and grammar, Lark's parse, evaluation, graph."""
    done = subprocess.run([sys.executable, "-c", _SPLIT], cwd=d, capture_output=True,
                          text=True, check=False)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def best(argv: list[str], d: str, repeat: int, timeout: float) -> peers.Measurement:
    runs = [peers.measure(argv, d, timeout=timeout) for _ in range(repeat)]
    ok = [r for r in runs if r.ok] or runs
    return min(ok, key=lambda r: r.wall_s)


def find_tools(tools: list[str]) -> dict[str, str]:
    found = {}
    for tool, finder in (("make", peers.find_make), ("ninja", peers.find_ninja),
                         ("snakemake", peers.find_snakemake)):
        if tool in tools:
            try:
                found[tool] = finder()
            except peers.PeerMissing as e:
                print(f"skipping {tool}: {e}", file=sys.stderr)
    return found


def row(shape, n, tool, m: peers.Measurement, make: peers.Measurement | None,
        note="") -> str:
    status = "" if m.ok else ("timed out" if m.returncode is None else f"exit {m.returncode}")
    rt = rc = rr = ""
    if make is not None and make.ok and m.ok:
        rt = f"{m.wall_s / make.wall_s:.2f}x"
        rc = f"{m.cpu_s / make.cpu_s:.2f}x" if make.cpu_s else ""
        rr = f"{m.peak_rss_mb / make.peak_rss_mb:.1f}x"
    return (f"{shape:7} {n:>9,} {tool:10} {m.wall_s:8.2f} {m.cpu_s:8.2f} {m.peak_rss_mb:8.0f} "
            f"{rt:>8} {rc:>8} {rr:>8}  {status}{note}")


def run(args) -> None:
    tools = args.tools.split(",")
    found = find_tools(tools)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}, best of {args.repeat}")
    print(f"{'shape':7} {'rules':>9} {'tool':10} {'wall s':>8} {'cpu s':>8} {'RSS MB':>8} "
          f"{'wall/make':>8} {'cpu/make':>8} {'rss/make':>8}")
    for n in args.sizes:
        for shape in args.shapes:
            d = prepare(args.workdir, shape, n)
            results: dict[str, peers.Measurement] = {}
            for tool in tools:
                if tool == "snakemake" and n > args.snakemake_max:
                    continue
                if tool != "vinemake" and tool not in found:
                    continue
                results[tool] = best(command(tool, found), d, args.repeat, args.timeout)
            make = results.get("make")
            for tool, m in results.items():
                note = ""
                if tool == "vinemake" and args.split:
                    phases = split(d)
                    if phases:
                        note = " (cpu: " + ", ".join(f"{k} {v:.2f}s" for k, v in phases.items())
                        note += ")"
                print(row(shape, n, tool, m, make, note), flush=True)


def profile(spec: str, workdir: str) -> None:
    import cProfile
    import pstats

    shape, size = spec.split(":")
    d = prepare(workdir, shape, parse_size(size))
    os.chdir(d)
    from vinemake.core.graph import BuildGraph
    from vinemake.language.parser import parse_file

    prof = cProfile.Profile()
    prof.enable()
    BuildGraph.build(parse_file("Vinefile"), ".")
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(20)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=lambda s: [parse_size(x) for x in s.split(",")],
                   default=list(QUICK_SIZES), help="rule counts, e.g. 10k,100k,1M")
    p.add_argument("--full", action="store_true", help="10k, 100k, 200k and 1M rules")
    p.add_argument("--shapes", type=lambda s: s.split(","), default=list(SHAPES))
    p.add_argument("--tools", default=",".join(TOOLS))
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    p.add_argument("--snakemake-max", type=int, default=20_000)
    p.add_argument("--no-split", dest="split", action="store_false",
                   help="skip the extra run that times vinemake's phases")
    p.add_argument("--workdir", default=os.path.join(peers.CACHE, "parse"))
    p.add_argument("--profile", metavar="SHAPE:SIZE", help="cProfile vinemake on one case")
    args = p.parse_args(argv)
    if args.full:
        args.sizes = list(FULL_SIZES)
    peers.byte_compile_vinemake()
    if args.profile:
        profile(args.profile, args.workdir)
    else:
        run(args)


if __name__ == "__main__":
    main()
