"""URL sources: keys from the server's validators, checked once per run, and what was fetched.

A URL source is keyed before anything runs, as every source is, but its bytes are fetched by
the workers that read it, never by this host (unless a LOCAL rule reads it). So its key cannot
be its content's hash: it is the URL plus the validators the server gives for the document
(ETag, Last-Modified, Content-Length), asked once per run with a HEAD request. A changed
document changes its validators, so what reads it reruns; an unchanged one keeps its key.

A server that gives none of the three (a generated page) is checked by a GET whose bytes are
hashed and dropped; the key is then the URL plus that hash. A server that refuses HEAD (405,
501) is asked with a conditional GET instead (If-None-Match / If-Modified-Since from the memo),
so an unchanged document is not sent. A server that answers with an error gets a key naming
the error: the rules reading it then run, and fail with the status their fetch sees.

The memo (`.vinemake/urls`, one JSON object per line) keeps, per URL, the validators, the key
given and the content hash the worker that fetched it computed. `--offline` keys each URL from
the memo without asking the server (a URL never checked is then an input error).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict

from vinemake.common.errors import InputError
from vinemake.common.hashing import ALGORITHM, digest, encode, streaming
from vinemake.common.records import dataclass

__all__ = ["Validators", "check_url", "url_key", "UrlMemo", "CHECK_TIMEOUT_S"]

CHECK_TIMEOUT_S = 30.0
_READ = 1 << 20


@dataclass(frozen=True)
class Validators:
    """What the server says of a document without sending it (or why it said nothing).

    `content` is the hash of the whole document, for a server that gave no validators.
    """

    etag: str = ""
    last_modified: str = ""
    length: str = ""
    content: str = ""
    error: str = ""


Checker = Callable[[str, "Validators | None"], Validators]


def url_key(url: str, v: Validators) -> str:
    """The key of a URL source: the URL and its validators."""
    fields = (url, v.etag, v.last_modified, v.length, v.content, v.error)
    return f"url-{ALGORITHM}-{digest(encode('url', fields))}"


def check_url(url: str, known: Validators | None = None,
              timeout: float = CHECK_TIMEOUT_S) -> Validators:
    """Ask the server for the validators of `url` (`known`: what the memo holds)."""
    if url.startswith("file://"):
        return _check_file(url)
    # Imported when a URL is checked: urllib.request (with http.client, ssl and email) is a
    # large share of vinemake's start-up, and most workflows name no URL.
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"),
                                    timeout=timeout) as r:
            got = _validators(r.headers)
    except urllib.error.HTTPError as e:
        if e.code not in (405, 501):
            return Validators(error=f"HTTP {e.code} {e.reason}")
        return _conditional_get(url, known, timeout)
    except (urllib.error.URLError, OSError, ValueError) as e:
        return Validators(error=_reason(e))
    if got.etag or got.last_modified or got.length:
        return got
    return _conditional_get(url, known, timeout)


def _conditional_get(url: str, known: Validators | None, timeout: float) -> Validators:
    import urllib.error
    import urllib.request

    headers = {}
    if known is not None and known.etag:
        headers["If-None-Match"] = known.etag
    if known is not None and known.last_modified:
        headers["If-Modified-Since"] = known.last_modified
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=timeout) as r:
            got = _validators(r.headers)
            if got.etag or got.last_modified or got.length:
                return got
            h = streaming()
            while chunk := r.read(_READ):
                h.update(chunk)
            return Validators(content=h.hexdigest())
    except urllib.error.HTTPError as e:
        if e.code == 304 and known is not None:
            return known
        return Validators(error=f"HTTP {e.code} {e.reason}")
    except (urllib.error.URLError, OSError, ValueError) as e:
        return Validators(error=_reason(e))


def _check_file(url: str) -> Validators:
    import urllib.request

    path = urllib.request.url2pathname(url[len("file://"):])
    try:
        st = os.stat(path)
    except OSError as e:
        return Validators(error=f"{e.strerror}: {path}")
    return Validators(last_modified=str(st.st_mtime_ns), length=str(st.st_size))


def _validators(headers) -> Validators:
    return Validators(etag=headers.get("ETag", ""),
                      last_modified=headers.get("Last-Modified", ""),
                      length=headers.get("Content-Length", ""))


def _reason(e: Exception) -> str:
    reason = getattr(e, "reason", None)
    return str(reason if reason is not None else e) or type(e).__name__


class UrlMemo:
    """What is known of each URL source: validators, key and fetched content hash."""

    def __init__(self, path: str | None, check: Checker = check_url):
        self.path = path
        self.check = check
        self.entries: dict[str, dict] = _load(path) if path else {}
        self.dirty = False

    def key(self, url: str, offline: bool = False) -> str:
        """The key of `url` this run: checked with the server, or (offline) as recorded."""
        entry = self.entries.get(url)
        if offline:
            if entry is None:
                raise InputError(f"--offline: {url} was never checked with its server, so "
                                 "it has no recorded key (run once without --offline)")
            return entry["key"]
        known = Validators(**entry["validators"]) if entry else None
        v = self.check(url, known)
        key = url_key(url, v)
        if entry is None or entry["key"] != key:
            self.entries[url] = {"validators": asdict(v), "key": key, "hash": ""}
            self.dirty = True
        return key

    def fetched(self, url: str, content_hash: str) -> None:
        """A worker fetched `url` (under the key given this run) and found this content."""
        entry = self.entries.get(url)
        if entry is not None and content_hash and entry["hash"] != content_hash:
            entry["hash"] = content_hash
            self.dirty = True

    def save(self) -> None:
        if not self.dirty or not self.path:
            return
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        tmp = f"{self.path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            for url, entry in sorted(self.entries.items()):
                f.write(json.dumps({"url": url, **entry}, sort_keys=True) + "\n")
        os.replace(tmp, self.path)
        self.dirty = False


def _load(path: str) -> dict[str, dict]:
    entries: dict[str, dict] = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError:
        return entries
    for line in lines:
        try:
            item = json.loads(line)
            Validators(**item["validators"])
            entries[item["url"]] = {"validators": item["validators"], "key": str(item["key"]),
                                    "hash": str(item.get("hash", ""))}
        except (ValueError, KeyError, TypeError):
            continue  # a damaged line: that URL is checked afresh
    return entries

