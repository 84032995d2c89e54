"""The live status page (a real HTTP server on 127.0.0.1) and `vinemake status`'s text."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from docserver import Documents, serve
from test_runview import T0, finished_run, plan
from test_terminal import Tmux

from vinemake.core.events import read_events, runs
from vinemake.core.statedir import StateDir
from vinemake.face.runview import run_view
from vinemake.face.status import fetch, find_page, page_url, status_text
from vinemake.face.statuspage import StatusServer


def get(server: StatusServer, path: str, password: bytes | None = None):
    host, port = server.address
    request = urllib.request.Request(f"http://{host}:{port}{path}")
    if password is not None:
        request.add_header("Authorization",
                           "Basic " + base64.b64encode(b"anyone:" + password).decode())
    with urllib.request.urlopen(request, timeout=30) as r:
        return r.status, r.headers["Content-Type"], r.read()


@pytest.fixture
def served():
    events = []
    server = StatusServer(lambda: events, clock=lambda: T0 + 10.0).start()
    yield server, events
    server.close()


def test_the_page_and_the_json_of_the_events_so_far(served):
    server, events = served
    assert server.address[0] == "127.0.0.1"
    code, kind, body = get(server, "/")
    assert (code, kind) == (200, "text/html; charset=utf-8")
    assert b"const LIVE = true;" in body and b"Plotly" in body
    events.extend(finished_run())
    code, kind, body = get(server, "/status.json")
    assert (code, kind) == (200, "application/json")
    assert json.loads(body) == json.loads(json.dumps(run_view(events, now=T0 + 10.0)))


def test_a_path_it_does_not_serve_is_404(served):
    server, _ = served
    with pytest.raises(urllib.error.HTTPError) as e:
        get(server, "/etc/passwd")
    assert e.value.code == 404


def test_with_a_password_every_request_needs_it():
    server = StatusServer(lambda: [], secret=b"s3cret").start()
    try:
        for path in ("/", "/status.json"):
            for wrong in (None, b"guess"):
                with pytest.raises(urllib.error.HTTPError) as e:
                    get(server, path, wrong)
                assert e.value.code == 401
                assert e.value.headers["WWW-Authenticate"] == 'Basic realm="vinemake status"'
            assert get(server, path, b"s3cret")[0] == 200
    finally:
        server.close()


def test_a_malformed_authorization_is_refused():
    server = StatusServer(lambda: [], secret=b"s3cret")
    assert not server.allowed("Basic !!!not base64")
    assert not server.allowed("Bearer s3cret")
    assert server.allowed("Basic " + base64.b64encode(b":s3cret").decode())
    server.close()


def test_status_text_of_a_finished_run():
    assert status_text(run_view(finished_run())) == (
        "run 20270115T080000-7 of /w/Vinefile on h: ok, 5.0 s\n"
        "rules: ran 2, restored 1, up to date 1, failed 0, withdrawn 0; running 0, waiting 0\n"
        "workers 1:\n"
        "  WORKER  HOST  CORES  MEMORY  DISK    TASKS  RUNNING  CACHE\n"
        "  w1      h     2      1.0 GB  5.0 GB  2      0        500 B\n"
        "running 0\n"
        "waiting 0\n"
        "transfers 2: 500 B (cache 200 B, manager 300 B)\n"
        "in flight 0\n")


def test_status_text_of_a_live_run_says_for_how_long_and_fits_the_width():
    events = [finished_run()[0], plan(0, "a-rule-with-a-rather-long-name.txt"), plan(1, "b"),
              {"t": T0 + 1.0, "ev": "submit", "rule": 0},
              {"t": T0 + 1.0, "ev": "submit", "rule": 1},
              {"t": T0 + 2.0, "ev": "start", "rule": 0, "worker": "w1", "attempt": 1},
              {"t": T0 + 3.0, "ev": "transfer_start", "file": "in.dat", "key": "i",
               "size": 2_500_000, "source": "peer", "from_worker": "w2", "to_worker": "w1",
               "start": T0 + 3.0}]
    text = status_text(run_view(events, now=T0 + 6.5), width=40)
    assert text.splitlines() == [
        "run 20270115T080000-7 of /w/Vinefile ...",
        "rules: ran 0, restored 0, up to date ...",
        "workers 0",
        "running 1:",
        "  RULE                               ...",
        "  a-rule-with-a-rather-long-name.txt ...",
        "waiting 1:",
        "  RULE  WAITING",
        "  b     5.5 s",
        "transfers 0: 0 B",
        "in flight 1:",
        "  FILE    FROM     TO  SIZE    FOR",
        "  in.dat  peer w2  w1  2.5 MB  3.5 s",
    ]


def test_status_text_counts_what_it_leaves_out():
    events = [finished_run()[0]] + [plan(i, f"r{i}") for i in range(25)] + \
        [{"t": T0 + 1.0, "ev": "submit", "rule": i} for i in range(25)]
    lines = status_text(run_view(events, now=T0 + 2)).splitlines()
    assert "  ... and 5 more" in lines


def vinemake(root, *args):
    return subprocess.run([sys.executable, "-m", "vinemake", *args], cwd=root,
                          capture_output=True, text=True, timeout=120)


def test_a_status_port_in_use_stops_the_run_before_it_records_anything(tmp_path):
    (tmp_path / "Vinefile").write_text("a.txt:\n\techo a > a.txt\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        got = vinemake(tmp_path, "--status-port", str(port))
    assert got.returncode == 2
    assert got.stderr == f"vinemake: --status-port {port}: cannot listen on 127.0.0.1: " \
                         "Address already in use\n"
    assert not (tmp_path / "a.txt").exists() and runs(str(tmp_path)) == []


def test_status_with_no_run_serving_shows_the_last_run_recorded(tmp_path):
    (tmp_path / "Vinefile").write_text("a.txt:\n\techo a > a.txt\n")
    assert vinemake(tmp_path).returncode == 0
    # a record left by a run killed with -9: its pid is gone
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / ".vinemake" / "status").write_text(
        json.dumps({"host": "127.0.0.1", "port": 9, "pid": int(dead), "run": "x"}))
    got = vinemake(tmp_path, "status")
    assert got.returncode == 0, got.stderr
    lines = got.stdout.splitlines()
    assert lines[0] == "(no run serves its status here; the last run recorded)"
    assert lines[1].startswith(f"run {runs(str(tmp_path))[-1]} of {tmp_path}/Vinefile on ")
    assert lines[1].endswith(": ok, " + lines[1].rsplit(", ", 1)[1])
    assert lines[2] == "rules: ran 1, restored 0, up to date 0, failed 0, withdrawn 0; " \
                       "running 0, waiting 0"


def test_status_where_nothing_ran_says_so(tmp_path):
    got = vinemake(tmp_path, "status", str(tmp_path))
    assert (got.returncode, got.stdout) == (2, "")
    assert got.stderr == f"vinemake: no run recorded in {tmp_path}/.vinemake/runs " \
                         "(run the workflow first)\n"


def test_status_of_a_page_that_needs_a_password_without_it(tmp_path):
    server = StatusServer(lambda: [], secret=b"s3cret",
                          record=str(tmp_path / ".vinemake" / "status"))
    (tmp_path / ".vinemake").mkdir()
    server.start("r1")
    try:
        got = vinemake(tmp_path, "status")
    finally:
        server.close()
    assert (got.returncode, got.stdout) == (2, "")
    assert got.stderr == "vinemake: this run's status page needs its password " \
                         "(vinemake status --password FILE)\n"
    assert not (tmp_path / ".vinemake" / "status").exists()


@pytest.mark.parametrize("cols", [40, 120])
def test_status_on_a_terminal_fits_its_width(tmp_path, cols):
    (tmp_path / "Vinefile").write_text("a-rule-with-a-long-name-to-cut.txt:\n"
                                       "\techo a > a-rule-with-a-long-name-to-cut.txt\n")
    assert vinemake(tmp_path).returncode == 0
    piped = vinemake(tmp_path, "status").stdout.splitlines()  # a pipe gets whole lines
    screen = Tmux(tmp_path, cols)
    try:
        screen.start(tmp_path, "status")
        shown = screen.finished()
    finally:
        screen.close()
    assert shown == [line if len(line) <= cols else line[:cols - 3] + "..." for line in piped]
    assert any(len(line) > 40 for line in piped)  # so the 40 columns cut something


def test_the_page_listens_on_ipv6_when_the_host_is_an_ipv6_address():
    server = StatusServer(lambda: [], host="::1").start()
    try:
        host, port = server.address
        assert host == "::1"
        url = page_url({"host": host, "port": port})
        assert url == f"http://[::1]:{port}/"
        assert fetch(url, None)["summary"]["outcome"] == "running"
    finally:
        server.close()


def test_a_page_on_every_interface_is_asked_on_this_machine():
    assert page_url({"host": "0.0.0.0", "port": 8080}) == "http://127.0.0.1:8080/"
    assert page_url({"host": "::", "port": 8080}) == "http://[::1]:8080/"
    assert page_url({"host": "example.org", "port": 1}) == "http://example.org:1/"


def test_a_view_is_rebuilt_every_second_and_less_often_when_building_takes_long():
    events = list(finished_run())
    times = iter([T0 + 10.0, T0 + 10.1,  # built in 0.1 s: good for a second
                  T0 + 10.5,             # asked again: the same view
                  T0 + 11.2, T0 + 12.2,  # rebuilt, in 1 s: good for 5 s
                  T0 + 16.0,             # the same
                  T0 + 17.3, T0 + 17.4])  # rebuilt
    server = StatusServer(lambda: events, clock=lambda: next(times))
    try:
        first = server.view_json()
        events.append({"t": T0 + 10.4, "ev": "worker_join", "worker": "w9"})
        assert server.view_json() is first
        second = server.view_json()
        assert second != first and b'"w9"' in second
        assert server.view_json() is second
        assert server.view_json() != second
    finally:
        server.close()


WORKER = "import sys; from vinemake.worker.cli import main; sys.exit(main())"


def test_a_url_copy_a_worker_is_receiving_is_shown_in_flight_until_it_arrives(tmp_path):
    docs = Documents()
    docs.docs["/words.txt"] = b"one\ntwo\nthree\n"
    docs.held["/words.txt"] = threading.Event()
    server, base = serve(docs)
    (tmp_path / "Vinefile").write_text(f"out.txt: {base}/words.txt->in\n\twc -l < in > out.txt\n")
    port_file = tmp_path / "port"
    run = subprocess.Popen([sys.executable, "-m", "vinemake", "-T", "workers", "--port-file",
                            str(port_file), "--status-port", "0"], cwd=tmp_path,
                           stderr=subprocess.PIPE, text=True)
    worker = None
    try:
        wait_for(port_file.exists, run)
        worker = subprocess.Popen([sys.executable, "-c", WORKER, "127.0.0.1",
                                   port_file.read_text().strip(), "--name", "alpha",
                                   "--timeout", "30", "--as-remote",
                                   "--workdir", str(tmp_path / "alpha")],
                                  stderr=subprocess.DEVNULL)
        url = page_url(wait_for(lambda: find_page(str(tmp_path)), run))
        # the worker asked for the document; the server holds its body back
        moving = wait_for(lambda: fetch(url, None)["in_flight"], run)
        # its size is known once it arrived
        assert [(m["from"], m["to"], m["size"]) for m in moving] == [("url", "alpha", None)]
        assert moving[0]["file"].startswith(f"{base}/words.txt")
        status = subprocess.run([sys.executable, "-m", "vinemake", "status", str(tmp_path)],
                                capture_output=True, text=True, timeout=60)
        lines = status.stdout.splitlines()
        shown = lines[lines.index("in flight 1:") + 1:]
        assert shown[0].split() == ["FILE", "FROM", "TO", "SIZE", "FOR"]
        assert shown[1].split()[1:4] == ["url", "alpha", "-"]
        docs.held["/words.txt"].set()
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
    finally:
        docs.held["/words.txt"].set()
        server.shutdown()
        for p in (run, worker):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert (tmp_path / "out.txt").read_text().strip() == "3"
    events = read_events(StateDir(str(tmp_path)).events(runs(str(tmp_path))[-1]))
    copies = [(e["ev"], e["source"]) for e in events
              if e["ev"] in ("transfer_start", "transfer") and e["to_worker"] == "alpha"]
    assert copies == [("transfer_start", "url"), ("transfer", "url")]
    assert run_view(events)["in_flight"] == []


def wait_for(condition, run, seconds=60.0):
    """What `condition()` returns once it is true, while `run` goes on."""
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        assert run.poll() is None, run.communicate()[1]
        assert time.monotonic() < deadline, "waited too long"
        time.sleep(0.05)
    return found
