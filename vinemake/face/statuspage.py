"""The live status page: while a run goes on, its events as a read-only web page and JSON.

`--status-port N` starts a StatusServer in the vinemake process: Python's ThreadingHTTPServer
on a thread of its own, bound to 127.0.0.1 unless `--status-host` names another address. It
serves

    GET /             the report page (report.html), which polls status.json every 2 s
    GET /status.json  the run's view now (runview.run_view of the events so far)

and nothing else; it reads the run's events (handed to it as they are emitted) and changes
nothing. With `--password FILE` every request must carry the file's secret (as the workers
read it: wire.protocol.read_secret) as the password of HTTP basic authentication, with any
user name, so a browser asks for it once. Where it listens is
written to the state directory (StateDir.status) for `vinemake status`, and removed at close.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from vinemake.common.process import identity
from vinemake.face.report import page
from vinemake.face.runview import run_view

__all__ = ["StatusServer", "REALM"]

REALM = "vinemake status"
# A view is rebuilt at most this often, however many pages poll: building one takes the
# interpreter's lock from the manager for a moment per thousand rules.
REBUILD_S = 1.0
# ... and at most a fifth of the time goes into building views: a 10,000-rule run's takes
# long enough that rebuilding every second would slow the run it shows.
BUSY_SHARE = 0.2


class StatusServer:
    """Serves the live page of the events `events()` returns (a growing list)."""

    def __init__(self, events: Callable[[], list], host: str = "127.0.0.1", port: int = 0,
                 secret: bytes | None = None, clock: Callable[[], float] = time.time,
                 record: str | None = None):
        self.events = events
        self.record = record  # where start() says where it listens, for `vinemake status`
        self.secret = secret
        self.clock = clock
        self._page = page(None, live=True).encode("utf-8")
        self._view: tuple[float, float, bytes] | None = None  # built at, good for, JSON
        self._lock = threading.Lock()
        server = _IPv6Server if ":" in host else ThreadingHTTPServer
        self._http = server((host, port), _Handler)
        self._http.daemon_threads = True
        self._http.status = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._http.serve_forever, name="status page",
                                        daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._http.server_address[:2]
        return str(host), int(port)

    def start(self, run_id: str = "") -> StatusServer:
        """Serve from now on; the record names the run `run_id`."""
        self._thread.start()
        if self.record:
            host, port = self.address
            tmp = f"{self.record}.tmp{os.getpid()}"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"host": host, "port": port, "pid": os.getpid(),
                           "process": identity(), "run": run_id}, f)
            os.replace(tmp, self.record)
        return self

    def close(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for a serve_forever() that started
            self._http.shutdown()
            if self.record:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.record)
        self._http.server_close()

    def page(self) -> bytes:
        return self._page

    def view_json(self) -> bytes:
        """The view now, rebuilt at most every REBUILD_S, and less often when building one
        takes long (however many pages ask)."""
        with self._lock:
            now = self.clock()
            if self._view is None or now - self._view[0] >= self._view[1]:
                view = run_view(list(self.events()), now=now)
                data = json.dumps(view, separators=(",", ":")).encode("utf-8")
                done = self.clock()
                self._view = (done, max(REBUILD_S, (done - now) / BUSY_SHARE), data)
            return self._view[2]

    def allowed(self, authorization: str | None) -> bool:
        """Whether a request with this Authorization header may see the page."""
        if self.secret is None:
            return True
        if not authorization or not authorization.startswith("Basic "):
            return False
        try:
            _, _, given = base64.b64decode(authorization[6:], validate=True).partition(b":")
        except ValueError:
            return False
        return hmac.compare_digest(given, self.secret)


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6  # --status-host ::1, or :: for every interface


class _Handler(BaseHTTPRequestHandler):
    server_version = "vinemake-status"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        status: StatusServer = self.server.status  # type: ignore[attr-defined]
        if not status.allowed(self.headers.get("Authorization")):
            self._send(401, b"this run's status needs its password\n", "text/plain",
                       {"WWW-Authenticate": f'Basic realm="{REALM}"'})
        elif self.path in ("/", "/index.html"):
            self._send(200, status.page(), "text/html; charset=utf-8")
        elif self.path.split("?")[0] == "/status.json":
            self._send(200, status.view_json(), "application/json")
        else:
            self._send(404, b"not found\n", "text/plain")

    def _send(self, code: int, body: bytes, kind: str, headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:  # noqa: A002
        pass  # the terminal belongs to the run's reporter
