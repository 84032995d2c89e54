"""Start-up benchmark: the wall time of a one-rule build, first and rebuilt, trees taking turns.

    python bench/startup.py --trees /tmp/base-72176bb,. --repeat 15 --workdir /dev/shm/s
    python bench/startup.py --trees . --python /usr/bin/python3 --repeat 20

Each tree (a directory holding a `vinemake` package: a checkout or a `git archive` of one)
is put first on PYTHONPATH and its modules byte-compiled, as an installed copy has them. A
round runs every tree once per case, in turn: "first" a build with no state (`.vinemake`
and the output removed), "rebuild" the same workflow after its input changed (one rule to
run again, its manager and worker started anew). The Vinefile is `out: in` / `cat in > out`.
Prints each tree's median, least and largest wall time per case, in ms.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import time

CASES = ("first", "rebuild")


def prepare(workdir: str, n: int) -> str:
    root = os.path.join(workdir, f"tree{n}")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    with open(os.path.join(root, "Vinefile"), "w") as f:
        f.write("out: in\n\tcat in > out\n")
    return root


def one_build(python: str, tree: str, root: str, case: str, round_: int) -> float:
    if case == "first":
        shutil.rmtree(os.path.join(root, ".vinemake"), ignore_errors=True)
        if os.path.exists(os.path.join(root, "out")):
            os.remove(os.path.join(root, "out"))
    with open(os.path.join(root, "in"), "w") as f:
        f.write(f"{case} {round_}\n")
    env = {**os.environ, "PYTHONPATH": tree}
    start = time.perf_counter()
    done = subprocess.run([python, "-m", "vinemake"], cwd=root, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{tree}: vinemake failed ({done.returncode}):\n{done.stderr}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", default=".", help="comma-separated source trees")
    ap.add_argument("--python", default=sys.executable, help="the interpreter to run")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--workdir", default="/dev/shm/vinemake-startup")
    args = ap.parse_args()
    trees = [os.path.abspath(t) for t in args.trees.split(",")]
    for tree in trees:
        compileall.compile_dir(os.path.join(tree, "vinemake"), quiet=1)
    roots = [prepare(args.workdir, n) for n in range(len(trees))]
    for tree, root in zip(trees, roots, strict=True):  # warm: caches, the first compile
        one_build(args.python, tree, root, "first", 0)
    walls = {(tree, case): [] for tree in trees for case in CASES}
    for case in CASES:
        for round_ in range(1, args.repeat + 1):
            for tree, root in zip(trees, roots, strict=True):
                walls[tree, case].append(one_build(args.python, tree, root, case, round_))
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"{args.python}, {args.repeat} rounds, load now {' '.join(load)}")
    for case in CASES:
        for tree in trees:
            ms = sorted(1000 * w for w in walls[tree, case])
            print(f"  {case:8} {tree}: median {statistics.median(ms):.0f} ms "
                  f"(least {ms[0]:.0f}, largest {ms[-1]:.0f})")
    shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
