"""vinemake's own threads: the CPU each spends per task in a first build of null rules.

    python bench/threads.py 4000                          # 4k null rules, 5 runs
    python bench/threads.py 4000 --baseline DIR --repeat 5  # and vinemake from DIR (a git
                                                          # archive of an older commit), in turn
    python bench/threads.py 4000 --workdir /dev/shm/dt    # on tmpfs, away from the disk's noise

Each run is a first build (`-T local`, its worker forked from vinemake) of N rules `out.I:`
with `: > out.I`. A wrapper around vinemake's command line writes, as the process leaves, the
CPU of each of its threads (`time.thread_time()` as the thread ends): the engine's (the main
thread, parsing and planning included) and the manager's loop, per task; medians are printed
per tree. Files go under --workdir, never the repository.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

# Runs vinemake's CLI and writes "thread-name seconds" lines to $VINEMAKE_BENCH_THREADS as the
# process leaves (os._exit, or the end of main in a tree without it).
WRAPPER = """
import os, threading, time
cpu, _parent, _exit = {}, os.getpid(), os._exit
_run = threading.Thread.run
def run(self):
    try:
        _run(self)
    finally:
        cpu[self.name] = cpu.get(self.name, 0.0) + time.thread_time()
threading.Thread.run = run
def note():
    if os.getpid() == _parent:
        cpu["engine"] = time.thread_time()
        with open(os.environ["VINEMAKE_BENCH_THREADS"], "w") as f:
            f.writelines(f"{name} {s}\\n" for name, s in cpu.items())
def leave(code):
    note()
    _exit(code)
os._exit = leave
from vinemake.face.cli import main
try:
    main()
finally:
    note()
"""


def one_run(root: str, rules: int, tree: str | None) -> dict[str, float]:
    """A first build of `rules` null rules in a fresh `root`: µs per task by thread."""
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    with open(os.path.join(root, "Vinefile"), "w") as f:
        f.writelines(f"out.{i}:\n\t: > out.{i}\n\n" for i in range(rules))
    out = os.path.join(root, ".threads")
    env = dict(os.environ, VINEMAKE_BENCH_THREADS=out)
    if tree:
        env["PYTHONPATH"] = tree
    subprocess.run([sys.executable, "-c", WRAPPER], cwd=root, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        seconds = {name: float(s) for name, s in (line.split() for line in f)}
    shutil.rmtree(root, ignore_errors=True)
    return {name: s * 1e6 / rules for name, s in seconds.items() if name in ("engine", "manager")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rules", type=int, nargs="?", default=4000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--baseline", metavar="DIR", help="vinemake's sources to compare, in turn")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "vinemake-threads"))
    args = ap.parse_args()
    trees = {"vinemake": None} if not args.baseline else {"baseline": args.baseline,
                                                           "vinemake": None}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    print(f"# {args.rules} null rules, load average {os.getloadavg()[0]:.1f}")
    for _ in range(args.repeat):
        for name, tree in trees.items():
            got = one_run(os.path.join(args.workdir, name), args.rules, tree)
            runs[name].append(got)
            print(f"  {name:<9} " + "  ".join(f"{k} {v:5.0f} us" for k, v in got.items()),
                  flush=True)
    for name, got in runs.items():
        medians = {k: statistics.median(r[k] for r in got) for k in got[0]}
        print(f"{name:<9} medians of {len(got)}: "
              + "  ".join(f"{k} {v:.0f} us a task" for k, v in medians.items()))
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
