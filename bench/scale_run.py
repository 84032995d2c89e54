"""`bench/scale.py --run N`: N null rules run end to end, killed with SIGKILL halfway, run again.

    python bench/scale.py --run 1M              # ~1M null rules, one directory of outputs
    python bench/scale.py --run 100k --kill-at 0.5 --window 10000
    python bench/scale.py --run-memory 30k      # bytes held per rule run and per record
                                                # replayed, in process (tracemalloc)

The workflow is N rules `t.<i>: ; : > t.<i>` (no inputs, one empty output each: every rule is
ready at once, the widest a workflow gets). A fresh directory is run by `vinemake` with its
embedded manager and local worker; the benchmark samples the vinemake process's RSS (VmRSS,
every 0.5 s) and the sizes under `.vinemake/` (journal, runs/, the store) as it goes. When the
terminal lines say `--kill-at` of the rules are done, it sends SIGKILL to the vinemake process
only (as the OOM killer or Ctrl-\\ would), and waits for the local worker to notice its manager
is gone and leave. Then it runs vinemake again to the end, and counts from the two runs'
records (.vinemake/runs/*/events.jsonl, read a line at a time): rules the killed run had
started on the worker and not seen end (running at the kill), and submitted but not started;
rules the rerun ran, and of those how many the killed run had started (redone). Peak RSS is
also taken from wait4's ru_maxrss.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import orjson
import peers

__all__ = ["run_end_to_end", "held_per_rule"]

SAMPLE_S = 0.5
SIZES_S = 10.0  # sizes under .vinemake/ (the store's walk is the dear one: at the end only)


@dataclass
class Phase:
    """What one vinemake process did: wall, peak RSS (sampled and wait4's), sizes over time."""

    name: str
    wall_s: float = 0.0
    rss_peak_mb: float = 0.0
    maxrss_mb: float = 0.0
    exit: int | None = None
    samples: list[tuple[float, float, int, int]] = field(default_factory=list)  # t, MB, j, runs


def prepare(workdir: str, n: int, rules: int | None = None) -> str:
    """A fresh directory whose Vinefile holds the first `rules` (all n by default) of n."""
    d = os.path.join(workdir, f"null-{n}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    _write(d, n if rules is None else rules)
    return d


def _write(d: str, n: int) -> None:
    with open(os.path.join(d, "Vinefile"), "w") as f:
        for start in range(0, n, 10_000):
            f.write("".join(f"t.{i}:\n\t: > t.{i}\n" for i in range(start, min(n, start + 10_000))))


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, IndexError, ValueError):
        return 0.0


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _tree_size(path: str) -> tuple[int, int]:
    """(bytes, files) under `path`."""
    total = files = 0
    for where, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(where, name)).st_size
                files += 1
            except OSError:
                pass
    return total, files


def _runs_size(state: str) -> int:
    runs = os.path.join(state, "runs")
    try:
        return sum(_size(os.path.join(runs, r, "events.jsonl")) for r in os.listdir(runs))
    except OSError:
        return 0


class _Done:
    """Counts the `done` lines vinemake has written to its terminal file so far."""

    def __init__(self, path: str):
        self.path, self.offset, self.count, self.rest = path, 0, 0, b""

    def read(self) -> int:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        data = self.rest + data
        cut = data.rfind(b"\n") + 1
        self.count += data[:cut].count(b" done ")
        self.rest = data[cut:]
        return self.count


