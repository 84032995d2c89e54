"""A real HTTP server for URL sources in tests and benchmarks: documents that change, fail,
come slowly or only when the test lets them, and a count of every request.

In a test it runs on a thread (`serve`); inside a network namespace, or for a benchmark, it
runs as its own process (`python3 tests/docserver.py DIR --port-file F --log F`), serving the
files of DIR and writing one line per request (`METHOD PATH STATUS BYTES`) to the log.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import http.server
import os
import sys
import threading
import time


class Documents:
    """What the server serves, changeable while it runs, and what it was asked."""

    def __init__(self, directory: str | None = None, log: str | None = None):
        self.docs: dict[str, bytes] = {}
        self.errors: dict[str, int] = {}  # path -> HTTP status it always answers
        self.slow: dict[str, float] = {}  # path -> seconds between the headers and the body
        self.held: dict[str, threading.Event] = {}  # path -> set when its body may go
        self.bare: set[str] = set()  # paths served without any validator
        self.directory = directory
        self.fallback = None  # path -> bytes, for any path not served otherwise
        self.requests: collections.Counter = collections.Counter()  # (method, path) -> n
        self.sent = 0  # body bytes sent, all paths
        self.lock = threading.Lock()
        self._log = open(log, "a", buffering=1) if log else None

    def count(self, method: str, path: str) -> int:
        with self.lock:
            return self.requests[method, path]

    def note(self, method: str, path: str, status: int, size: int) -> None:
        with self.lock:
            self.requests[method, path] += 1
            self.sent += size
            if self._log is not None:
                self._log.write(f"{method} {path} {status} {size}\n")

    def body(self, path: str) -> bytes | None:
        if path in self.docs:
            return self.docs[path]
        if self.directory is not None:
            full = os.path.join(self.directory, path.lstrip("/"))
            if os.path.isfile(full):
                with open(full, "rb") as f:
                    return f.read()
        return self.fallback(path) if self.fallback is not None else None


def handler_for(documents: Documents):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_HEAD(self):  # noqa: N802 (http.server's naming)
            self._answer(send_body=False)

        def do_GET(self):  # noqa: N802
            self._answer(send_body=True)

        def _answer(self, send_body: bool) -> None:
            path = self.path
            status = documents.errors.get(path)
            if status is not None:
                documents.note(self.command, path, status, 0)
                self.send_error(status)
                return
            data = documents.body(path)
            if data is None:
                documents.note(self.command, path, 404, 0)
                self.send_error(404)
                return
            if path in documents.bare:
                self._bare(data, send_body)
                return
            etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
            if self.headers.get("If-None-Match") == etag:
                documents.note(self.command, path, 304, 0)
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if send_body:
                held = documents.held.get(path)
                if held is not None:
                    self.wfile.flush()
                    held.wait()
                delay = documents.slow.get(path)
                if delay:
                    self.wfile.flush()
                    time.sleep(delay)
                self.wfile.write(data)
            documents.note(self.command, path, 200, len(data) if send_body else 0)

        def _bare(self, data: bytes, send_body: bool) -> None:
            """No ETag, no Last-Modified, no length: the body ends with the connection."""
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            if send_body:
                self.wfile.write(data)
            documents.note(self.command, self.path, 200, len(data) if send_body else 0)

        def log_message(self, *args) -> None:
            pass

    return Handler


def serve(documents: Documents, host: str = "127.0.0.1", port: int = 0):
    """Start serving on a thread: (server, base URL). Call server.shutdown() when done."""
    server = http.server.ThreadingHTTPServer((host, port), handler_for(documents))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("directory")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    args = p.parse_args(argv)
    server = http.server.ThreadingHTTPServer(
        (args.host, 0), handler_for(Documents(args.directory, args.log)))
    server.daemon_threads = True
    with open(args.port_file + ".tmp", "w") as f:
        f.write(f"{server.server_address[1]}\n")
    os.replace(args.port_file + ".tmp", args.port_file)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
