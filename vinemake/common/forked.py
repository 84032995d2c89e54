"""A child forked from this process to run a function (no new interpreter), watched like a Popen.

Forking skips what an exec'd Python pays before its first line: the interpreter's start, the
site packages, and every module the two processes share. It is safe only while this process
runs one thread (a lock another thread holds at the fork stays held in the child for ever),
so `fork_child` declines otherwise and the caller starts a fresh interpreter instead.

The child leaves through os._exit: never through the parent's frames, `finally` blocks or
exit handlers, which are the parent's to run.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from typing import IO

from vinemake.common.lifeline import die_with_parent

__all__ = ["ForkedChild", "fork_child"]


class ForkedChild:
    """The parts of subprocess.Popen's interface its users need, for a forked pid."""

    def __init__(self, pid: int, stdin: IO[bytes]):
        self.pid = pid
        self.stdin = stdin
        self.returncode: int | None = None
        self._waiting = threading.Lock()  # one waitpid at a time (a reaper thread may wait)

    def poll(self) -> int | None:
        if self.returncode is None and self._waiting.acquire(blocking=False):
            try:
                self._reap(os.WNOHANG)
            finally:
                self._waiting.release()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if timeout is not None and self.returncode is None and not _exits_within(self.pid,
                                                                                  timeout):
            raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
        with self._waiting:
            if self.returncode is None:
                self._reap(0)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _reap(self, flags: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:  # reaped by someone else: its status is lost
            self.returncode = 255
            return
        if pid:
            self.returncode = os.waitstatus_to_exitcode(status)


def _exits_within(pid: int, timeout: float) -> bool:
    """Whether `pid` (still a zombie or running, not reaped) exits within `timeout` s."""
    try:
        fd = os.pidfd_open(pid)
    except ChildProcessError:
        return True
    except (AttributeError, OSError):  # no pidfds: look now and then
        return _polled_exit(pid, timeout)
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def _polled_exit(pid: int, timeout: float) -> bool:
    event = threading.Event()
    for _ in range(max(1, int(timeout / 0.01))):
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True
        event.wait(0.01)
    return False


def fork_child(run: Callable[[int], int], death_signal: int,
               ignored: tuple[int, ...] = ()) -> ForkedChild | None:
    """A child running `run(fd)` and exiting with its status, `fd` the read end of a pipe
    whose write end is the returned child's stdin; `death_signal` reaches it when this
    process dies (even by kill -9). The child starts with the signals `ignored` ignored and
    every other at its default, as an exec'd process would (this process's Python handlers
    are not its own). None when forking is not safe here (see above)."""
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return None
    arm = die_with_parent(os.getpid(), death_signal)
    read, write = os.pipe()  # both close on exec: no command the child starts inherits them
    for stream in (sys.stdout, sys.stderr):  # else both processes would print what is buffered
        _flush(stream)
    # Blocked across the fork: a signal reaching the child before its handlers are reset
    # would run this process's handler there (Ctrl-C: a KeyboardInterrupt in the child).
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                _reset_signals(ignored)
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                status = _child(run, read, write, arm)
            finally:
                os._exit(status)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    os.close(read)
    return ForkedChild(pid, os.fdopen(write, "wb"))


def _reset_signals(ignored: tuple[int, ...]) -> None:
    for sig in signal.valid_signals():
        try:
            if sig in ignored:
                signal.signal(sig, signal.SIG_IGN)
            elif callable(signal.getsignal(sig)):
                signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL, SIGSTOP and the real-time ones Python skips
            pass


def _child(run: Callable[[int], int], read: int, write: int, arm) -> int:
    status = 1
    try:
        os.close(write)
        if arm is not None:
            arm()
        gc.freeze()  # what the parent built is never the child's to scan (nor to copy)
        status = run(read)
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 (said as an interpreter would, then the exit)
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            _flush(stream)
    return status


def _flush(stream) -> None:
    try:
        stream.flush()
    except (OSError, ValueError, AttributeError):  # closed or replaced: nothing to flush
        pass
