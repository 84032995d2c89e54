"""SIGTERM and SIGINT stop the worker without running anything inside a signal handler.

A handler runs on the main thread between two bytecodes, wherever that thread happens to be:
inside a lock, half-way through sending a frame, inside Event.wait. Raising there (SystemExit)
breaks whatever was half done; calling Event.set there takes the Condition lock that the
interrupted Event.wait may itself hold, and the worker hangs until kill -9.

So the handlers do nothing, and Python's own C-level handler writes the signal's number to a
socket pair (signal.set_wakeup_fd, async-signal-safe). The worker serves on another thread;
the main thread only waits on that socket pair, and on a signal asks the worker to stop from
ordinary code, then waits for it to leave through its normal cleanup. Exit status 128 + the
signal's number, as a shell reports a process the signal killed.
"""

from __future__ import annotations

import select
import signal
import socket
import threading
from collections.abc import Callable

__all__ = ["STOP_SIGNALS", "StopSignals"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_SERVED = 0  # written by the serving thread when it returns; no signal has number 0


class StopSignals:
    """While open, SIGTERM and SIGINT only mark a socket pair. Open it on the main thread
    before anything worth cleaning up exists, so no signal finds the default action."""

    def __init__(self) -> None:
        self._recv, self._send = socket.socketpair()
        for s in (self._recv, self._send):
            s.setblocking(False)
        self._old_fd = signal.set_wakeup_fd(self._send.fileno(), warn_on_full_buffer=False)
        self._old = {sig: signal.signal(sig, _nothing) for sig in STOP_SIGNALS}

    def serve(self, serve: Callable[[], int], stop: Callable[[], None]) -> int:
        """serve() on a thread; on a stop signal, stop() on this one, then wait for serve()
        to return. serve()'s status, or 128 + the signal's number; its exception raises here."""
        outcome: list = []
        thread = threading.Thread(target=self._serving, args=(serve, outcome), name="serve")
        thread.start()
        signum = self._wait()
        if signum != _SERVED:
            stop()
        thread.join()
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0] if signum == _SERVED else 128 + signum

    def close(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._old_fd)
        self._recv.close()
        self._send.close()

    def __enter__(self) -> StopSignals:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _serving(self, serve: Callable[[], int], outcome: list) -> None:
        try:
            outcome.append(serve())
        except BaseException as e:  # handed to the main thread, which reports it
            outcome.append(e)
        finally:
            self._send.send(bytes([_SERVED]))

    def _wait(self) -> int:
        """The first byte in the pair: a stop signal's number, or _SERVED."""
        while True:
            select.select([self._recv], [], [])
            try:
                data = self._recv.recv(64)
            except BlockingIOError:
                continue
            for b in data:
                if b == _SERVED or b in STOP_SIGNALS:
                    return b


def _nothing(_signum, _frame) -> None:
    """The work is done by the wakeup descriptor; a handler is still needed, for
    SIG_DFL would end the process and SIG_IGN would never reach the descriptor."""
