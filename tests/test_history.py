"""`vinemake history`: the runs recorded for a workflow, with their outcomes and counts."""

import json
import os
import signal
import subprocess
import sys
import time

from vinemake.common.process import identity, start_tick
from vinemake.face.history import HEAD, run_line


def vinemake(root, *args):
    return subprocess.run([sys.executable, "-m", "vinemake", *args], cwd=root,
                          capture_output=True, text=True, timeout=120)


def test_history_lists_each_run_with_its_outcome_and_counts(tmp_path):
    assert vinemake(tmp_path, "history").stdout == "vinemake: no run recorded here yet\n"
    (tmp_path / "Vinefile").write_text("a:\n\ttouch a\n\nb: a\n\tcp a b\n")
    vinemake(tmp_path)
    os.unlink(tmp_path / "b")
    vinemake(tmp_path, "-j", "1")
    (tmp_path / "Vinefile").write_text("a:\n\ttouch a\n\nb: a\n\texit 1\n")
    vinemake(tmp_path)
    lines = vinemake(tmp_path, "history").stdout.splitlines()
    assert lines[0].split() == "RUN STARTED DURATION OUTCOME RAN RESTORED UP TO DATE FAILED " \
                               "COMMAND".split()
    cells = [line.split("  ") for line in lines[1:]]
    rows = [[c.strip() for c in row if c.strip()] for row in cells]
    assert [row[3:8] for row in rows] == [["ok", "2", "0", "0", "0"],
                                          ["ok", "0", "1", "1", "0"],
                                          ["failed", "0", "0", "1", "1"]]
    assert [row[-1] for row in rows] == ["vinemake", "vinemake -j 1", "vinemake"]
    assert vinemake(tmp_path / "..", "history", "-C", str(tmp_path)).stdout.splitlines() == lines


def test_a_run_killed_without_its_end_shows_as_killed(tmp_path):
    (tmp_path / "Vinefile").write_text("a:\n\tsleep 20; touch a\n")
    proc = subprocess.Popen([sys.executable, "-m", "vinemake"], cwd=tmp_path,
                            stderr=subprocess.DEVNULL)
    runs = tmp_path / ".vinemake" / "runs"
    deadline = time.monotonic() + 60
    while not (runs.exists() and any("start" in (d / "events.jsonl").read_text()
                                     for d in runs.iterdir())):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    running = vinemake(tmp_path, "history").stdout.splitlines()[1]
    assert " running " in running
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = vinemake(tmp_path, "history").stdout.splitlines()[1]
    assert " killed " in killed and killed.split()[-1] == "vinemake"


def test_a_line_of_a_record_missing_its_start_says_what_it_can():
    assert run_line("x", []) == ("x", "-", "-", "killed", "-", "-", "-", "-", "-")
    assert len(HEAD) == 9


def test_a_workflow_file_named_history_still_runs_as_dot_slash_history(tmp_path):
    (tmp_path / "history").write_text("a:\n\ttouch a\n")
    proc = vinemake(tmp_path, "./history")
    assert proc.returncode == 0 and (tmp_path / "a").exists()
    assert vinemake(tmp_path, "history").stdout.splitlines()[1].split()[-1] == "./history"


def test_a_killed_run_whose_pid_now_names_another_process_shows_as_killed(tmp_path):
    (tmp_path / "Vinefile").write_text("a:\n\ttouch a\n")
    vinemake(tmp_path)
    [run] = (tmp_path / ".vinemake" / "runs").iterdir()
    record = run / "events.jsonl"
    events = [json.loads(line) for line in record.read_text().splitlines()]
    start = next(e for e in events if e["ev"] == "run_start")
    assert start["process"].startswith(f"{start['pid']}-")
    # as if killed -9 (no end), its pid since taken by a process alive now: this one
    start.update(pid=os.getpid(), process=f"{os.getpid()}-{int(start_tick(os.getpid())) - 1}")
    record.write_text("".join(json.dumps(e) + "\n" for e in events if e["ev"] != "run_end"))
    assert " killed " in vinemake(tmp_path, "history").stdout.splitlines()[1]
    start["process"] = identity()  # the very process: still running
    record.write_text("".join(json.dumps(e) + "\n" for e in events if e["ev"] != "run_end"))
    assert " running " in vinemake(tmp_path, "history").stdout.splitlines()[1]
