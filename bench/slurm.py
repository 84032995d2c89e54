"""Many short rules on the test SLURM: vinemake -T slurm beside Snakemake's and Makeflow's.

    python3 bench/slurm.py [--rules 200] [--seconds 1] [--tools vinemake,snakemake,makeflow]

Needs a running SLURM (tests/cluster/slurm-up.sh; `SLURM_UP_CPUS=16` advertises more CPUs
than cores so that sleeping rules can overlap). Each tool runs the same N independent rules
of `sleep S`; the script reports wall time and how often each tool called the scheduler,
counted by putting wrappers for sbatch/squeue/sacct/scontrol/scancel first on PATH that log
the call and then run the real command. Peers: Snakemake with snakemake-executor-plugin-slurm
(`--snakemake PATH` to its executable, e.g. in a venv) and `makeflow` from coop-computing-tools.
A peer that is missing is reported as such, never silently skipped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

COUNTED = ("sbatch", "squeue", "sacct", "scontrol", "scancel", "srun", "sinfo")
SHOWN = ("sbatch", "squeue", "sacct", "scontrol", "scancel")


@dataclass(frozen=True)
class Outcome:
    tool: str
    wall_s: float | None
    calls: dict[str, int]
    note: str = ""


def wrap_commands(bin_dir: Path, log: Path) -> None:
    """One wrapper per scheduler command: append its name and arguments to `log`, then exec."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in COUNTED:
        real = shutil.which(name)
        if real is None:
            continue
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\nexec {real} "$@"\n')
        wrapper.chmod(0o755)


def count_calls(log: Path) -> dict[str, int]:
    counts = dict.fromkeys(COUNTED, 0)
    if log.exists():
        for line in log.read_text().splitlines():
            name = line.split(" ", 1)[0]
            if name in counts:
                counts[name] += 1
    return counts


def vinefile(n: int, seconds: float) -> str:
    return "".join(f"out.{i}:\n\tsleep {seconds:g}; echo {i} > out.{i}\n" for i in range(n))


def snakefile(n: int, seconds: float) -> str:
    return (f"rule all:\n    input: expand('out.{{i}}', i=range({n}))\n\n"
            f"rule one:\n    output: 'out.{{i}}'\n"
            f"    shell: 'sleep {seconds:g}; echo {{wildcards.i}} > {{output}}'\n")


def makeflow_file(n: int, seconds: float) -> str:
    return "".join(f"out.{i}:\n\tsleep {seconds:g}; echo {i} > out.{i}\n" for i in range(n))


