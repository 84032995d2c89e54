"""--trace: one row per rule from a run's events, inputs by where they came from."""

import subprocess
import sys

from vinemake.face.trace import COLUMNS, rule_rows, stamp, trace_text


def plan(rid, label, action="run", inputs=(), files=None):
    return {"t": 1.0, "ev": "plan", "rule": rid, "label": label, "key": f"rule-{rid}",
            "action": action, "reason": "never built", "inputs": list(inputs),
            "outputs": [label], "files": files or {}}


def test_inputs_received_are_counted_once_for_the_first_rule_there_to_read_them():
    files = {"big": "k-big", "small": "k-small"}
    events = [
        plan(0, "a", inputs=["big", "small"], files=files),
        plan(1, "b", inputs=["big"], files=files),
        plan(2, "c", "skip"), plan(3, "d", "restore"), plan(4, "e"),
        {"t": 2.0, "ev": "submit", "rule": 0, "attempt": 1},
        {"t": 2.0, "ev": "submit", "rule": 1, "attempt": 1},
        {"t": 2.5, "ev": "transfer", "key": "k-big", "size": 1000, "source": "manager",
         "to_worker": "w1", "start": 2.1, "end": 2.5},
        {"t": 2.6, "ev": "transfer", "key": "k-small", "size": 10, "source": "peer",
         "from_worker": "w2", "to_worker": "w1", "start": 2.5, "end": 2.6},
        {"t": 3.0, "ev": "start", "rule": 0, "worker": "w1", "host": "h1", "attempt": 1},
        {"t": 3.5, "ev": "start", "rule": 1, "worker": "w1", "host": "h1", "attempt": 1},
        {"t": 4.0, "ev": "end", "rule": 0, "status": "ok", "attempt": 1, "worker": "w1",
         "exit": 0, "wall_s": 1.0, "cpu_s": 0.5, "input_bytes": 1010},
        {"t": 5.0, "ev": "end", "rule": 1, "status": "failed", "attempt": 1, "worker": "w1",
         "exit": 2, "wall_s": 1.5, "input_bytes": 1000},
        {"t": 5.0, "ev": "restore", "rule": 3, "outputs": ["d"]},
    ]
    rows = {r["label"]: r for r in rule_rows(events)}
    assert [rows[x]["status"] for x in "abcde"] == ["ran", "failed", "up to date", "restored",
                                                    "not run"]
    a, b = rows["a"], rows["b"]
    assert (a["from_manager"], a["from_peer"], a["from_cache"]) == (1000, 10, 0)
    assert (b["from_manager"], b["from_peer"], b["from_cache"]) == (0, 0, 1000)
    assert (a["worker"], a["host"], a["start"], a["end"], a["exit"]) == ("w1", "h1", 3.0, 4.0, 0)
    lines = trace_text(events).splitlines()
    assert lines[0].split("\t") == list(COLUMNS)
    cells = dict(zip(COLUMNS, lines[1].split("\t"), strict=True))
    assert (cells["label"], cells["status"], cells["start"], cells["wall_s"],
            cells["bytes_read"]) == ("a", "ran", stamp(3.0), "1", "-")
    assert len(lines) == 6


def test_a_killed_run_leaves_rules_submitted_and_not_ended_interrupted():
    events = [plan(0, "a"), {"t": 2.0, "ev": "submit", "rule": 0, "attempt": 1},
              {"t": 3.0, "ev": "start", "rule": 0, "worker": "local"}]
    assert rule_rows(events)[0]["status"] == "interrupted"


def test_a_rule_handed_over_ahead_and_held_back_is_not_run_nor_interrupted():
    events = [plan(0, "a"), plan(1, "b"), {"t": 2.0, "ev": "submit", "rule": 0, "attempt": 1},
              {"t": 2.0, "ev": "submit", "rule": 1, "attempt": 1, "after": [0]},
              {"t": 3.0, "ev": "start", "rule": 0, "worker": "local"},
              {"t": 4.0, "ev": "end", "rule": 0, "status": "failed", "retrying": False},
              {"t": 4.0, "ev": "held_back", "rule": 1}]
    assert [(r["status"], r["submit"]) for r in rule_rows(events)] == [("failed", 2.0),
                                                                       ("not run", None)]


def test_a_real_run_writes_its_trace(tmp_path):
    (tmp_path / "in.txt").write_text("hello\n")
    (tmp_path / "Vinefile").write_text("a.txt: in.txt\n\tcp in.txt a.txt\n\n"
                                       "b.txt: a.txt\n\texit 4\n")
    proc = subprocess.run([sys.executable, "-m", "vinemake", "--trace", "trace.tsv"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    rows = [dict(zip(COLUMNS, line.split("\t"), strict=True))
            for line in (tmp_path / "trace.tsv").read_text().splitlines()[1:]]
    assert [(r["label"], r["status"], r["exit"], r["worker"]) for r in rows] == [
        ("a.txt", "ran", "0", "local"), ("b.txt", "failed", "4", "local")]
    assert rows[0]["input_bytes"] == "6" and rows[1]["input_bytes"] == "6"
    assert all(r["start"] != "-" and r["end"] >= r["start"] for r in rows)


def test_a_run_with_nothing_to_do_still_writes_the_trace_and_report_asked_for(tmp_path):
    (tmp_path / "Vinefile").write_text("a.txt:\n\techo a > a.txt\n")
    first = subprocess.run([sys.executable, "-m", "vinemake"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    proc = subprocess.run([sys.executable, "-m", "vinemake", "--trace", "trace.tsv",
                           "--report", "report.html"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [dict(zip(COLUMNS, line.split("\t"), strict=True))
            for line in (tmp_path / "trace.tsv").read_text().splitlines()[1:]]
    assert [(r["label"], r["status"]) for r in rows] == [("a.txt", "up to date")]
    assert (tmp_path / "report.html").stat().st_size > 0
