"""Children that die with vinemake: a kernel request (PR_SET_PDEATHSIG) made before exec.

A process vinemake starts on this machine (a LOCAL command, the -T local worker) must not
outlive it: after a kill -9 of vinemake nothing else would stop it, and it would keep working
(and writing under .vinemake/) while the next run starts. Linux sends the child a chosen
signal when the thread that started it dies, which covers kill -9. The request is made in the
child before exec, so these few processes are started with fork rather than vfork.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: the caller's own stopping must do
    _prctl = None


def die_with_parent(parent: int, signal: int) -> Callable[[], None] | None:
    """A preexec_fn: the child gets `signal` when `parent` (os.getpid() of the caller) dies."""
    if _prctl is None:
        return None

    def arm() -> None:
        _prctl(_PR_SET_PDEATHSIG, signal, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request was in place
            os._exit(128 + signal)
    return arm
