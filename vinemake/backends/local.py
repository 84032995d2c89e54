"""`-T local`: one real `vinemake-worker` process on this machine, offering its resources."""

from __future__ import annotations

import os
import subprocess
import sys

from vinemake.backends import Demand, ManagerAddress, ProviderOptions

__all__ = ["LocalWorkers", "worker_command"]


def worker_command(manager: ManagerAddress, options: ProviderOptions, workdir: str,
                   name: str = "local") -> list[str]:
    """The command line of a worker for `manager`; resources left out are the machine's own."""
    r = options.worker_resources
    cmd = [sys.executable, "-m", "vinemake.worker.cli", manager.host, str(manager.port),
           "--workdir", workdir, "--name", name,
           "--timeout", f"{options.worker_timeout_s:g}"]
    for flag, value in (("--cores", r.cores), ("--memory", r.memory_mb),
                        ("--disk", r.disk_mb), ("--gpus", r.gpus)):
        if value is not None:
            cmd += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    if manager.password_file:
        cmd += ["--password", manager.password_file]
    if manager.ssl:
        cmd.append("--ssl")
    return cmd


class LocalWorkers:
    """Starts the worker when the manager listens; stops it when the workflow ends.

    The worker never leaves for being idle (a long LOCAL rule would otherwise starve the
    workflow); if the manager dies it gives up reconnecting after the worker timeout.

    The worker's workdir is taken from the `workdir` entry of ProviderOptions.extra, else
    `.vinemake/worker`, so `@cache forever` entries survive between runs of the workflow.
    """

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def start(self, manager: ManagerAddress, options: ProviderOptions) -> None:
        workdir = os.path.abspath(dict(options.extra).get("workdir", ".vinemake/worker"))
        self.proc = subprocess.Popen(worker_command(manager, options, workdir) +
                                     ["--no-idle-exit"], stdin=subprocess.DEVNULL)

    def scale(self, demand: Demand) -> None:
        """One worker with the whole machine is already the most this backend offers."""

    def close(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
