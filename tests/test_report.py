"""`vinemake report` and `--report`: the HTML page of a real run, made from its recorded events.

What a browser shows of these pages is tested in test_report_browser.py.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from vinemake.core.events import read_events, runs
from vinemake.core.statedir import StateDir
from vinemake.face.report import render

FAILING = """\
a.txt:
\techo a > a.txt
b.txt: a.txt
\tcat a.txt > b.txt
bad.txt: b.txt
\techo "the disk is full" >&2; exit 3
"""


def vinemake(root, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "vinemake", *args], cwd=root,
                          capture_output=True, text=True, timeout=timeout)


def page_data(path) -> dict:
    """The view a report page carries (the JSON the template's DATA holds)."""
    html = path.read_text(encoding="utf-8")
    data = re.search(r'<script type="application/json" id="data">(.*?)</script>', html)
    return json.loads(data.group(1))


def test_render_fills_the_marks_and_no_text_can_end_the_script():
    template = "<head><!--PLOTLY--></head><script>const LIVE = /*LIVE*/false;</script>" \
               '<script type="application/json">/*DATA*/null</script>'
    view = {"label": "</script><script>alert(1)</script> <!--PLOTLY-->"}
    html = render(view, "var s = '</script>';", template)
    assert html == (
        "<head><script>var s = '<\\/script>';</script></head><script>const LIVE = false;"
        '</script><script type="application/json">{"label":"\\u003c/script>\\u003cscript>'
        'alert(1)\\u003c/script> \\u003c!--PLOTLY-->"}</script>')
    assert "const LIVE = true;" in render(None, "", template, live=True)


def test_report_of_the_last_run_shows_its_counts_failure_and_stderr(tmp_path):
    (tmp_path / "Vinefile").write_text(FAILING)
    run = vinemake(tmp_path, "-k")
    assert run.returncode == 1
    got = vinemake(tmp_path, "report")
    (run_id,) = runs(str(tmp_path))
    assert (got.returncode, got.stdout) == (0, "")
    assert got.stderr == f"vinemake: report of run {run_id} written to " \
                         f"{tmp_path / 'report.html'}\n"
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<script src" not in html and "https://" not in html.split("<script>")[0]
    view = page_data(tmp_path / "report.html")
    assert view["summary"]["outcome"] == "failed"
    assert view["summary"]["counts"] == {"ran": 2, "restored": 0, "skipped": 0, "failed": 1,
                                         "withdrawn": 0}
    (failure,) = view["failures"]
    assert (failure["label"], failure["exit"]) == ("bad.txt", 3)
    assert failure["stderr"] == "the disk is full"
    assert failure["command"] == 'echo "the disk is full" >&2; exit 3'
    ends = [e for e in read_events(StateDir(str(tmp_path)).events(run_id)) if e["ev"] == "end"]
    assert sorted(view["bars"]["status"]) == sorted(e["status"] for e in ends)


def test_report_option_writes_the_page_when_the_run_ends(tmp_path):
    (tmp_path / "Vinefile").write_text("a.txt:\n\techo a > a.txt\n")
    run = vinemake(tmp_path, "--report", "out/r.html")
    assert run.returncode == 0  # out/ does not exist: said, and the run's own status stands
    assert run.stderr.endswith(f"vinemake: cannot write the report {tmp_path}/out/r.html: "
                               "No such file or directory\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "a.txt").unlink()
    assert vinemake(tmp_path, "--report", "out/r.html").returncode == 0
    view = page_data(tmp_path / "out" / "r.html")
    assert view["summary"]["counts"] == {"ran": 0, "restored": 1, "skipped": 0, "failed": 0,
                                         "withdrawn": 0}  # from the store
    assert view["bars"]["kind"] == ["restore"]
    assert view["run"]["id"] == runs(str(tmp_path))[-1]


def test_report_of_a_killed_run(tmp_path):
    (tmp_path / "Vinefile").write_text("a.txt:\n\techo a > a.txt\nslow.txt: a.txt\n"
                                       "\tsleep 60; touch slow.txt\n")
    proc = subprocess.Popen([sys.executable, "-m", "vinemake"], cwd=tmp_path,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _started(tmp_path, "slow.txt"):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    got = vinemake(tmp_path, "report", "-o", "killed.html")
    assert got.returncode == 0, got.stderr
    view = page_data(tmp_path / "killed.html")
    assert view["summary"]["outcome"] == "unfinished"
    assert view["summary"]["counts"]["ran"] == 1
    assert [r["label"] for r in view["running"]] == ["slow.txt"]


def _started(root, label) -> bool:
    ids = runs(str(root))
    events = read_events(StateDir(str(root)).events(ids[-1])) if ids else []
    rules = {e["rule"] for e in events if e["ev"] == "plan" and e["label"] == label}
    return any(e["ev"] == "start" and e["rule"] in rules for e in events)


def test_report_with_no_run_recorded_says_so(tmp_path):
    got = vinemake(tmp_path, "report")
    assert (got.returncode, got.stdout) == (2, "")
    assert got.stderr == f"vinemake: no run recorded in {tmp_path}/.vinemake/runs " \
                         "(run the workflow first)\n"
    assert not (tmp_path / "report.html").exists()


def test_report_of_a_run_not_recorded_says_so(tmp_path):
    (tmp_path / "Vinefile").write_text("a.txt:\n\techo a > a.txt\n")
    assert vinemake(tmp_path).returncode == 0
    got = vinemake(tmp_path, "report", "--run", "20990101T000000-1")
    assert got.returncode == 2
    assert got.stderr == f"vinemake: no run 20990101T000000-1 recorded in " \
                         f"{tmp_path}/.vinemake/runs (vinemake history lists them)\n"


def test_a_vinefile_is_still_run_with_its_targets(tmp_path):
    (tmp_path / "Vinefile").write_text("report:\n\techo r > report\n")
    got = vinemake(tmp_path, "Vinefile", "report")
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "report").read_text() == "r\n"


def test_a_library_run_shows_its_start_and_its_function_calls(tmp_path):
    example = tmp_path / "library"
    shutil.copytree(Path(__file__).parent.parent / "examples" / "library", example,
                    ignore=shutil.ignore_patterns(".vinemake", "count.*", "total.txt"))
    assert vinemake(example).returncode == 0
    events = read_events(StateDir(str(example)).events(runs(str(example))[-1]))
    (started,) = [e for e in events if e["ev"] == "library_start"]
    assert (started["library"], started["worker"]) == ("words", "local")
    assert started["start"] < started["end"]  # model.py sleeps a second as it is imported
    assert vinemake(example, "report").returncode == 0
    bars = page_data(example / "report.html")["bars"]
    assert sorted(bars["kind"]) == ["command", "function call", "function call",
                                    "function call", "library start"]
    (i,) = [i for i, k in enumerate(bars["kind"]) if k == "library start"]
    assert bars["label"][i] == "words"


def test_report_to_a_place_it_cannot_write_says_so_and_writes_nothing(tmp_path):
    (tmp_path / "Vinefile").write_text("a.txt:\n\techo a > a.txt\n")
    assert vinemake(tmp_path).returncode == 0
    got = vinemake(tmp_path, "report", "-o", "no/such/dir/r.html")
    assert (got.returncode, got.stdout) == (2, "")
    assert got.stderr == f"vinemake: cannot write the report {tmp_path}/no/such/dir/r.html: " \
                         "No such file or directory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".vinemake", "Vinefile", "a.txt"]
