"""Shared test helpers: what a test needs from the machine, and how its absence is reported."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, settings

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Under CI the property tests draw the same examples every run, so a run passes or fails on
# the code alone: a random draw that finds a new bug fails a developer's run, never a landing
# by chance. `too_slow` is a timing check, which a loaded machine fails with no change at all.
settings.register_profile("ci", derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
if IN_CI:
    settings.load_profile("ci")


def require(condition: bool, what: str) -> None:
    """Skip (with the reason) when `what` is missing; under CI=true a missing tool is a failure.

    CI installs everything the suite needs, so an absence there is a broken set-up, never a pass.
    """
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true but missing")
    pytest.skip(f"{what} is not available here")


def require_tool(name: str) -> str:
    """The path of executable `name`, or skip/fail as `require` does."""
    path = shutil.which(name)
    require(path is not None, f"the '{name}' command")
    return path  # type: ignore[return-value]


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1 and its key: (cert.pem, key.pem)."""
    openssl = require_tool("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key
