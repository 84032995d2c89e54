"""Headless Chromium over the DevTools protocol: load a page, collect its script errors, read it.

Tests use it as a person's browser: `Browser.open(url)` waits for the page's load event, every
uncaught exception and console error is kept in `errors`, `evaluate` runs JavaScript in the
page, `screenshot` saves a PNG and `colours` counts the distinct colours in one (by drawing it
on a canvas in the same browser, so no image library is needed).
"""

from __future__ import annotations

import base64
import itertools
import json
import queue
import subprocess
import threading
import time
import urllib.request

import websocket
from conftest import require_tool

STARTUP_S = 60  # a cold Chromium on a busy 2-core machine


class BrowserError(Exception):
    pass


class Browser:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, profile_dir, width: int = 1400, height: int = 1000):
        exe = require_tool("chromium")
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--disable-background-networking",
             f"--user-data-dir={profile_dir}", "--remote-debugging-port=0",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        found: queue.Queue = queue.Queue()
        threading.Thread(target=self._drain, args=(found,), daemon=True).start()
        try:
            browser_url = found.get(timeout=STARTUP_S)
        except queue.Empty:
            self.close()
            raise BrowserError("chromium did not start: " + "".join(self.log[-20:])) from None
        port = browser_url.split(":")[2].split("/")[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"],
                                              suppress_origin=True, timeout=STARTUP_S)
        self._ids = itertools.count(1)
        self.events: list[dict] = []
        self.errors: list[str] = []
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.call(f"{domain}.enable")

    def _drain(self, found: queue.Queue) -> None:
        for line in self.proc.stderr:
            self.log.append(line)
            if line.startswith("DevTools listening on "):
                found.put(line.split(" on ", 1)[1].strip())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)

    # --- the protocol ---------------------------------------------------------------------

    def call(self, method: str, **params) -> dict:
        """Send one command and return its result; events met meanwhile are kept."""
        mid = next(self._ids)
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = self._receive()
            if msg.get("id") == mid:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def _receive(self) -> dict:
        msg = json.loads(self.ws.recv())
        if "method" in msg:
            self.events.append(msg)
            self._note_error(msg)
        return msg

    def _note_error(self, msg: dict) -> None:
        method, params = msg["method"], msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = params["exceptionDetails"]
            text = d.get("exception", {}).get("description") or d.get("text")
            self.errors.append(f"uncaught: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append("console.error: " + " ".join(
                str(a.get("value", a.get("description"))) for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(f"log: {params['entry']['text']}")

    def wait_event(self, method: str, timeout: float = STARTUP_S) -> dict:
        deadline = time.monotonic() + timeout
        seen = len(self.events)
        while time.monotonic() < deadline:
            for msg in self.events[seen:]:
                if msg["method"] == method:
                    return msg
            seen = len(self.events)
            self._receive()
        raise BrowserError(f"no {method} within {timeout} s")

    # --- what a test does -----------------------------------------------------------------

    def open(self, url: str, headers: dict | None = None) -> float:
        """Load `url` and wait for its load event; the seconds from navigation to load."""
        if headers:
            self.call("Network.setExtraHTTPHeaders", headers=headers)
        self.events.clear()
        started = time.monotonic()
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")
        return time.monotonic() - started

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = STARTUP_S):
        """Evaluate `expression` until it is truthy (the page's own work, not a fixed wait)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise BrowserError(f"{expression} still false after {timeout} s")

    def screenshot(self, path) -> bytes:
        """A PNG of the whole page, saved to `path`."""
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png",
                                          captureBeyondViewport=False)["data"])
        with open(path, "wb") as f:
            f.write(data)
        return data

    def colours(self, png: bytes) -> int:
        """How many distinct colours the PNG holds (1 for a blank picture)."""
        url = "data:image/png;base64," + base64.b64encode(png).decode()
        return self.evaluate(f"""(async () => {{
            const img = new Image(); img.src = {json.dumps(url)}; await img.decode();
            const c = document.createElement("canvas");
            c.width = img.width; c.height = img.height;
            const g = c.getContext("2d"); g.drawImage(img, 0, 0);
            const px = new Uint32Array(g.getImageData(0, 0, c.width, c.height).data.buffer);
            return new Set(px).size;
        }})()""")
