"""Report benchmark: how big the HTML report of a large run is, and how fast a browser opens it.

    python bench/report.py                    # a real 10,000-rule run (-T local), its report
    python bench/report.py --rules 1000 --opens 5 --workdir /dev/shm/r

Runs a workflow of N tiny rules (chains of 100) for real, times `vinemake report`, then opens
the page in headless Chromium (tests/chromium.py) --opens times, each in a fresh profile (a
first visit: nothing cached) and then again in the same one (a second visit). For each it
prints the browser's own clocks: when the summary and tables were drawn (before Plotly is
compiled: the template's `data-shown` mark), when every section was (its `data-t` mark), when
the load event ended, and the script errors seen (none expected).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from chromium import Browser  # noqa: E402  (tests/ holds the browser driver)


def workflow(n: int) -> str:
    return "".join(f"out/{i}.txt:{f' out/{i - 1}.txt' if i % 100 else ''}\n"
                   f"\techo {i} > out/{i}.txt\n" for i in range(n))


def vinemake(root: str, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vinemake", *args], cwd=root, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def open_page(browser: Browser, path: str) -> str:
    browser.open("about:blank")
    browser.open("file://" + path)
    browser.wait_for("document.body.dataset.rendered")
    nav = json.loads(browser.evaluate(
        "JSON.stringify(performance.getEntriesByType('navigation')[0].toJSON())"))
    drawn = float(browser.evaluate("document.body.dataset.t").split()[1])
    shown = float(browser.evaluate("document.body.dataset.shown"))
    return (f"summary and tables {shown / 1000:.2f} s, all drawn {drawn / 1000:.2f} s, load event "
            f"{nav['loadEventEnd'] / 1000:.2f} s, errors {browser.errors or 'none'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", type=int, default=10_000)
    ap.add_argument("--opens", type=int, default=3)
    ap.add_argument("--workdir", help="where to build (default: a temporary directory)")
    args = ap.parse_args()
    root = args.workdir or tempfile.mkdtemp(prefix="vinemake-report-")
    os.makedirs(os.path.join(root, "out"), exist_ok=True)
    with open(os.path.join(root, "Vinefile"), "w") as f:
        f.write(workflow(args.rules))
    print(f"{args.rules} rules in {root}; load average {os.getloadavg()[0]:.1f}")
    print(f"run: {vinemake(root):.1f} s")
    page = os.path.join(root, "report.html")
    print(f"vinemake report: {vinemake(root, 'report', '-o', page):.2f} s, "
          f"{os.path.getsize(page) / 1e6:.2f} MB")
    for i in range(args.opens):
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile, \
                Browser(profile) as browser:
            print(f"open {i + 1}, first visit:  {open_page(browser, page)}")
            print(f"open {i + 1}, second visit: {open_page(browser, page)}")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
