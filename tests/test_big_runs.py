"""Runs wider than the submission window, through the real CLI, manager and worker: each rule
runs once with at most the window outstanding; a kill -9 halfway then a rerun redoes only what
was in flight; the journal and the runs' records stay bounded however often a workflow runs."""

import os
import signal
import subprocess
import sys
import time

import psutil

from vinemake.core.events import ENDS_BYTES, _beyond_keeping, read_events, runs
from vinemake.core.statedir import StateDir
from vinemake.face.history import history_text, run_line


def null_rules(root, n: int, source: str | None = None) -> None:
    reads = f" {source}" if source else ""
    (root / "Vinefile").write_text("".join(f"t.{i}:{reads}\n\t: > t.{i}\n" for i in range(n)))


def vinemake(root, *args, window: int | None = None, check=True):
    env = dict(os.environ)
    if window is not None:
        env["VINEMAKE_SUBMIT_WINDOW"] = str(window)
    proc = subprocess.run([sys.executable, "-m", "vinemake", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def record(root, run_id: str) -> list[dict]:
    return read_events(StateDir(str(root)).events(run_id))


def most_outstanding(events: list[dict]) -> int:
    """The most tasks submitted and not ended at any point of the record (its order is the
    engine's: both kinds are emitted on its thread)."""
    now = most = 0
    for ev in events:
        if ev["ev"] == "submit":
            now += 1
            most = max(most, now)
        elif ev["ev"] == "end":
            now -= 1
    return most


def rules_of(events: list[dict], kind: str, **fields) -> set[int]:
    return {e["rule"] for e in events
            if e["ev"] == kind and all(e.get(k) == v for k, v in fields.items())}


def test_a_wide_run_submits_a_window_at_a_time_and_runs_every_rule_once(tmp_path):
    null_rules(tmp_path, 300)
    proc = vinemake(tmp_path, "--cores", "1", window=16)
    assert proc.stderr.splitlines()[-1].startswith("vinemake: ran 300, restored 0, up to date 0")
    events = record(tmp_path, runs(tmp_path)[-1])
    submits = [e["rule"] for e in events if e["ev"] == "submit"]
    assert sorted(submits) == list(range(300))  # each rule once
    assert rules_of(events, "end", status="ok") == set(range(300))
    assert most_outstanding(events) == 16  # the first pass fills the window, no more
    assert all((tmp_path / f"t.{i}").exists() for i in range(300))


def test_a_window_that_is_not_a_count_is_refused_before_anything_runs(tmp_path):
    null_rules(tmp_path, 3)
    for given, why in (("0", "must be 1 or more"), ("many", "not a whole number")):
        proc = vinemake(tmp_path, window=given, check=False)
        assert (proc.returncode, proc.stderr) == (
            2, f"vinemake: VINEMAKE_SUBMIT_WINDOW={given}: {why}\n")
    assert not (tmp_path / ".vinemake").exists() and not (tmp_path / "t.0").exists()


def test_kill_9_halfway_then_a_rerun_redoes_only_the_rules_that_were_in_flight(tmp_path):
    n, window = 3000, 50
    null_rules(tmp_path, n)
    env = dict(os.environ, VINEMAKE_SUBMIT_WINDOW=str(window))
    proc = subprocess.Popen([sys.executable, "-m", "vinemake", "--cores", "1"], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = StateDir(str(tmp_path))
    deadline = time.monotonic() + 300  # a guard against a hang, not a measurement
    ended = 0
    while ended < n // 2:
        assert proc.poll() is None, "the run ended before it could be killed halfway"
        assert time.monotonic() < deadline, f"only {ended} rules ended in 300 s"
        recorded = runs(tmp_path)
        ended = len(rules_of(record(tmp_path, recorded[-1]), "end")) if recorded else 0
        time.sleep(0.05)
    workers = psutil.Process(proc.pid).children()
    proc.send_signal(signal.SIGKILL)  # as the OOM killer or Ctrl-\ would: vinemake alone
    proc.wait()
    # Its worker notices its manager is gone and leaves, killing what it ran.
    gone, alive = psutil.wait_procs(workers, timeout=60)
    assert not alive, f"workers still running after their manager was killed: {alive}"
    killed = record(tmp_path, runs(tmp_path)[-1])
    submitted = rules_of(killed, "submit")
    finished = rules_of(killed, "end", status="ok")
    in_flight = submitted - finished
    assert n // 2 <= len(finished) < n and len(in_flight) <= window
    assert "run_end" not in {e["ev"] for e in killed}

    again = vinemake(tmp_path, "--cores", "1", window=window)
    rerun = record(tmp_path, runs(tmp_path)[-1])
    redone = rules_of(rerun, "submit") & submitted
    assert redone <= in_flight  # nothing the record says had finished ran again
    brought = rules_of(rerun, "submit") | rules_of(rerun, "restore")
    # The rest are up to date: those the record saw end, and those that ended as the kill
    # came, their end not yet recorded (the journal is written first, never after).
    assert brought <= set(range(n)) - finished
    assert brought | rules_of(rerun, "plan", action="skip") == set(range(n))
    assert rules_of(rerun, "end", status="ok") == rules_of(rerun, "submit")
    assert again.stderr.splitlines()[-1].startswith(
        f"vinemake: ran {len(rules_of(rerun, 'submit'))}, ")
    assert all((tmp_path / f"t.{i}").exists() for i in range(n))
    # `vinemake history` reads only the ends of records this size, and says what a whole
    # read says: the killed run, and the rerun's counts.
    ids = runs(tmp_path)
    assert os.path.getsize(state.events(ids[0])) > 2 * ENDS_BYTES
    listed = vinemake(tmp_path, "history").stdout.splitlines()[1:]
    assert listed == history_text([run_line(i, record(tmp_path, i)) for i in ids]).splitlines()[1:]
    assert " killed " in listed[0] and " ok " in listed[1]
    # `vinemake log` parses only the lines of the rule it is asked about, in each record.
    again_ran, before = min(rules_of(rerun, "submit")), min(finished)
    assert vinemake(tmp_path, "log", f"t.{again_ran}").stdout.splitlines()[:2] == [
        f"rule:      t.{again_ran} (Vinefile:{2 * again_ran + 1}:1)", f"run:       {ids[1]}: ran"]
    assert vinemake(tmp_path, "log", f"t.{before}").stdout.splitlines()[1] == \
        f"run:       {ids[0]}: ran, up to date since run {ids[1]}"


def test_the_journal_and_the_records_stay_bounded_however_often_the_rules_run_again(tmp_path):
    null_rules(tmp_path, 150, source="src")
    sizes = []
    for i in range(12):
        (tmp_path / "src").write_text(f"{i}\n")  # every rule's key changes: all run again
        proc = vinemake(tmp_path, window=40)
        assert proc.stderr.splitlines()[-1].startswith("vinemake: ran 150, ")
        sizes.append(os.path.getsize(StateDir(str(tmp_path)).journal))
    # Compaction keeps one line per live rule once dead lines pile up: the journal after the
    # last runs is no bigger than the biggest it was over the first ones.
    assert max(sizes[6:]) <= max(sizes[:6])
    assert len(runs(tmp_path)) == 12


def test_older_runs_go_once_the_newer_ones_hold_the_budget(tmp_path):
    state = StateDir(str(tmp_path))
    names = [f"20261207T0000{i:02d}-1" for i in range(6)]
    for i, name in enumerate(names):
        os.makedirs(state.stderr(name))
        with open(state.events(name), "wb") as f:
            f.write(b"x" * (100 * (i + 1)))
        with open(state.stderr(name, "rule"), "wb") as f:
            f.write(b"e" * 10)
    # Newest first: 610 + 510 = 1120 bytes reach a budget of 1000, so the four before go.
    assert _beyond_keeping(state, names, kept=19, budget=1000) == names[:4]
    assert _beyond_keeping(state, names, kept=3, budget=10**9) == names[:3]
    assert _beyond_keeping(state, names, kept=19, budget=10**9) == []
    assert _beyond_keeping(state, [], kept=19, budget=0) == []