def _vinemake(d: str, phase: Phase, window: int | None, kill_at: int | None) -> None:
    """Run vinemake in `d` to its end, or SIGKILL it once `kill_at` rules are done."""
    env = dict(os.environ)
    if window:
        env["VINEMAKE_SUBMIT_WINDOW"] = str(window)
    term = os.path.join(d, f"terminal-{phase.name}.log")
    state = os.path.join(d, ".vinemake")
    start = time.monotonic()
    with open(term, "wb") as out:
        proc = subprocess.Popen([*peers.vinemake_command(), "Vinefile"], cwd=d, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    done = _Done(term)
    usage: list = []
    waiter = threading.Thread(target=lambda: usage.append(os.wait4(proc.pid, 0)))
    waiter.start()
    next_sizes = 0.0
    workers: list[int] = []
    while waiter.is_alive():
        now = time.monotonic() - start
        phase.rss_peak_mb = max(phase.rss_peak_mb, _rss_mb(proc.pid))
        if now >= next_sizes:
            next_sizes = now + SIZES_S
            phase.samples.append((now, phase.rss_peak_mb, _size(os.path.join(state, "journal")),
                                  _runs_size(state)))
            print(f"  {phase.name} {now:7.0f} s  {done.read():>9,} done  RSS "
                  f"{_rss_mb(proc.pid):6.0f} MB (peak {phase.rss_peak_mb:.0f})  journal "
                  f"{phase.samples[-1][2] / 2**20:6.0f} MB  runs/ "
                  f"{phase.samples[-1][3] / 2**20:6.0f} MB  load {os.getloadavg()[0]:.1f}",
                  flush=True)
        if kill_at is not None and done.read() >= kill_at:
            workers = _children(proc.pid)
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(SAMPLE_S)
    waiter.join()
    phase.wall_s = time.monotonic() - start
    _, status, ru = usage[0]
    phase.exit = os.waitstatus_to_exitcode(status)
    phase.maxrss_mb = ru.ru_maxrss / 1024
    phase.samples.append((phase.wall_s, phase.rss_peak_mb, _size(os.path.join(state, "journal")),
                          _runs_size(state)))
    if workers:
        t0 = time.monotonic()
        while any(os.path.exists(f"/proc/{w}") and _alive(w) for w in workers):
            if time.monotonic() - t0 > 120:
                print(f"  ! the local worker {workers} is still running 120 s after the kill")
                break
            time.sleep(0.05)
        else:
            print(f"  the local worker left {time.monotonic() - t0:.2f} s after the kill")


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _record(d: str, run_id: str) -> dict[str, set[int]]:
    """Rule ids by kind of event (submit, start, end ok, restore, plan skip), a line at a
    time."""
    got: dict[str, set[int]] = {"submit": set(), "start": set(), "ok": set(), "restore": set(),
                                "skip": set()}
    with open(os.path.join(d, ".vinemake", "runs", run_id, "events.jsonl"), "rb") as f:
        for line in f:
            try:
                ev = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # the last line of the killed run, cut
            kind = ev.get("ev")
            if kind == "submit" or kind == "restore" or kind == "start":
                got[kind].add(ev["rule"])
            elif kind == "end" and ev.get("status") == "ok":
                got["ok"].add(ev["rule"])
            elif kind == "plan" and ev.get("action") == "skip":
                got["skip"].add(ev["rule"])
    return got


def run_end_to_end(n: int, workdir: str, kill_at: float, window: int | None) -> None:
    d = prepare(workdir, n)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {n:,} null rules in {d}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, "
          f"window {window or 'default'}, kill at {kill_at:.0%}", flush=True)
    phases = [Phase("killed"), Phase("rerun")]
    _vinemake(d, phases[0], window, int(n * kill_at) if kill_at else None)
    _vinemake(d, phases[1], window, None)
    state = os.path.join(d, ".vinemake")
    runs = sorted(os.listdir(os.path.join(state, "runs")))
    print(f"{'phase':8} {'exit':>5} {'wall s':>8} {'RSS peak MB':>12} {'maxrss MB':>10} "
          f"{'journal MB':>11} {'runs/ MB':>9}")
    for p in phases:
        _, _, journal, rec = p.samples[-1]
        print(f"{p.name:8} {p.exit!s:>5} {p.wall_s:8.1f} {p.rss_peak_mb:12.0f} "
              f"{p.maxrss_mb:10.0f} {journal / 2**20:11.1f} {rec / 2**20:9.1f}")
    if kill_at and len(runs) >= 2:
        killed, rerun = _record(d, runs[-2]), _record(d, runs[-1])
        in_flight = killed["submit"] - killed["ok"]
        running = killed["start"] - killed["ok"]
        ran = rerun["submit"]
        print(f"killed run: {len(killed['submit']):,} submitted, {len(killed['start']):,} "
              f"started, {len(killed['ok']):,} ended ok in its record: {len(running):,} running "
              f"and {len(in_flight - running):,} more submitted, not started, at the kill")
        print(f"rerun: ran {len(ran):,}, restored {len(rerun['restore']):,}, up to date "
              f"{len(rerun['skip']):,}; of those it ran, {len(ran & killed['start']):,} had "
              f"started before the kill ({len(ran & running):,} of them running at the kill, "
              f"{len(ran & killed['ok']):,} recorded as ended)")
    store, files = _tree_size(os.path.join(state, "cache"))
    print(f".vinemake at the end: journal {_size(os.path.join(state, 'journal')) / 2**20:.1f} MB, "
          f"runs/ {_runs_size(state) / 2**20:.1f} MB ({len(runs)} runs), store "
          f"{store / 2**20:.1f} MB in {files:,} files; load average {os.getloadavg()[0]:.1f}")
    sys.stdout.flush()


