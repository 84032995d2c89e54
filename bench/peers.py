"""Peer tools for benchmarks (GNU make, ninja, Snakemake, Makeflow): find or install, run, measure.

Benchmarks import this module to run a peer and vinemake the same way: `measure()` starts a
command, waits for it with `os.wait4` and reports its wall time and the kernel's peak resident
set size for it and the descendants it waited for (`ru_maxrss`), so no polling thread competes
for the two cores. Installing uses the ordinary clients (apt-get, pip); Snakemake goes into its
own virtual environment so its many dependencies never touch vinemake's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

__all__ = ["Measurement", "measure", "find_make", "find_ninja", "find_snakemake",
           "find_makeflow", "vinemake_command", "byte_compile_vinemake", "PeerMissing"]

CACHE = os.path.expanduser("~/.cache/vinemake-bench")
SNAKEMAKE_VENV = os.path.join(CACHE, "snakemake-venv")


class PeerMissing(RuntimeError):
    """A peer tool is not installed and could not be installed."""


@dataclass(frozen=True)
class Measurement:
    """One run of a command: wall seconds, peak RSS in MB, exit status (None: timed out).

    `cpu_s` (user + system, the command and its waited-for descendants) drifts less than wall
    time when other work shares the machine.
    """

    wall_s: float
    peak_rss_mb: float
    returncode: int | None
    cpu_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def measure(argv: list[str], cwd: str, timeout: float | None = None,
            env: dict[str, str] | None = None) -> Measurement:
    """Run `argv` in `cwd` with output discarded; time it and take its peak RSS."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        # A timer kills the whole session at the deadline; the blocking wait4 stays exact.
        killer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL)) \
            if timeout else None
        if killer:
            killer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if killer:
            killer.cancel()
        timed_out = killer is not None and wall >= timeout
        proc.returncode = os.waitstatus_to_exitcode(status)
        code = None if timed_out and proc.returncode == -signal.SIGKILL else proc.returncode
        if code != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
            what = "timed out" if code is None else f"exited {code}"
            print(f"  ! {os.path.basename(argv[0])} {what}: {' / '.join(tail)}", file=sys.stderr)
    return Measurement(wall, usage.ru_maxrss / 1024, code, usage.ru_utime + usage.ru_stime)


def _apt_install(*packages: str) -> None:
    if shutil.which("apt-get") is None:
        raise PeerMissing(f"apt-get is not available to install {' '.join(packages)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    if subprocess.run(install, check=False, env=env, stdout=subprocess.DEVNULL).returncode:
        # A fresh container has no package lists yet: fetch them once, then try again.
        subprocess.run(["apt-get", "update"], check=False, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(install, check=False, env=env, stdout=subprocess.DEVNULL)


def find_make() -> str:
    """GNU make, installed with apt-get when missing."""
    if shutil.which("make") is None:
        _apt_install("make")
    return _which("make")


def find_ninja() -> str:
    """ninja, installed with pip when missing."""
    if shutil.which("ninja") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "ninja"], check=False)
    return _which("ninja")


def find_snakemake() -> str:
    """Snakemake from its own virtual environment under ~/.cache, created when missing."""
    exe = os.path.join(SNAKEMAKE_VENV, "bin", "snakemake")
    if not os.path.exists(exe):
        subprocess.run([sys.executable, "-m", "venv", SNAKEMAKE_VENV], check=False)
        pip = os.path.join(SNAKEMAKE_VENV, "bin", "pip")
        subprocess.run([pip, "install", "-q", "snakemake"], check=False)
    if not os.path.exists(exe):
        raise PeerMissing("snakemake could not be installed (pip install snakemake failed)")
    return exe


def find_makeflow() -> str:
    """cctools makeflow; openmpi-bin too, without which it aborts at start (ORTE error)."""
    if shutil.which("makeflow") is None:
        _apt_install("coop-computing-tools", "openmpi-bin")
    return _which("makeflow")


def vinemake_command() -> list[str]:
    """How to start vinemake from this checkout's interpreter."""
    return [sys.executable, "-m", "vinemake"]


def byte_compile_vinemake() -> None:
    """Byte-compile vinemake's modules, as `pip install` does and as any interpreter does on
    a first import unless PYTHONDONTWRITEBYTECODE is set. Some environments set it (this
    project's own sandbox does): then every vinemake and worker process recompiles all its
    modules, ~40 ms each at start-up that no installed copy pays."""
    import compileall

    import vinemake

    compileall.compile_dir(os.path.dirname(os.path.abspath(vinemake.__file__)), quiet=1)


def _which(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PeerMissing(f"{name} is not installed and could not be installed")
    return path


def parse_size(text: str) -> int:
    """A rule or task count as benchmarks take it: 10k, 1M, 2000."""
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * scale)
