"""Where the cores go idle during a run: the scheduler's events of one command, classed.

    python bench/idle.py DIR -- make -j2 all          # run the command in DIR under perf
    python bench/idle.py DIR -- python -m vinemake

Records the kernel's scheduler tracepoints on every CPU around one run of the command
(`perf record`, which needs root or a low perf_event_paranoid) and prints, over the run:
- each CPU's time busy, and idle while another CPU had one of the run's tasks *waiting* in its
  run queue (the scheduler left it there), while the others each ran one task, or all idle;
- the idle gaps by length;
- a command's exit (a `sh` of the run ending) to the run's next spawn: how long a freed core
  waits for the runner to start the next command.
The run's tasks are the command's process and everything it started (threads included).
docs/performance.md ("Dispatch", the worker's fourth round) has what it showed.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import os
import re
import subprocess
import sys
import tempfile

EVENTS = ("sched:sched_switch", "sched:sched_wakeup", "sched:sched_wakeup_new",
          "sched:sched_migrate_task")
LINE = re.compile(r"^\s*(.+?)\s+(-?\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)$")
FIELD = re.compile(r"(\w+)=(\S+)")
GAPS_US = (0, 50, 200, 1000, 5000, float("inf"))


def record(root: str, argv: list[str], data: str) -> None:
    events = [arg for ev in EVENTS for arg in ("-e", ev)]
    subprocess.run(["perf", "record", "-q", "-m", "1024", *events, "-a", "-o", data, "--",
                    *argv], cwd=root, check=True, stdout=subprocess.DEVNULL)


def parse(data: str) -> list[tuple]:
    """(cpu, time, event, tid running, its comm, fields) of every event, in time order."""
    text = subprocess.run(["perf", "script", "-i", data, "-F",
                           "comm,pid,tid,cpu,time,event,trace"], capture_output=True,
                          text=True, check=True).stdout
    out = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            comm, _, tid, cpu, t, event, rest = m.groups()
            out.append((int(cpu), float(t), event, int(tid), comm, dict(FIELD.findall(rest))))
    return out


def the_runs_tasks(events: list[tuple]) -> tuple[set[int], set[int], dict[int, int]]:
    """The run's tasks (perf's child and all it started), its `sh` commands, and which
    thread spawned each command."""
    ours = {int(f["next_pid"]) if "next_pid" in f else int(f["pid"])
            for *_, f in events if "perf-exec" in (f.get("next_comm"), f.get("comm"))}
    parent = {}
    for _, _, event, tid, _, f in events:
        if event == "sched:sched_wakeup_new" and tid in ours:
            ours.add(int(f["pid"]))
            parent[int(f["pid"])] = tid
    shells = ({tid for _, _, _, tid, comm, _ in events if comm == "sh"}
              | {int(f["prev_pid"]) for _, _, event, _, _, f in events
                 if event == "sched:sched_switch" and f["prev_comm"] == "sh"}) & ours
    return ours, shells, {c: p for c, p in parent.items() if c in shells}


def classify(events: list[tuple], ours: set[int], cpus: list[int]):
    """Seconds of CPU time by class, and the idle gaps' lengths."""
    queued = {c: set() for c in cpus}  # the run's runnable tasks on each CPU, running included
    running = dict.fromkeys(cpus, 0)
    idle_since: dict[int, float] = {}
    spent: collections.Counter = collections.Counter()
    gaps = []
    last = None
    for cpu, t, event, _, _, f in events:
        if last is not None:
            for c in cpus:
                spent[_state(c, cpus, running, queued, ours)] += t - last
        last = t
        if event == "sched:sched_switch":
            prev, nxt = int(f["prev_pid"]), int(f["next_pid"])
            if not f["prev_state"].startswith("R"):
                queued[cpu].discard(prev)
            if prev == 0 and cpu in idle_since:
                gaps.append(t - idle_since.pop(cpu))
            if nxt == 0:
                idle_since[cpu] = t
            elif nxt in ours:
                queued[cpu].add(nxt)
            running[cpu] = nxt
        elif event in ("sched:sched_wakeup", "sched:sched_wakeup_new"):
            pid = int(f["pid"])
            if pid in ours:
                for q in queued.values():
                    q.discard(pid)
                queued[int(f["target_cpu"])].add(pid)
        elif event == "sched:sched_migrate_task":
            pid, src = int(f["pid"]), int(f["orig_cpu"])
            if pid in queued[src] and running[src] != pid:
                queued[src].discard(pid)
                queued[int(f["dest_cpu"])].add(pid)
    return spent, gaps


def _state(c: int, cpus, running, queued, ours) -> str:
    if running[c]:
        return "busy"
    others = [o for o in cpus if o != c]
    if any(len(queued[o] - {running[o]}) for o in others):
        return "idle, a task of the run waiting on another CPU"
    if all(running[o] == 0 for o in others):
        return "idle, all CPUs idle"
    return "idle, the other CPUs running one task each"


def exit_to_spawn(events: list[tuple], shells: set[int], spawned_by: dict[int, int]):
    """For each command's exit, the time until the run's next spawn of a command."""
    spawners = set(spawned_by.values())
    exits = [t for _, t, event, _, _, f in events if event == "sched:sched_switch"
             and f["prev_state"] == "Z" and int(f["prev_pid"]) in shells]
    spawns = [t for _, t, event, tid, _, f in events if event == "sched:sched_wakeup_new"
              and tid in spawners and int(f["pid"]) in shells]
    waits = []
    for t in exits:
        i = bisect.bisect_left(spawns, t)
        if i < len(spawns):
            waits.append(spawns[i] - t)
    return sorted(waits)


def report(events: list[tuple]) -> None:
    cpus = sorted({cpu for cpu, *_ in events})
    ours, shells, spawned_by = the_runs_tasks(events)
    spent, gaps = classify(events, ours, cpus)
    total = sum(spent.values())
    print(f"{len(cpus)} CPUs, {total / len(cpus):.2f} s traced, {len(shells)} commands")
    for what, s in spent.most_common():
        print(f"  {what:50s} {s:7.3f} s  {100 * s / total:5.1f}%")
    print("idle gaps:")
    for lo, hi in itertools.pairwise(GAPS_US):
        some = [g for g in gaps if lo <= g * 1e6 < hi]
        print(f"  {lo:5.0f}-{hi:<5.0f} us {len(some):7d}  {sum(some):.3f} s")
    waits = exit_to_spawn(events, shells, spawned_by)
    if waits:
        n = len(waits)
        print(f"a command's exit to the next spawn: mean {1e6 * sum(waits) / n:.0f} us, "
              f"median {1e6 * waits[n // 2]:.0f} us, p90 {1e6 * waits[9 * n // 10]:.0f} us")


def main() -> None:
    if "--" not in sys.argv[2:] or len(sys.argv) < 4:
        sys.exit(__doc__)
    root, argv = sys.argv[1], sys.argv[sys.argv.index("--") + 1:]
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        record(root, argv, data)
        report(parse(data))


if __name__ == "__main__":
    main()
