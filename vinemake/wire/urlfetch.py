"""Fetching a URL source into a file: http, https and file URLs, retried with backoff.

The worker that needs a URL source fetches it with this (a peer that already holds it serves
later workers instead: manager/fetches.py decides). The bytes are hashed as they land, and a
`Growing` hears them too, so peers can forward the document while it still arrives, as for any
transfer (wire/fileserver.py). A failure that may pass (no connection, a timeout, HTTP 5xx,
408, 429) is retried after 0.5 s, 1 s, 2 s; one that will not (404, 403, ...) fails at once.
The error names the URL and the HTTP status or the network's reason.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from vinemake.common.hashing import streaming
from vinemake.wire.protocol import ProtocolError

__all__ = ["UrlFetchError", "fetch_url", "ATTEMPTS", "TIMEOUT_S"]

ATTEMPTS = 4
FIRST_BACKOFF_S = 0.5
TIMEOUT_S = 60.0  # without a byte for this long, an attempt fails
_CHUNK = 1 << 20
_RETRIED_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class UrlFetchError(ProtocolError):
    """A URL could not be fetched; the message says why (HTTP status or network error)."""


def fetch_url(url: str, dest: str, progress=None, attempts: int = ATTEMPTS,
              backoff_s: float = FIRST_BACKOFF_S, timeout_s: float = TIMEOUT_S,
              sleep: Callable[[float], None] = time.sleep,
              stop: threading.Event | None = None) -> tuple[int, str]:
    """Fetch `url` into the file `dest`: (size, xxh3_128 hex digest of its content)."""
    delay = backoff_s
    for attempt in range(1, attempts + 1):
        try:
            return _fetch_once(url, dest, progress, timeout_s)
        except _Retry as e:
            error = e.args[0]
            if attempt == attempts or (stop is not None and stop.is_set()):
                raise UrlFetchError(f"{url}: {error} (after {attempt} attempts)") from None
            sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


class _Retry(Exception):
    """A failure worth another attempt."""


def _fetch_once(url: str, dest: str, progress, timeout_s: float) -> tuple[int, str]:
    # Imported at the first fetch: urllib.request (http.client, ssl, email) is a large share
    # of the start-up of vinemake and of every worker, and most workflows name no URL.
    import urllib.error
    import urllib.request

    try:
        response = urllib.request.urlopen(url, timeout=timeout_s)
    except urllib.error.HTTPError as e:
        status = f"HTTP {e.code} {e.reason}"
        if e.code in _RETRIED_STATUSES:
            raise _Retry(status) from None
        raise UrlFetchError(f"{url}: {status}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        if isinstance(e, ValueError) or (isinstance(e, urllib.error.URLError)
                                         and url.startswith("file://")):
            raise UrlFetchError(f"{url}: {reason}") from None
        raise _Retry(str(reason) or type(e).__name__) from None
    with response:
        length = response.headers.get("Content-Length") if hasattr(response, "headers") else None
        size = int(length) if length and length.isdigit() else None
        h = streaming()
        got = 0
        try:
            with open(dest, "wb", buffering=0) as f:
                if progress is not None and size is not None:
                    progress.begin(size, dest)
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                    h.update(chunk)
                    got += len(chunk)
                    if progress is not None and size is not None:
                        progress.advance(len(chunk))
        except OSError as e:  # the connection broke (or timed out) mid-document
            _remove(dest)
            why = f"the transfer broke after {got} bytes: {e}"
            if progress is not None and size is not None:
                # Peers may be forwarding what came: they fail with it, and so does this try.
                raise UrlFetchError(f"{url}: {why}") from None
            raise _Retry(why) from None
    if size is not None and got != size:
        _remove(dest)
        raise _Retry(f"the server sent {got} of {size} bytes")
    if progress is not None:
        if size is None:  # forwarded only once whole: its size was not known before
            progress.begin(got, dest)
            progress.advance(got)
        progress.all_in(h.hexdigest())
    return got, h.hexdigest()


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
