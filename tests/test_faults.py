"""Nothing lost, nothing corrupted, no traceback: real vinemake runs against faults (issue 15)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vinemake.common.names import MAX_NAME, fit, flat, quoted


def vinemake(root, *args, timeout=60, **kw):
    return subprocess.run([sys.executable, "-m", "vinemake", *args], cwd=root,
                          capture_output=True, text=True, timeout=timeout, **kw)


def no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr


# -- 12: long rule names ------------------------------------------------------------------------

LONG = "数" * 60 + ".txt"
DEEP = "/".join(["d" * 40] * 6) + "/" + "x" * 200 + ".txt"


@pytest.mark.parametrize("local", ["", "LOCAL "], ids=["remote", "local"])
@pytest.mark.parametrize("target", [LONG, "a" * 300, DEEP], ids=["cjk", "300", "deep"])
def test_a_failing_rule_with_a_long_name_leaves_its_info_record(tmp_path, target, local):
    mkdir = f"mkdir -p {os.path.dirname(target)}; " if "/" in target else ""
    (tmp_path / "Vinefile").write_text(f"{target}:\n\t{local}{mkdir}echo half > {target}; "
                                       f"echo oops >&2; exit 3\n")
    proc = vinemake(tmp_path)
    no_traceback(proc)
    assert proc.returncode == 1
    where = tmp_path / ".vinemake" / "failed" / quoted(target)
    assert (where / "INFO").read_text().splitlines()[0] == f"rule: {target}"
    if len(os.path.basename(target)) <= 255:  # else no filesystem lets the command make it
        assert (where / flat(target)).read_text() == "half\n"
        assert not os.path.lexists(tmp_path / target)
    assert f"(see {where}/INFO)" in proc.stderr


def test_fitted_names_keep_a_readable_head_and_differ_by_a_hash():
    assert fit("short.txt") == "short.txt"
    a, b = fit("数" * 100 + "a"), fit("数" * 100 + "b")
    assert a != b and a.startswith("数" * 40) and len(a.encode()) <= MAX_NAME
    head = quoted("数" * 60).rsplit("-", 1)[0]
    assert head.startswith("%E6%95%B0") and len(head) % 3 == 0  # no escape cut in half
    assert flat("sub/x.txt") == "sub_x.txt"
