"""The gate in front of a listening socket: what a peer may hold before it authenticates.

A peer that has not yet proven it knows the secret (or, without a password, not yet finished
its handshake) may hold at most `per_host` connections, and all such peers together at most
`total`; a connection over either cap is closed the moment it is accepted, so it never costs
a thread. Each admitted handshake has `deadline_s` in all, however slowly its peer sends (one
byte every few seconds would renew any per-read timeout forever): one watchdog thread shuts
down the socket of a handshake past its deadline, which ends the blocked read in the thread
serving it. Bytes are bounded by the protocol (MAX_HANDSHAKE_FRAME per message).
"""

from __future__ import annotations

import collections
import heapq
import itertools
import os
import socket
import threading
import time

__all__ = ["Gate", "Pass", "MAX_WAITING", "MAX_WAITING_PER_HOST"]

MAX_WAITING = 64  # handshakes in progress at once, from everyone
MAX_WAITING_PER_HOST = 16  # from any one address


class Pass:
    """An admitted handshake; `done()` when it ended (however), so it counts no more, and
    before its socket is closed (the watchdog may cut it until then)."""

    def __init__(self, gate: Gate, host: str, sock: socket.socket):
        # The descriptor, not the object: wrapping in TLS detaches the object it was given.
        self._gate, self.host, self._fd = gate, host, sock.fileno()
        self.expired = False
        self._open = True

    def done(self) -> None:
        self._gate._release(self)


class Gate:
    """Admits handshakes within the caps; expires the ones that take too long."""

    def __init__(self, deadline_s: float, total: int = MAX_WAITING,
                 per_host: int = MAX_WAITING_PER_HOST, clock=time.monotonic):
        self.deadline_s, self.total, self.per_host = deadline_s, total, per_host
        self.clock = clock
        self._lock = threading.Condition()
        self._by_host: collections.Counter[str] = collections.Counter()
        self._open = 0
        self._deadlines: list[tuple[float, int, Pass]] = []
        self._order = itertools.count()
        self._closed = False
        self._watchdog = threading.Thread(target=self._watch, name="handshake-deadlines",
                                          daemon=True)
        self._watchdog.start()

    @property
    def waiting(self) -> int:
        """Handshakes in progress now."""
        with self._lock:
            return self._open

    def admit(self, sock: socket.socket, host: str) -> Pass | None:
        """A Pass for this new connection, or None when a cap is reached (the caller closes
        it: the peer sees the connection end, and a worker then retries later)."""
        with self._lock:
            if self._open >= self.total or self._by_host[host] >= self.per_host:
                return None
            p = Pass(self, host, sock)
            self._open += 1
            self._by_host[host] += 1
            heapq.heappush(self._deadlines, (self.clock() + self.deadline_s, next(self._order), p))
            self._lock.notify()
            return p

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()

    def _release(self, p: Pass) -> None:
        with self._lock:
            if not p._open:
                return
            p._open = False
            self._open -= 1
            self._by_host[p.host] -= 1
            if not self._by_host[p.host]:
                del self._by_host[p.host]

    def _watch(self) -> None:
        with self._lock:
            while not self._closed:
                while self._deadlines and not self._deadlines[0][2]._open:
                    heapq.heappop(self._deadlines)  # ended in time
                if not self._deadlines:
                    self._lock.wait()
                    continue
                due, _, p = self._deadlines[0]
                left = due - self.clock()
                if left > 0:
                    self._lock.wait(left)
                    continue
                heapq.heappop(self._deadlines)
                p.expired = True
                _cut(p._fd)


def _cut(fd: int) -> None:
    """End a blocked read on socket `fd` (at end of file), TLS or not. Only shut down, through
    a duplicate: its owner closes it after done(), so the number is still that socket's."""
    try:
        with socket.socket(fileno=os.dup(fd)) as dup:
            dup.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