def run_tool(tool: str, argv: list[str], workdir: Path, env: dict, log: Path, n: int,
             timeout_s: float) -> Outcome:
    start = time.monotonic()
    try:
        done = subprocess.run(argv, cwd=workdir, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return Outcome(tool, None, count_calls(log), f"did not finish in {timeout_s:g} s")
    wall = time.monotonic() - start
    made = sum(1 for i in range(n) if (workdir / f"out.{i}").exists())
    if done.returncode != 0 or made != n:
        tail = " | ".join(done.stdout.strip().splitlines()[-3:])
        return Outcome(tool, wall, count_calls(log),
                       f"exit {done.returncode}, {made}/{n} outputs: {tail}")
    return Outcome(tool, wall, count_calls(log))


def job_ids() -> set[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
    return set(out.split())


def cancel_leftovers(before: set[str]) -> None:
    """Jobs a tool left behind would slow the next one: cancel what appeared during its run.

    (Snakemake refuses a --comment, so jobs cannot be tagged: run the benchmark on a cluster
    nobody else is using at the same time.)
    """
    left = sorted(job_ids() - before)
    if left:
        print(f"  cancelling {len(left)} jobs left behind", flush=True)
        subprocess.run(["scancel", *left], check=False)
    end = time.monotonic() + 60
    while time.monotonic() < end and job_ids() - before:
        time.sleep(0.5)


def commands(tool: str, n: int, seconds: float, tag: str, args) -> tuple[list[str], str, str]:
    """(argv, workflow file name, workflow text) for one tool, or raise LookupError."""
    if tool == "vinemake":
        return ([sys.executable, "-m", "vinemake", "-T", "slurm", "--manager-host", "127.0.0.1",
                 "--worker-timeout", "10", "--max-workers", str(args.jobs),
                 "--batch-options", f"--comment={tag} --mem=1000M"],
                "Vinefile", vinefile(n, seconds))
    if tool in ("snakemake", "snakemake-array"):
        exe = args.snakemake or shutil.which("snakemake")
        if not exe:
            raise LookupError("snakemake not found (pip install snakemake "
                              "snakemake-executor-plugin-slurm; or --snakemake PATH)")
        # The test cluster has no accounting database, so sacct (the plugin's default status
        # command) cannot work: squeue is the plugin's own documented alternative.
        array = ["--slurm-array-jobs=all"] if tool == "snakemake-array" else []
        return ([exe, "--executor", "slurm", "--jobs", str(args.jobs), "--latency-wait", "5",
                 "--slurm-status-command", "squeue", *array,
                 "--default-resources", "mem_mb=1000", "slurm_partition=debug", "--quiet"],
                "Snakefile", snakefile(n, seconds))
    if tool == "makeflow":
        exe = shutil.which("makeflow")
        if not exe:
            raise LookupError("makeflow not found (apt-get install --no-install-recommends "
                              "coop-computing-tools openmpi-bin)")
        return ([exe, "-T", "slurm", "-J", str(args.jobs), "-B", f"--comment={tag} --mem=1000M",
                 "Makeflow"], "Makeflow", makeflow_file(n, seconds))
    raise LookupError(f"unknown tool {tool!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--jobs", type=int, default=100, help="max concurrent jobs/workers")
    parser.add_argument("--tools", default="vinemake,snakemake,snakemake-array,makeflow")
    parser.add_argument("--snakemake", help="path of the snakemake executable")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()

    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    if "is UP" not in ping.stdout:
        print("no SLURM answers: start one with tests/cluster/slurm-up.sh", file=sys.stderr)
        return 2
    cpus = subprocess.run(["sinfo", "-h", "-o", "%C"], capture_output=True, text=True).stdout
    print(f"{args.rules} rules of sleep {args.seconds:g}; SLURM CPUs (A/I/O/T) {cpus.strip()}")

    outcomes = []
    for tool in args.tools.split(","):
        tag = f"bench-{tool}-{os.getpid()}"
        root = Path(tempfile.mkdtemp(prefix=f"bench-slurm-{tool}-"))
        log, workdir = root / "calls.log", root / "work"
        workdir.mkdir()
        wrap_commands(root / "bin", log)
        env = {**os.environ, "PATH": f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}"}
        try:
            argv, name, text = commands(tool, args.rules, args.seconds, tag, args)
        except LookupError as missing:
            outcomes.append(Outcome(tool, None, {}, f"not run: {missing}"))
            continue
        (workdir / name).write_text(text)
        print(f"running {tool} ...", flush=True)
        before = job_ids()
        outcomes.append(run_tool(tool, argv, workdir, env, log, args.rules, args.timeout))
        cancel_leftovers(before)
        shutil.rmtree(root, ignore_errors=True)
    report(outcomes, args.rules)
    return 0


def report(outcomes: list[Outcome], n: int) -> None:
    base = next((o.wall_s for o in outcomes if o.tool == "vinemake" and not o.note), None)
    head = f"{'tool':<16} {'wall s':>7} {'×vm':>5} " + " ".join(f"{c:>8}" for c in SHOWN)
    print(head + f" {'all calls/10 rules':>19}")
    for o in outcomes:
        if o.wall_s is None and not o.calls:
            print(f"{o.tool:<16} {o.note}")
            continue
        wall = f"{o.wall_s:7.1f}" if o.wall_s is not None else "      -"
        ratio = f"{o.wall_s / base:5.2f}" if base and o.wall_s else "    -"
        sched = sum(o.calls.get(c, 0) for c in COUNTED)
        print(f"{o.tool:<16} {wall} {ratio} " + " ".join(f"{o.calls.get(c, 0):>8}"
                                                         for c in SHOWN)
              + f" {sched * 10 / n:>19.2f}" + (f"  ({o.note})" if o.note else ""))


if __name__ == "__main__":
    sys.exit(main())
