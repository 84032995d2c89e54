"""The report and the live status page in a real browser (headless Chromium), of real runs.

Each test runs vinemake with real worker processes, loads the page as a person would, and
checks that no script error is logged, that the timeline holds one bar per task that ran,
that the counts on the page are the run's, and that a screenshot is not blank.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
import urllib.request

import pytest
from chromium import Browser
from test_report import _started
from test_runview import T0, finished_run, task

from vinemake.core.events import read_events, runs
from vinemake.core.statedir import StateDir
from vinemake.face.report import page
from vinemake.face.runview import run_view

pytestmark = pytest.mark.slow

WORKER = "import sys; from vinemake.worker.cli import main; sys.exit(main())"
WORKFLOW = """\
src.dat:
\tseq 1 20000 > src.dat
@resources cores=1
left.txt: src.dat
\thead -n 100 src.dat > left.txt
@resources cores=1
right.txt: src.dat
\ttail -n 100 src.dat > right.txt
@resources cores=1
both.txt: left.txt right.txt
\tcat left.txt right.txt > both.txt
@resources cores=1
broken.txt: src.dat
\techo "no space left" >&2; exit 4
"""
CARDS = ("ran", "restored", "skipped", "failed")


def wait_until(condition, what: str, proc=None, timeout: float = 120):
    """Poll `condition` (a thing that happens, not a time) until true; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert proc is None or proc.poll() is None, f"vinemake ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)
    return value


def summary_counts(stderr: str) -> dict:
    """The counts of the run's summary line (`vinemake: ran 3, restored 0, ...`)."""
    line = next(x for x in stderr.splitlines() if x.startswith("vinemake: ran "))
    found = dict(re.findall(r"(ran|restored|up to date|failed) (\d+)", line))
    return {"ran": found["ran"], "restored": found["restored"], "skipped": found["up to date"],
            "failed": found.get("failed", "0")}


def page_counts(browser: Browser) -> dict:
    return {c: browser.evaluate(f"document.getElementById('count-{c}').textContent")
            for c in CARDS}


def timeline_bars(browser: Browser) -> dict:
    """Bars per kind as the chart drew them: each bar is a segment of its kind's line, and
    Plotly draws each segment between gaps as an SVG path of its own."""
    bars = browser.evaluate("""(() => {
        const gd = document.getElementById('timeline');
        const drawn = [...gd.querySelectorAll('.scatterlayer .trace')];
        return Object.fromEntries(drawn.map((g, i) =>
            [gd._fullData[i].name, g.querySelectorAll('path.js-line').length]));
    })()""")
    assert bars == json.loads(browser.evaluate(
        "document.getElementById('timeline').dataset.bars"))  # what the page says it drew
    return bars


def check_screenshot(browser: Browser, path) -> None:
    png = browser.screenshot(path)
    assert png.startswith(b"\x89PNG") and browser.colours(png) > 50, path


