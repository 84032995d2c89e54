"""One run or clean at a time per workflow directory: an flock on the directory itself.

Two vinemakes in one directory would interleave their journal lines, each compact the
journal under the other, and race to place the same outputs. The lock is flock(2), so the
kernel drops it when its holder dies however it dies (kill -9 included): there is never a
stale lock to remove by hand. It is taken on the workflow directory itself, not on a file in
`.vinemake/`: deleting the state directory during a run (`rm -rf .vinemake`) would take such a
file with it, and a second vinemake would start beside the first. The directory cannot go
while the run is in it. The holder's pid is found in /proc/locks (the kernel's own list), and
is also written to `.vinemake/lock` for systems without it. A `MAKEFLOW` sub-workflow runs
as a child vinemake in the same directory; it finds the lock in its environment and runs
under its parent's lock. A child forked from the holder (its local worker, forked to skip an
interpreter's start) closes its copy at once: the flock belongs to the open file, which the
child would otherwise keep locked after the holder died, refusing the next run meanwhile.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, MutableMapping

from vinemake.common.errors import VinemakeError

__all__ = ["workflow_lock", "Busy", "HELD_ENV"]

HELD_ENV = "VINEMAKE_HELD_LOCK"  # the directory a parent vinemake holds for its sub-workflows

_held: set[int] = set()  # this process's lock descriptors, for a forked child to close


def _close_held_in_child() -> None:
    for fd in _held:
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_held_in_child)


class Busy(VinemakeError):
    """Another vinemake is running in this workflow directory."""


@contextlib.contextmanager
def workflow_lock(state_dir: str, environ: MutableMapping[str, str] = os.environ
                  ) -> Iterator[None]:
    """Hold the directory's lock for the block; Busy at once if another vinemake holds it.

    `state_dir` is the workflow's `.vinemake`; the lock is on the directory holding it."""
    state_dir = os.path.abspath(state_dir)
    root = os.path.dirname(state_dir)
    if environ.get(HELD_ENV) == root:
        yield  # a sub-workflow of the run holding it
        return
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    before = environ.get(HELD_ENV)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(_busy_message(fd, root, state_dir)) from None
        _held.add(fd)
        _note_pid(state_dir)
        environ[HELD_ENV] = root
        yield
    finally:
        if before is None:
            environ.pop(HELD_ENV, None)
        else:
            environ[HELD_ENV] = before
        _held.discard(fd)
        os.close(fd)  # closing the last descriptor releases the flock


def _note_pid(state_dir: str) -> None:
    """Where systems without /proc/locks find the holder (best effort: it is only a name)."""
    with contextlib.suppress(OSError):
        os.makedirs(state_dir, exist_ok=True)
        with open(os.path.join(state_dir, "lock"), "w") as f:
            f.write(f"{os.getpid()}\n")


def _holder(fd: int, state_dir: str) -> str:
    st = os.fstat(fd)
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as f:
            for line in f:
                fields = line.split()
                if "FLOCK" in fields and dev in fields:
                    return fields[fields.index(dev) - 1]
    except OSError:
        pass
    try:
        with open(os.path.join(state_dir, "lock")) as f:
            return f.read(32).strip()
    except OSError:
        return ""


def _busy_message(fd: int, root: str, state_dir: str) -> str:
    pid = _holder(fd, state_dir)
    who = f" (pid {pid})" if pid.isdigit() else ""
    return (f"another vinemake{who} is running in {root}; wait for it to finish or stop it "
            f"(its lock goes with it, even after kill -9)")
