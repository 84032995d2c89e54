"""A worker interpreter started before it is needed: it loads first, and learns its job later.

`python -m vinemake.worker.standby` imports the worker's modules, then reads one line from
stdin: {"argv": [...], "env": {...}, "cwd": "..."}, the command line, environment and
directory vinemake-worker would have been started with, and serves as that worker (Ctrl-C,
ignored until then, is the worker's to handle from there on). vinemake starts one as it
begins reading a workflow that may run tasks here, so the worker's start-up overlaps parsing
and planning instead of following them. End of file instead (no worker was needed: a syntax
error, nothing to run) exits at once, having written nothing anywhere.

`forked(fd)` is the same for a child forked from vinemake itself (backends/local.py), which
reads its line from `fd` instead: it skips starting an interpreter and the imports the two
share, and leaves through os._exit, never through the parent's code.
"""

from __future__ import annotations

import signal

# Until claimed, Ctrl-C is vinemake's to handle (the terminal sends it to the standby too): a
# standby interrupted while loading would print a traceback. Set before anything loads (only
# when run: vinemake imports this module for `forked`, and keeps its own Ctrl-C).
if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

__all__ = ["main", "forked"]


def _load() -> None:
    """Import what the worker will need. A failure here is said (and fails) when the worker
    really starts, by the same imports: a standby nobody claims must print nothing."""
    try:
        import vinemake.worker.cli  # noqa: F401
        import vinemake.worker.worker  # noqa: F401
    except BaseException:  # noqa: BLE001 (any failure: see above)
        pass


def main() -> int:
    _load()
    return _serve(sys.stdin.readline())


def forked(fd: int) -> int:
    """In a child forked from vinemake (Ctrl-C ignored, as above): the standby, its line
    read from `fd`."""
    _fresh_logging()
    _load()
    with os.fdopen(fd, "r") as job:
        return _serve(job.readline())


def _fresh_logging() -> None:
    """Logging as a new interpreter has it: vinemake's -d/-o handlers stay vinemake's."""
    import logging

    for logger in [logging.root, *logging.root.manager.loggerDict.values()]:
        if isinstance(logger, logging.Logger):
            logger.handlers.clear()
            logger.setLevel(logging.NOTSET)
            logger.propagate = True
            logger.disabled = False
    logging.root.setLevel(logging.WARNING)


def _serve(line: str) -> int:
    if not line.strip():
        return 0
    job = json.loads(line)
    # From here on, the process vinemake would have started: its directory, environment,
    # and stdin on /dev/null.
    os.chdir(job["cwd"])
    os.environ.clear()
    os.environ.update(job["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the worker's own, from here
    from vinemake.worker.cli import main as worker_main

    sys.argv = ["vinemake-worker", *job["argv"]]
    return worker_main(job["argv"])


if __name__ == "__main__":
    sys.exit(main())
