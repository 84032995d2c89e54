"""One run or clean at a time per workflow directory: an flock on `.vinemake/lock`.

Two vinemakes in one directory would interleave their journal lines, each compact the
journal under the other, and race to place the same outputs. The lock is flock(2), so the
kernel drops it when its holder dies however it dies (kill -9 included): there is never a
stale lock to remove by hand. A `MAKEFLOW` sub-workflow runs as a child vinemake in the same
directory; it finds the lock's path in its environment and runs under its parent's lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, MutableMapping

from vinemake.common.errors import VinemakeError

__all__ = ["workflow_lock", "Busy", "HELD_ENV"]

HELD_ENV = "VINEMAKE_HELD_LOCK"  # the lock a parent vinemake holds for its sub-workflows


class Busy(VinemakeError):
    """Another vinemake is running in this workflow directory."""


@contextlib.contextmanager
def workflow_lock(state_dir: str, environ: MutableMapping[str, str] = os.environ
                  ) -> Iterator[None]:
    """Hold the directory's lock for the block; Busy at once if another vinemake holds it."""
    path = os.path.abspath(os.path.join(state_dir, "lock"))
    if environ.get(HELD_ENV) == path:
        yield  # a sub-workflow of the run holding it
        return
    os.makedirs(state_dir, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    before = environ.get(HELD_ENV)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(_busy_message(fd, os.path.dirname(os.path.dirname(path)))) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        environ[HELD_ENV] = path
        yield
    finally:
        if before is None:
            environ.pop(HELD_ENV, None)
        else:
            environ[HELD_ENV] = before
        os.close(fd)  # closing the last descriptor releases the flock


def _busy_message(fd: int, root: str) -> str:
    pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
    who = f" (pid {pid})" if pid.isdigit() else ""
    return (f"another vinemake{who} is running in {root}; wait for it to finish or stop it "
            f"(its lock goes with it, even after kill -9)")
