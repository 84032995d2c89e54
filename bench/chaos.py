"""The chaos benchmark: real vinemake runs against faults, hostile peers and bad input (issue 15).

    python3 bench/chaos.py                    # every family, full trial counts (about 15 min)
    python3 bench/chaos.py --quick            # every family, a few trials each (a few minutes)
    python3 bench/chaos.py --only R1,R4 --trials 20 --seed 7
    python3 bench/chaos.py --keep             # keep failed trials' directories for a post-mortem

Each family prints one line: trials, correct outcomes, and failures by kind (wrong output or
status, half-written target, traceback, hang, data outside the workflow touched), then one note
per failure. Everything runs on this machine, over 127.0.0.1, as real processes; R8's full disk
mounts a small tmpfs (root) and unmounts it in any case. Nothing runs unless asked: trials are
bounded in count (--trials) and each family in time (--time-limit), each trial by a deadline
past which it counts as a hang. docs/reliability.md holds the last full run's figures.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chaosfamilies as f  # noqa: E402
from chaoskit import run_family  # noqa: E402

# family: (title, scenario, full trials, quick trials, per-trial deadline in seconds)
FAMILIES = {
    "R1": ("kill -9 of vinemake, rerun", f.r1_kill_vinemake, 40, 4, 90),
    "R2": ("kill -9 / SIGSTOP of workers", f.r2_workers(), 12, 2, 90),
    "R3": ("mutated Vinefiles and JX", f.r3_mutated, 300, 20, 60),
    "R4": ("failing and over-limit rules", f.r4_resources(), 36, 6, 60),
    "R5": ("clean modes vs edits, stores", f.r5_clean(), 30, 5, 60),
    "R6": ("hostile peers vs a manager", f.r6_hostile(), 30, 5, 90),
    "R7": ("sandbox escapes", f.r7_escape(), 28, 7, 60),
    "R8": ("concurrent, deleted state, full", f.r8_state(), 24, 4, 90),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few trials per family")
    ap.add_argument("--trials", type=int, help="trials per family (over the defaults)")
    ap.add_argument("--only", help="comma-separated families, e.g. R1,R6")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--time-limit", type=float, default=900.0,
                    help="seconds after which a family starts no more trials (default 900)")
    ap.add_argument("--verbose", action="store_true", help="a note for every trial")
    ap.add_argument("--keep", action="store_true", help="keep failed trials' directories")
    args = ap.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(FAMILIES)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, cwd=Path(__file__).parent).stdout.strip()
    print(f"chaos: seed {args.seed}, commit {head or '?'}", flush=True)
    failed = 0
    for name in chosen:
        title, scenario, full, quick, deadline = FAMILIES[name]
        trials = args.trials or (quick if args.quick else full)
        start = time.monotonic()
        tally = run_family(name, title, scenario, trials, args.seed, deadline, args.time_limit,
                           keep=args.keep, verbose=args.verbose)
        print(f"{tally.line()}  ({time.monotonic() - start:.0f} s)", flush=True)
        for note in tally.notes:
            print(f"    {note}", flush=True)
        failed += tally.failed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
