"""wire/tls: ssl's classes for checks and except clauses, with ssl loaded only by a TLS
context (each test runs a fresh interpreter: pytest's own has loaded ssl long ago)."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import socket, sys
from vinemake.wire import tls, protocol
a, b = socket.socketpair()
print("ssl" in sys.modules, isinstance(a, tls.SSLSocket), tls.SSLError.__name__)
try:
    raise OSError("plain")
except tls.SSLError:
    print("caught by SSLError")
except OSError:
    print("an OSError")
protocol.client_context()
print("ssl" in sys.modules, tls.SSLError is sys.modules["ssl"].SSLError,
      tls.SSLSocket is sys.modules["ssl"].SSLSocket)
"""


def test_ssl_is_loaded_by_a_tls_context_and_not_before():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == ("False False _NotLoaded\n"
                           "an OSError\n"
                           "True True True\n")


def test_a_run_without_ssl_loads_no_ssl_in_vinemake_nor_its_worker(tmp_path):
    (tmp_path / "Vinefile").write_text("out: in\n\tcat in > out\n")
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    for content in ("first build\n", "rebuild\n"):
        (tmp_path / "in").write_text(content)
        done = subprocess.run([sys.executable, "-m", "vinemake"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "out").read_text() == content
        imported = [line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
                    if line.startswith("import time:")]
        assert "vinemake.worker.worker" in imported  # the worker's imports are seen too
        assert "ssl" not in imported and "_ssl" not in imported


# Another thread's `import ssl` has begun (a URL fetched through urllib, say): ssl is in
# sys.modules, its classes not yet. The manager's loop met that in an except clause and
# crashed on an AttributeError (a CI-like run of test_urls).
HALF_LOADED = """
import sys, types
from vinemake.wire import tls
sys.modules["ssl"] = types.ModuleType("ssl")
try:
    raise BlockingIOError
except (BlockingIOError, tls.SSLWantReadError):
    print("caught", tls.SSLSocket.__name__)
del sys.modules["ssl"]
import ssl
print(tls.SSLWantReadError is ssl.SSLWantReadError)
"""


def test_ssl_half_loaded_by_another_thread_is_not_loaded_yet():
    done = subprocess.run([sys.executable, "-c", HALF_LOADED], capture_output=True, text=True,
                          timeout=60)
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "caught _NotLoaded\nTrue\n")
