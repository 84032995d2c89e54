"""Workers joining the manager: the handshake, and what the manager learns from it.

A handshake blocks (authentication, maybe TLS), so each runs in a short-lived thread of its
own, and a client that connects and says nothing cannot stall the manager's loop; the loop
then adopts the newcomer (`Manager._adopt`) under a name no live worker has. How many
handshakes may wait, and for how long, is the gate's (vinemake.wire.gate).
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
import time
from collections.abc import Callable, Container, Iterable
from typing import TYPE_CHECKING

from vinemake.common.records import dataclass
from vinemake.common.spec import Resources
from vinemake.wire.gate import Pass
from vinemake.wire.protocol import (
    Connection,
    Hello,
    ProtocolError,
    Refuse,
    check_tls,
    resources_from_wire,
    server_handshake,
    tune,
)

if TYPE_CHECKING:
    import ssl

__all__ = ["Newcomer", "Refusals", "handshake", "unique_name", "largest"]

log = logging.getLogger("vinemake.manager")


@dataclass(frozen=True)
class Newcomer:
    """A worker that passed the handshake, not yet adopted by the loop."""

    sock: socket.socket
    addr: str
    hello: Hello
    resources: Resources
    file_port: int


class Refusals:
    """Which refused connections are worth a line: a port scan or a misconfigured client
    retrying would otherwise fill the terminal with the same sentence.

    The first refusal of each (address, reason) is said; the same again within `quiet_s` is
    only counted, and the count rides on its next line or on `flush` at the manager's end.
    Called from the handshake threads, hence the lock."""

    def __init__(self, quiet_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.quiet_s, self.clock = quiet_s, clock
        self._last: dict[tuple[str, str], float] = {}
        self._held: collections.Counter = collections.Counter()
        self._lock = threading.Lock()

    def note(self, addr: str, why: str) -> str | None:
        """The line to log for this refusal, or None when it is only counted."""
        key, now = (addr, why), self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.quiet_s:
                self._held[key] += 1
                return None
            self._last[key] = now
            return _refusal_line(key, self._held.pop(key, 0))

    def flush(self) -> list[str]:
        """Lines for the refusals counted and not said yet."""
        with self._lock:
            held, self._held = self._held, collections.Counter()
        return [_refusal_line(key, n, since=False) for key, n in sorted(held.items())]


def _refusal_line(key: tuple[str, str], held: int, since: bool = True) -> str:
    line = f"refused connection from {key[0]}: {key[1]}"
    if held:
        line += f" ({held} more like it{' since' if since else ''} not shown)"
    return line


def handshake(sock: socket.socket, addr: str, secret: bytes | None,
              ssl_context: ssl.SSLContext | None, admitted: Pass,
              refusals: Refusals, closing: Callable[[], bool] = lambda: False
              ) -> Newcomer | None:
    """Authenticate a client that connected (blocking, within the gate's deadline); None when
    it is refused (logged as `refusals` decides, and not at all once `closing()`: the
    manager's own end cut it, e.g. its local worker stopped as it was joining)."""
    conn = None
    newcomer = None
    why = ""
    try:
        sock.setblocking(True)
        tune(sock)
        check_tls(sock, ssl_context)
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(sock, server_side=True)
        conn = Connection(sock)
        hello = server_handshake(conn, secret)
        if hello.role != "worker":
            conn.send(Refuse(f"this is a manager; role {hello.role!r} is not served here"))
            raise ProtocolError(f"unexpected role {hello.role!r}")
        newcomer = Newcomer(sock, addr, hello, resources_from_wire(hello.resources),
                            hello.file_port)
    except (ProtocolError, OSError, EOFError) as e:  # ssl's errors are OSErrors
        why = str(e) or type(e).__name__
    finally:
        admitted.done()  # before the socket is closed: the gate may cut it until then
    if newcomer is None:
        if admitted.expired:
            why = "the handshake took longer than its time limit"
        line = None if closing() else refusals.note(addr, why)
        if line is not None:
            log.warning("%s", line)
        if conn is not None:
            conn.close()  # its buffered reader holds the socket open otherwise
        sock.close()
    return newcomer


def unique_name(base: str, taken: Container[str], counts: collections.Counter) -> str:
    """`base`, or `base#n` while a live worker has that name: two workers stay apart."""
    name = base
    while name in taken:
        counts[base] += 1
        name = f"{base}#{counts[base]}"
    return name


def largest(totals: Iterable[Resources]) -> Resources | None:
    """The most of each resource any one worker offers (None without workers)."""
    ws = list(totals)
    if not ws:
        return None
    return Resources(cores=max(r.cores or 0 for r in ws),
                     memory_mb=max(r.memory_mb or 0 for r in ws),
                     disk_mb=max(r.disk_mb or 0 for r in ws),
                     gpus=max(r.gpus or 0 for r in ws))
