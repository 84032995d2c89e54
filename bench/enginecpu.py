"""The engine thread's own CPU per null task: a real first build with the manager replaced.

    python bench/enginecpu.py 10000                  # µs per task on the engine's thread
    python bench/enginecpu.py 10000 --repeat 5       # medians of five fresh builds
    python bench/enginecpu.py 10000 --profile        # and a cProfile of the last one

vinemake's command line runs as ever (parse, keys, journal, plan, engine, record, reporter,
summary) on a Vinefile of null rules (`out.N:` with `: > out.N`), but the manager is an
executor on the engine's own thread that makes each output itself, as the worker would (an
empty file in place), and hands back results in batches as the manager does. The time it
spends making outputs is taken out, so what is printed is the engine's side alone: from its
loop's start to its end, and the whole command, each divided by the rules. Without a worker,
a manager thread and the machine's other load in the way it repeats to a few percent.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time

BATCH = 11  # results per wake-up: what the engine's thread saw in a real 4k run


class SyncExecutor:
    """The manager's part played on the engine's thread: outputs made at once, results in
    batches of BATCH. `spent` is the thread CPU it took (taken out of the engine's)."""

    def __init__(self):
        from vinemake.common.hashing import hash_tree
        from vinemake.common.spec import Resources

        self.pending = []
        self.spent = 0.0
        self.largest = Resources(cores=2, memory_mb=4096, disk_mb=100000)
        self._hash = hash_tree

    def submit(self, task):
        self.pending.append(task)

    def wait(self, timeout=None):
        from vinemake.common.task import Measured, TaskResult

        t0 = time.thread_time()
        batch, self.pending = self.pending[:BATCH], self.pending[BATCH:]
        results = []
        for task in batch:
            outputs = []
            for f in task.outputs:
                os.close(os.open(f.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
                outputs.append((f.key, 0, self._hash(f.path)[1]))
            results.append(TaskResult(task.id, "ok", 0, measured=Measured(wall_time_s=0.001),
                                      worker="w1", outputs=tuple(outputs)))
        self.spent += time.thread_time() - t0
        return results

    def cancel_all(self):
        self.pending = []

    def withdraw(self):
        self.pending = []

    def forget(self, keys):
        pass

    def largest_worker(self):
        return self.largest

    def content_hashes(self):
        return {}

    def close(self):
        pass


def build(root: str, n: int) -> tuple[float, float, float]:
    """One first build of `n` null rules in `root`: CPU µs per task of the engine's loop,
    of the whole command, and wall µs per task of the whole command."""
    import vinemake.face.run as run
    from vinemake.core.engine import Engine
    from vinemake.face.cli import command

    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    with open(os.path.join(root, "Vinefile"), "w") as f:
        f.writelines(f"out.{i}:\n\t: > out.{i}\n\n" for i in range(n))
    executor = SyncExecutor()
    run._start_manager = lambda options, root, events: executor
    loop = [0.0]
    engine_run = Engine.run

    def timed(self):
        t0 = time.thread_time()
        try:
            return engine_run(self)
        finally:
            loop[0] += time.thread_time() - t0

    Engine.run = timed
    here, err = os.getcwd(), sys.stderr
    os.chdir(root)
    sys.stderr = open(os.devnull, "w")
    try:
        t0, w0 = time.thread_time(), time.perf_counter()
        try:
            command.main([], standalone_mode=False)
        finally:
            total, wall = time.thread_time() - t0, time.perf_counter() - w0
    finally:
        sys.stderr.close()
        sys.stderr = err
        os.chdir(here)
        Engine.run = engine_run
    made = sum(1 for name in os.listdir(root) if name.startswith("out."))
    if made != n:
        raise SystemExit(f"only {made} of {n} outputs made")
    spent = executor.spent
    return ((loop[0] - spent) * 1e6 / n, (total - spent) * 1e6 / n, wall * 1e6 / n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rules", type=int, nargs="?", default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "vinemake-engine"))
    args = ap.parse_args()
    root = os.path.join(args.workdir, f"null{args.rules}")
    rows = [build(root, args.rules) for _ in range(args.repeat)]
    for loop, total, wall in rows:
        print(f"  engine loop {loop:6.1f} µs/task   command {total:6.1f} µs/task   "
              f"wall {wall:6.1f} µs/task")
    print(f"median: engine loop {statistics.median(r[0] for r in rows):.1f} µs/task, "
          f"command {statistics.median(r[1] for r in rows):.1f} µs/task "
          f"({args.rules} null rules, {sys.executable}, load {os.getloadavg()[0]:.2f})")
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(build, root, args.rules)
        pstats.Stats(prof).sort_stats("tottime").print_stats(45)


if __name__ == "__main__":
    main()