def held_per_rule(n: int, workdir: str, top: int = 10) -> None:
    """What a run holds (tracemalloc, in this interpreter; the local worker apart) when its
    engine starts and when its last rule has ended: n rules run in a fresh directory, then n
    rules of which the first half were run before by another vinemake (a rerun: n/2 records
    replayed, n/2 rules run). Per rule run: the growth from start to end over the rules run;
    per record replayed: what the rerun holds at its start more than the first run did."""
    import gc
    import tracemalloc

    from scale import _invoke

    from vinemake.core import engine as engine_module

    held: list = []
    run = engine_module.Engine.run

    def measured_run(self):
        summary = self.reporter.summary

        def then_summary(outcome):
            gc.collect()
            held.append((tracemalloc.get_traced_memory()[0], tracemalloc.take_snapshot()))
            return summary(outcome)

        self.reporter.summary = then_summary
        gc.collect()
        held.append((tracemalloc.get_traced_memory()[0], None))
        return run(self)

    engine_module.Engine.run = measured_run
    here = os.getcwd()
    start = {}
    for case in ("warm-up", "first run", "rerun"):
        d = prepare(workdir, n, 100 if case == "warm-up" else n // 2 if case == "rerun" else n)
        if case == "rerun":
            subprocess.run([*peers.vinemake_command(), "Vinefile"], cwd=d, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _write(d, n)
        os.chdir(d)
        out, err = sys.stdout, sys.stderr
        # The terminal lines are not measured (nor held, as a StringIO would).
        sys.stdout = sys.stderr = quiet = open(os.devnull, "w")
        tracemalloc.start()
        try:
            _invoke(["Vinefile"])
        finally:
            sys.stdout, sys.stderr = out, err
            quiet.close()
            tracemalloc.stop()
            os.chdir(here)
        (at_start, _), (at_end, snapshot) = held[-2:]
        if case == "warm-up":  # every module imported: what follows is the workflow's
            continue
        ran = n if case == "first run" else n - n // 2
        start[case] = at_start
        print(f"{case}, {n:,} rules, {ran:,} run: {at_start / 2**20:.1f} MB held when the "
              f"engine starts ({at_start / n:.0f} B a rule), {at_end / 2**20:.1f} MB at the "
              f"end: {(at_end - at_start) / ran:.0f} B a rule run")
        if case == "rerun":
            print(f"  a record replayed: {(at_start - start['first run']) / (n // 2):.0f} B "
                  f"held when the engine starts")
        for stat in snapshot.statistics("lineno")[:top]:
            print(f"  {stat.size / 2**20:7.2f} MB {stat.size / n:6.0f} B/rule  "
                  f"{stat.traceback[0]}")
    print(f"# load average {os.getloadavg()[0]:.1f}")
