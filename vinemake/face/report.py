"""`vinemake report`: one self-contained HTML page of a run, made from its recorded events.

The page is report.html (beside this module) with the run's view (runview.py) and Plotly's
JavaScript inlined, so it opens with no network. Plotly is read from the `plotly` package at
report time (the `report` extra): a kept plotting library instead of hand-drawn charts. The
live status page (statuspage.py) serves the same page, which then polls for its data.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from importlib import resources

from vinemake.common.errors import InputError
from vinemake.core.events import iter_events, runs
from vinemake.core.statedir import StateDir
from vinemake.face.runview import run_view

__all__ = ["render", "page", "plotly_js", "write_report", "newest_run"]

_MARKS = re.compile(r"(<!--PLOTLY-->|/\*LIVE\*/false|/\*DATA\*/null)")


def plotly_js() -> str:
    """Plotly's minified JavaScript, as the installed `plotly` package ships it."""
    try:
        return (resources.files("plotly") / "package_data" / "plotly.min.js").read_text(
            encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        raise InputError("the report and the status page need plotly: "
                         "pip install 'vinemake[report]'") from None


def _template() -> str:
    return (resources.files("vinemake.face") / "report.html").read_text(encoding="utf-8")


def render(view: dict | None, js: str, template: str, live: bool = False) -> str:
    """The page: `template` with `js` and the `view` as JSON put where it marks them."""
    # `<` escaped in the data and `</script` in the library: neither can end the script.
    data = json.dumps(view, separators=(",", ":")).replace("<", "\\u003c")
    fills = {"<!--PLOTLY-->": "<script>" + js.replace("</script", "<\\/script") + "</script>",
             "/*LIVE*/false": "true" if live else "false",
             "/*DATA*/null": data}
    return "".join(fills.get(part, part) for part in _MARKS.split(template))


def page(view: dict | None, live: bool = False) -> str:
    """The report page of `view` (or the live page, which fetches its view)."""
    return render(view, plotly_js(), _template(), live)


def newest_run(root: str) -> str:
    """The run-id of the newest run recorded under `root`."""
    recorded = runs(root)
    if not recorded:
        raise InputError(f"no run recorded in {StateDir(root).runs} (run the workflow first)")
    return recorded[-1]


def write_report(root: str, out: str, run_id: str | None = None) -> dict:
    """Write the report of run `run_id` (the newest) of the workflow in `root` to `out`;
    returns the view it shows."""
    if run_id is None:
        run_id = newest_run(root)
    elif run_id not in runs(root):
        raise InputError(f"no run {run_id} recorded in {StateDir(root).runs} "
                         f"(vinemake history lists them)")
    view = run_view(iter_events(StateDir(root).events(run_id)))
    html = page(view)
    tmp = f"{out}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(html)
        os.replace(tmp, out)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # a disk that filled up keeps no half page
        raise InputError(f"cannot write the report {out}: {e.strerror}") from None
    return view