def test_the_report_of_a_run_on_two_workers_in_a_browser(tmp_path):
    (tmp_path / "Vinefile").write_text(WORKFLOW)
    port_file = tmp_path / "port"
    run = subprocess.Popen([sys.executable, "-m", "vinemake", "-k", "-T", "workers",
                            "--port-file", str(port_file)], cwd=tmp_path,
                           stderr=subprocess.PIPE, text=True)
    workers = []
    try:
        wait_until(port_file.exists, "port file", run)
        port = port_file.read_text().strip()
        workers = [subprocess.Popen([sys.executable, "-c", WORKER, "127.0.0.1", port,
                                     "--cores", "2", "--name", name, "--timeout", "60",
                                     "--as-remote", "--workdir", str(tmp_path / name)],
                                    stderr=subprocess.DEVNULL)
                   for name in ("alpha", "beta")]
        _, err = run.communicate(timeout=300)
    finally:
        for p in [run, *workers]:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert run.returncode == 1, err
    got = subprocess.run([sys.executable, "-m", "vinemake", "report", "-o", "r.html"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    events = read_events(StateDir(str(tmp_path)).events(runs(str(tmp_path))[-1]))
    ends = [e for e in events if e["ev"] == "end" and e["status"] in ("ok", "failed")]
    transfers = [e for e in events if e["ev"] == "transfer"]
    assert transfers  # --as-remote: every input travels
    cached = {e["worker"] for e in events if e["ev"] == "cache"}
    assert cached  # the workers hold what they were sent and made

    with Browser(tmp_path / "profile") as browser:
        browser.open((tmp_path / "r.html").as_uri())
        browser.wait_for("document.body.dataset.rendered")
        assert browser.errors == []
        asked = {e["params"]["request"]["url"].split(":")[0] for e in browser.events
                 if e["method"] == "Network.requestWillBeSent"}
        assert "file" in asked and asked <= {"file", "data"}  # no network: all is inside it
        bars = timeline_bars(browser)
        assert bars.get("command", 0) + bars.get("failed", 0) == len(ends)
        assert bars.get("failed") == 1
        assert bars.get("transfer") == len(transfers)
        assert page_counts(browser) == summary_counts(err)
        lanes = browser.evaluate("document.getElementById('timeline')._fullLayout"
                                 ".yaxis.ticktext")
        ran_on = {e["worker"] for e in events if e["ev"] == "start"}
        assert {lane.split(" #")[0] for lane in lanes} == ran_on | {"manager"}
        assert browser.evaluate("document.querySelector('#failures pre:not(.command)')"
                                ".textContent") == "no space left"
        assert browser.evaluate("document.querySelectorAll('#provenance-table tbody tr')"
                                ".length") == 5
        # hovering a command's bar names its rule, its command and its files
        browser.evaluate("Plotly.Fx.hover('timeline', [{curveNumber: 0, pointNumber: 0}])")
        hovered = browser.wait_for("document.querySelector('#timeline .hovertext')"
                                   "?.textContent")
        assert re.match(r"(src\.dat|left\.txt|right\.txt|both\.txt) \(command, ok\)", hovered)
        assert "inputs: " in hovered and "declared: " in hovered
        assert browser.evaluate("document.getElementById('cache-plot').data"
                                ".map(t => t.name).sort()") == sorted(cached)
        check_screenshot(browser, tmp_path / "report.png")


def test_the_live_page_of_a_run_going_on_in_a_browser(tmp_path):
    release = tmp_path / "RELEASE"
    (tmp_path / "secret").write_text("open sesame\n")
    (tmp_path / "Vinefile").write_text(
        "a.txt:\n\techo a > a.txt\n"
        "b.txt: a.txt\n\tcat a.txt > b.txt\n"
        f"hold.txt: b.txt\n\twhile [ ! -e {release} ]; do sleep 0.05; done; touch hold.txt\n"
        "after.txt: hold.txt\n\ttouch after.txt\n")
    run = subprocess.Popen([sys.executable, "-m", "vinemake", "--status-port", "0",
                            "--password", "secret"], cwd=tmp_path,
                           stderr=subprocess.PIPE, text=True)
    record = tmp_path / ".vinemake" / "status"
    try:
        wait_until(lambda: _started(tmp_path, "hold.txt"), "start of hold.txt", run)
        where = json.loads(wait_until(record.exists, "status record", run) and
                           record.read_text())
        url = f"http://127.0.0.1:{where['port']}/"
        auth = {"Authorization": "Basic " + base64.b64encode(b"me:open sesame").decode()}
        wait_until(lambda: _json(url, auth)["summary"]["running"] == 1, "hold.txt running",
                   run)

        with Browser(tmp_path / "profile") as browser:
            browser.open(url, headers=auth)
            browser.wait_for("document.body.dataset.rendered")
            assert browser.errors == []
            assert page_counts(browser) == {"ran": "2", "restored": "0", "skipped": "0",
                                            "failed": "0"}
            assert browser.evaluate("document.getElementById('count-running').textContent") \
                == "1"
            assert browser.evaluate("document.querySelector('#running tbody td')"
                                    ".textContent") == "hold.txt"
            bars = timeline_bars(browser)
            assert bars == {"command": 3}  # a.txt, b.txt, and hold.txt still running
            check_screenshot(browser, tmp_path / "live.png")

        status = subprocess.run([sys.executable, "-m", "vinemake", "status", str(tmp_path),
                                 "--password", str(tmp_path / "secret")],
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stderr
        lines = status.stdout.splitlines()
        assert lines[0] == f"live page: {url}"
        # after.txt is handed over ahead of hold.txt, which makes its input: held, it waits
        assert lines[2] == "rules: ran 2, restored 0, up to date 0, failed 0, withdrawn 0; " \
                           "running 1, waiting 1"
        assert lines[lines.index("running 1:") + 2].startswith("  hold.txt  local  ")
        assert lines[lines.index("waiting 1:") + 2].startswith("  after.txt  ")
        release.touch()
        _, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, err
    assert not record.exists()  # the page stopped with the run


def _json(url: str, headers: dict) -> dict:
    request = urllib.request.Request(url + "status.json", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.load(r)


def test_failed_and_lost_attempts_are_drawn_apart_from_their_kind(tmp_path):
    # The events of a run whose worker w2 went away while it ran a.txt (written by hand in
    # the recorded format: which worker is lost is not for a test to arrange).
    lost = [{"t": T0 + 0.5, "ev": "start", "rule": 0, "worker": "w2", "attempt": 1},
            {"t": T0 + 0.9, "ev": "end", "rule": 0, "status": "lost", "attempt": 1,
             "worker": "w2", "exit": None, "wall_s": None}]
    failed = task(3, "w1", 4.2, 4.6, status="failed")
    broken = {"t": T0 + 4.8, "ev": "transfer", "file": "d.txt", "key": "k3", "size": 9,
              "source": "worker", "from_worker": "w1", "to_worker": None, "start": T0 + 4.7,
              "end": T0 + 4.8, "ok": False}
    events = finished_run()[:-1] + lost + failed + [broken]
    (tmp_path / "r.html").write_text(page(run_view(events)), encoding="utf-8")
    with Browser(tmp_path / "profile") as browser:
        browser.open((tmp_path / "r.html").as_uri())
        browser.wait_for("document.body.dataset.rendered")
        assert browser.errors == []
        assert timeline_bars(browser) == {"command": 1, "function call": 1, "transfer": 2,
                                          "restore": 1, "failed": 2, "lost": 1}
        assert browser.evaluate("document.querySelector('#transfers .note').textContent") \
            == "2 transfers, 500 B in all; 1 failed (red in the timeline)"
        assert browser.evaluate("document.getElementById('outcome').textContent") == \
            "unfinished"  # no run_end: the record stops there


def test_copies_in_flight_and_inputs_found_in_a_workers_cache_are_on_the_page(tmp_path):
    events = finished_run()[:-1]  # still going: no run_end
    start = next(i for i, e in enumerate(events) if e["ev"] == "start" and e["rule"] == 1)
    events[start] = {**events[start], "cached": ["k0", "s"]}
    events.append({"t": T0 + 4.0, "ev": "transfer_start", "file": "big.dat", "key": "b",
                   "size": 2_500_000, "source": "peer", "from_worker": "w1",
                   "to_worker": "w2", "start": T0 + 4.0})
    (tmp_path / "r.html").write_text(page(run_view(events, now=T0 + 6.5)), encoding="utf-8")
    with Browser(tmp_path / "profile") as browser:
        browser.open((tmp_path / "r.html").as_uri())
        browser.wait_for("document.body.dataset.rendered")
        assert browser.errors == []
        assert browser.evaluate("[...document.querySelectorAll('#in-flight tbody td')]"
                                ".map(td => td.textContent).join('|')") == \
            "big.dat|peer w1|w2|2.5 MB|2.50 s"
        assert browser.evaluate("document.getElementById('cache-hits').textContent") == \
            "1 restored, 3 on workers"
