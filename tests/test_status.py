"""The live status page (a real HTTP server on 127.0.0.1) and `vinemake status`'s text."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest
from test_runview import T0, finished_run, plan

from vinemake.face.runview import run_view
from vinemake.face.status import status_text
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
        "transfers 2: 500 B (cache 200 B, manager 300 B)\n")


def test_status_text_of_a_live_run_says_for_how_long_and_fits_the_width():
    events = [finished_run()[0], plan(0, "a-rule-with-a-rather-long-name.txt"), plan(1, "b"),
              {"t": T0 + 1.0, "ev": "submit", "rule": 0},
              {"t": T0 + 1.0, "ev": "submit", "rule": 1},
              {"t": T0 + 2.0, "ev": "start", "rule": 0, "worker": "w1", "attempt": 1}]
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
    ]


def test_status_text_counts_what_it_leaves_out():
    events = [finished_run()[0]] + [plan(i, f"r{i}") for i in range(25)] + \
        [{"t": T0 + 1.0, "ev": "submit", "rule": i} for i in range(25)]
    lines = status_text(run_view(events, now=T0 + 2)).splitlines()
    assert "  ... and 5 more" in lines
