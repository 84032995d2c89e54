"""bench/fleet.py's `spread`: how a many-worker run's tasks went to its workers, read from a
real run's record."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import fleet  # noqa: E402


def test_spread_reads_a_runs_record(tmp_path):
    fleet.null_flow(str(tmp_path), "Vinefile", 3)
    subprocess.run([sys.executable, "-m", "vinemake", "-T", "local", "-j", "1"], cwd=tmp_path,
                   check=True, capture_output=True)
    assert re.fullmatch(r"1 workers ran tasks, all by \d+\.\d\d s; 3/3/3 tasks each "
                        r"\(fewest/median/most\); tail \d+\.\d\d s", fleet.spread(str(tmp_path)))


def test_no_spread_without_a_record(tmp_path):
    fleet.null_flow(str(tmp_path), "Makeflow", 3)
    assert fleet.spread(str(tmp_path)) == ""
