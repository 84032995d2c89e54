"""`-T workers`: start nothing; print how to start workers by hand and wait for them."""

from __future__ import annotations

import sys

from vinemake.backends import Demand, ManagerAddress, ProviderOptions
from vinemake.backends.batch import reachable_host

__all__ = ["ByHandWorkers"]


class ByHandWorkers:
    owns_workers = False  # their owners start them, and they outlive the run
    def __init__(self, out=None) -> None:
        self.out = out or sys.stderr

    def start(self, manager: ManagerAddress, options: ProviderOptions) -> None:
        extra = (f" --password {manager.password_file}" if manager.password_file else "") + \
                (" --ssl" if manager.ssl else "")
        # Listening on every interface: name this machine as workers elsewhere can reach it
        # (never "localhost", which getfqdn() answers on many hosts with a real name).
        host = reachable_host(manager.host)
        print(f"vinemake: waiting for workers; start them with:\n"
              f"    vinemake-worker {host} {manager.port}{extra}", file=self.out)

    def scale(self, demand: Demand) -> None:
        """Workers come and go as their owners decide."""

    def close(self) -> None:
        """Workers started by hand leave on their own --timeout."""
