"""How the command line's process ends: at once, when skipping the clean-up loses nothing."""

from __future__ import annotations

import atexit
import os
import sys
import threading

__all__ = ["leave"]


def leave(code: int) -> None:
    """Exit with `code`, skipping the interpreter's clean-up when nothing is left to write.

    That clean-up takes every module and object apart one by one, a visible part of a short
    run (docs/performance.md, "Fixed cost of a run"), and is needed only for what is not yet
    written: here the exit handlers run (logging's closes its files), stdout and stderr are
    flushed, and every file vinemake itself writes was closed before its command returned.
    A thread still working (not a daemon) is waited for as ever, through the ordinary exit,
    which also takes over when a flush fails, to report it as it always has.
    """
    if any(t.is_alive() and not t.daemon and t is not threading.main_thread()
           for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()  # runs each handler once: the list is empty afterwards
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):  # a closed pipe or a closed stream
        sys.exit(code)
    os._exit(code)
