"""`vinemake log RULE|FILE`: a rule's last run, looked up in the recorded runs."""

import json
import os
import subprocess
import sys
import time


def vinemake(root, *args):
    return subprocess.run([sys.executable, "-m", "vinemake", *args], cwd=root,
                          capture_output=True, text=True, timeout=120)


VINEFILE = """\
@resources cores=1 memory=100MB
a.txt: in.txt
\ttr a-z A-Z < in.txt > a.txt; echo converted >&2

b.txt: a.txt
\techo about to fail >&2; exit 3
"""


def test_log_shows_a_rules_command_why_where_how_it_ended_resources_and_stderr(tmp_path):
    (tmp_path / "in.txt").write_text("hello\n")
    (tmp_path / "Vinefile").write_text(VINEFILE)
    vinemake(tmp_path)
    lines = vinemake(tmp_path, "log", "a.txt").stdout.splitlines()
    assert lines[0] == "rule:      a.txt (Vinefile:2:1)"
    assert lines[1].endswith(": ran") and lines[1].startswith("run:       2")
    assert lines[2:5] == ["why:       run, never built",
                          "command:   tr a-z A-Z < in.txt > a.txt; echo converted >&2",
                          "worker:    local (127.0.0.1), attempt 1"]
    assert [line[:10] for line in lines[5:8]] == ["submitted:", "started:  ", "ended:    "]
    assert lines[8] == "outcome:   exit code 0"
    assert lines[9] == "resources: declared   measured"
    assert lines[10].split()[:2] == ["cores", "1"] and lines[11].split()[:3] == [
        "memory", "100", "MB"]
    assert lines[-2:] == ["stderr:", "  converted"]
    failed = vinemake(tmp_path, "log", str(tmp_path / "b.txt")).stdout.splitlines()
    assert failed[1].endswith(": failed") and "outcome:   exit code 3" in failed
    assert failed[-3:-1] == ["stderr:", "  about to fail"]
    assert failed[-1] == f"info:      {tmp_path}/.vinemake/failed/b.txt/INFO"


def test_a_rule_up_to_date_now_shows_the_run_that_made_it(tmp_path):
    (tmp_path / "in.txt").write_text("hello\n")
    (tmp_path / "Vinefile").write_text(VINEFILE)
    vinemake(tmp_path)
    (tmp_path / "Vinefile").write_text(VINEFILE.replace("exit 3", "touch b.txt"))
    vinemake(tmp_path)
    out = vinemake(tmp_path, "log", "a.txt").stdout.splitlines()
    assert "up to date since run" in out[1] and out[1].split(":")[1].strip().startswith("2")
    assert out[-1] == "  converted"


def test_log_of_an_unknown_rule_is_exit_2_with_a_suggestion(tmp_path):
    proc = vinemake(tmp_path, "log", "a.txt")
    assert (proc.returncode, proc.stderr) == (2, "vinemake: no run recorded here yet\n")
    (tmp_path / "in.txt").write_text("hello\n")
    (tmp_path / "Vinefile").write_text(VINEFILE)
    vinemake(tmp_path)
    proc = vinemake(tmp_path, "log", "a.tx")
    assert (proc.returncode, proc.stderr) == (
        2, "vinemake: no rule 'a.tx' in the runs recorded here (did you mean 'a.txt'?)\n")


def test_a_rule_without_targets_is_looked_up_by_file_and_line(tmp_path):
    (tmp_path / "Vinefile").write_text("x:\n\ttouch x\n\n:\n\techo checked >&2\n")
    vinemake(tmp_path)
    out = vinemake(tmp_path, "log", "Vinefile:4").stdout.splitlines()
    assert out[0] == "rule:      Vinefile:4 (Vinefile:4:1)" and out[-1] == "  checked"


def test_log_of_a_rule_of_the_run_going_on_says_it_runs(tmp_path):
    (tmp_path / "Vinefile").write_text("slow:\n\tsleep 20; touch slow\n\n"
                                       "later: slow\n\tcp slow later\n")
    proc = subprocess.Popen([sys.executable, "-m", "vinemake"], cwd=tmp_path,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while "running" not in (out := vinemake(tmp_path, "log", "slow").stdout):
            assert time.monotonic() < deadline, out
            time.sleep(0.2)
        assert out.splitlines()[1].endswith(": running")
        assert vinemake(tmp_path, "log", "later").stdout.splitlines()[1].endswith(": waiting")
    finally:
        proc.terminate()
        proc.wait(60)


def a_run_going_on_that_reached(root, labels) -> str:
    """A record of a run going on (this test's process is its vinemake) whose plan events, as
    a big run's early on, name only `labels`: made from the last real run's record."""
    from vinemake.common.process import identity
    from vinemake.core.events import runs
    from vinemake.core.statedir import StateDir

    state = StateDir(str(root))
    lines = open(state.events(runs(str(root))[-1])).read().splitlines()
    start = json.loads(lines[0])
    start["process"] = identity()
    plans = [line for line in lines[1:]
             if '"ev":"plan"' in line and json.loads(line)["label"] in labels]
    kept = [json.dumps(start, separators=(",", ":")), *plans]
    run_id = "29991231T235959-1"  # newer than any real run's
    os.makedirs(os.path.dirname(state.events(run_id)))
    with open(state.events(run_id), "w") as f:
        f.write("\n".join(kept) + "\n")
    return run_id


def test_a_rule_the_run_going_on_has_not_reached_is_said_so(tmp_path):
    (tmp_path / "in.txt").write_text("hello\n")
    (tmp_path / "Vinefile").write_text(VINEFILE + "\nc.txt:\n\ttouch c.txt\n")
    vinemake(tmp_path)
    live = a_run_going_on_that_reached(tmp_path, {"a.txt"})
    out = vinemake(tmp_path, "log", "c.txt").stdout.splitlines()
    assert out[1].endswith(f": ran; the run going on ({live}) has not reached it yet"), out
    assert out[1].startswith("run:       2") and live not in out[1].split(";")[0]
    proc = vinemake(tmp_path, "log", "d.txt")
    assert (proc.returncode, proc.stderr) == (
        2, f"vinemake: no rule 'd.txt' in the runs recorded here, nor yet in the run going on "
           f"({live}), which records its rules as it reaches them: ask again later (did you mean "
           "'a.txt'?)\n")
    reached = vinemake(tmp_path, "log", "a.txt").stdout.splitlines()
    assert reached[1] == f"run:       {live}: waiting"
