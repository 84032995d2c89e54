"""`vinemake status [DIR]`: what the run going on in DIR is doing, printed like `vine_status`.

It lists the workers, the rules running and waiting, and the transfers in flight. The run's
status page (statuspage.py) records where it listens in the state directory; this
asks it for status.json and prints it under the page's address. When no run there serves a
page (none is going on, or it was started without --status-port), the newest run's recorded
events are shown instead, and the first line says so. `status_text` is pure.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

from vinemake.common.errors import InputError
from vinemake.common.process import still_running
from vinemake.core.events import iter_events, runs
from vinemake.core.statedir import StateDir
from vinemake.face.runview import human_bytes, run_view
from vinemake.wire.protocol import read_secret

__all__ = ["show_status", "status_text", "find_page", "page_url", "fetch", "MAX_ROWS"]

MAX_ROWS = 20  # rows of each list; the rest is counted


def find_page(root: str) -> dict | None:
    """Where the run going on in `root` serves its status page, or None."""
    try:
        with open(StateDir(root).status, encoding="utf-8") as f:
            where = json.load(f)
        ident = where.get("process") or str(where["pid"])  # older records: the pid alone
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return where if still_running(str(ident)) else None  # a run killed -9 left it stale


def page_url(where: dict) -> str:
    """The address of the status page recorded as `where`."""
    return f"http://{_host(where['host'])}:{where['port']}/"


def fetch(url: str, secret: bytes | None, timeout: float = 10.0) -> dict:
    """The view the status page at `url` serves now."""
    request = urllib.request.Request(url + "status.json")
    if secret is not None:
        request.add_header("Authorization",
                           "Basic " + base64.b64encode(b"vinemake:" + secret).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        if e.code == 401:
            raise InputError("this run's status page needs its password "
                             "(vinemake status --password FILE)") from None
        raise InputError(f"the status page answered {e.code} {e.reason}") from None


def _host(host: str) -> str:
    if host in ("0.0.0.0", ""):  # every interface: this machine's is one of them
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def show_status(root: str, password_file: str | None = None, width: int = 100) -> str:
    """The text `vinemake status` prints for the workflow in `root`, no line over `width`."""
    where = find_page(root)
    if where is not None:
        url = page_url(where)
        try:
            view = fetch(url, read_secret(password_file))
        except OSError:
            pass  # the run ended between reading the record and asking
        else:
            return _cut(f"live page: {url}", width) + "\n" + status_text(view, width)
    recorded = runs(root)
    if not recorded:
        raise InputError(f"no run recorded in {StateDir(root).runs} (run the workflow first)")
    view = run_view(iter_events(StateDir(root).events(recorded[-1])))
    return (_cut("(no run serves its status here; the last run recorded)", width) + "\n"
            + status_text(view, width))


def status_text(view: dict, width: int = 100) -> str:
    """The view as vine_status-like text, no line longer than `width`."""
    run, s = view["run"], view["summary"]
    counts = s["counts"]
    elapsed = s["duration_s"]
    lines = [f"run {run.get('id') or '?'} of {run.get('vinefile') or '?'}"
             f"{' on ' + run['host'] if run.get('host') else ''}: {s['outcome']}"
             f"{f', {elapsed:.1f} s' if elapsed is not None else ''}",
             f"rules: ran {counts.get('ran', 0)}, restored {counts.get('restored', 0)}, "
             f"up to date {counts.get('skipped', 0)}, failed {counts.get('failed', 0)}, "
             f"withdrawn {counts.get('withdrawn', 0)}; running {s['running']}, "
             f"waiting {s['waiting']}"]
    now = (run.get("end") or 0) - (run.get("start") or 0)
    lines += _table(f"workers {len(view['workers'])}",
                    ("WORKER", "HOST", "CORES", "MEMORY", "DISK", "TASKS", "RUNNING", "CACHE"),
                    [(w["id"], w["host"] or "", _n(w["cores"]), _mb(w["memory_mb"]),
                      _mb(w["disk_mb"]), str(w["tasks"]), str(w["running"]),
                      human_bytes(w["cache_bytes"])) for w in view["workers"]])
    lines += _table(f"running {len(view['running'])}", ("RULE", "WORKER", "FOR"),
                    [(r["label"], r["worker"] or "", _secs(now - r["since"]))
                     for r in view["running"]])
    lines += _table(f"waiting {len(view['waiting'])}", ("RULE", "WAITING"),
                    [(r["label"], _secs(now - r["since"] if r["since"] is not None else None))
                     for r in view["waiting"]])
    t = view["transfers"]
    total = sum(t["by_source"].values())
    lines.append(f"transfers {t['count']}: {human_bytes(total)}" + (" (" + ", ".join(
        f"{src} {human_bytes(n)}" for src, n in sorted(t["by_source"].items())) + ")"
        if t["by_source"] else ""))
    lines += _table(f"in flight {len(view['in_flight'])}", ("FILE", "FROM", "TO", "SIZE", "FOR"),
                    [(m["file"], m["from"], m["to"] or "", human_bytes(m["size"]),
                      _secs(now - m["since"] if m["since"] is not None else None))
                     for m in view["in_flight"]])
    return "".join(_cut(line, width) + "\n" for line in lines)


def _table(title: str, head: tuple, rows: list[tuple]) -> list[str]:
    if not rows:
        return [f"{title}"]
    shown = rows[:MAX_ROWS]
    widths = [max(len(str(r[i])) for r in [head, *shown]) for i in range(len(head))]
    out = [f"{title}:"]
    for row in [head, *shown]:
        cells = (str(c).ljust(w) for c, w in zip(row, widths, strict=True))
        out.append(("  " + "  ".join(cells)).rstrip())
    if len(rows) > MAX_ROWS:
        out.append(f"  ... and {len(rows) - MAX_ROWS} more")
    return out


def _cut(line: str, width: int) -> str:
    return line if len(line) <= width else line[:max(1, width - 3)] + "..."


def _n(x) -> str:
    return "-" if x is None else f"{x:g}"


def _secs(s) -> str:
    return "-" if s is None else f"{max(0.0, s):.1f} s"


def _mb(x) -> str:
    return "-" if x is None else human_bytes(x * 1e6)
