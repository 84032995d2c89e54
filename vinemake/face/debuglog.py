"""`-d SUBSYSTEM` and `-o FILE`: vinemake's log messages, named by Makeflow's debug subsystems.

vinemake's components log through Python's logging under `vinemake.<part>`; without -d only
warnings reach stderr. `-d` turns on everything a subsystem says (Makeflow's names map onto
vinemake's parts below) and `-o` sends it, and the warnings, to a file instead of stderr
(`:stderr` and `:stdout` as Makeflow spells them).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from vinemake.common.errors import InputError

__all__ = ["SUBSYSTEMS", "configure"]

# Makeflow subsystem -> vinemake's loggers. wq/vine are Work Queue's and TaskVine's manager
# sides, which vinemake's manager is; batch is how workers are started. Each part's own
# logger is turned on (not "vinemake" itself, whose level a run sets for its notices).
_PARTS = ("vinemake.manager", "vinemake.backends", "vinemake.worker", "vinemake.core",
          "vinemake.face")
SUBSYSTEMS = {
    "all": _PARTS,
    "makeflow": _PARTS,
    "wq": ("vinemake.manager",),
    "vine": ("vinemake.manager",),
    "batch": ("vinemake.backends",),
}

FORMAT = "%(asctime)s vinemake[%(process)d] %(name)s: %(message)s"


def configure(subsystems: Iterable[str], file: str | None) -> None:
    """Turn on the loggers of `subsystems` and send vinemake's messages to `file`."""
    subsystems = tuple(subsystems)
    if not subsystems and file is None:
        return
    if file is None or file == ":stderr":
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    elif file == ":stdout":
        handler = logging.StreamHandler(sys.stdout)
    else:
        try:
            handler = logging.FileHandler(file, encoding="utf-8")
        except OSError as e:
            raise InputError(f"-o {file}: {e.strerror}") from None
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger("vinemake")
    root.addHandler(handler)
    root.propagate = False  # not printed twice by Python's last-resort handler
    root.setLevel(logging.WARNING)
    for name in subsystems:
        for logger in SUBSYSTEMS[name]:
            logging.getLogger(logger).setLevel(logging.DEBUG)
