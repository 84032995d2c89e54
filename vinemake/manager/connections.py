"""The manager's connections to its workers: frames read in, messages queued and flushed.

Reads land in one buffer kept for the loop, and every frame must be a control message (file
bytes travel between file servers, never here). Messages to a worker are queued and leave
once per turn of the loop (`flush_all`), so a burst of Runs goes in one send, as one Runs
message; a worker whose socket cannot take more is watched for writability until its buffer
drains. A broken or garbled connection loses the worker (`lose`, the manager's).
"""

from __future__ import annotations

import logging
import selectors
import time
from collections.abc import Callable, Mapping

from vinemake.manager.workers import ConnectedWorker
from vinemake.wire import tls
from vinemake.wire.protocol import MSG, ProtocolError, Run, batch, decode, encode

__all__ = ["Connections"]

log = logging.getLogger("vinemake.manager")


class Connections:
    """Reads and writes on every worker's socket (the manager's loop thread only)."""

    def __init__(self, sel: selectors.BaseSelector, workers: Mapping[str, ConnectedWorker],
                 handle: Callable[[ConnectedWorker, object], None],
                 lose: Callable[[ConnectedWorker, str], None],
                 clock: Callable[[], float] = time.monotonic):
        self.sel = sel
        self.workers = workers  # live ones: a record not in here was lost
        self.handle = handle  # one decoded message from a worker
        self.lose = lose  # the connection to a worker broke (why)
        self.clock = clock  # when a worker was last heard from (heartbeats)
        self._dirty: list[ConnectedWorker] = []
        self._rbuf = bytearray(1 << 20)
        self._rview = memoryview(self._rbuf)

    def add(self, w: ConnectedWorker) -> None:
        w.sock.setblocking(False)
        self.sel.register(w.sock, selectors.EVENT_READ, w)

    def close(self, w: ConnectedWorker) -> None:
        try:
            self.sel.unregister(w.sock)
        except (KeyError, ValueError):
            pass
        w.sock.close()

    def read(self, w: ConnectedWorker) -> None:
        try:
            # Into a buffer kept for the loop: recv(1 MiB) would map and unmap a fresh 1 MiB
            # object on every read, most of the manager's CPU per small message.
            n = w.sock.recv_into(self._rbuf)
            data = self._rview[:n].tobytes()
            if isinstance(w.sock, tls.SSLSocket):
                while w.sock.pending():
                    data += w.sock.recv(w.sock.pending())
        except (BlockingIOError, tls.SSLWantReadError):
            return
        except OSError as e:
            self.lose(w, f"connection error: {e}")
            return
        if not data:
            self.lose(w, "connection closed")
            return
        w.heard = self.clock()
        try:
            for kind, payload in w.reader.feed(data):
                if kind != MSG:
                    raise ProtocolError("unexpected data frame")
                if self.workers.get(w.id) is not w:
                    return  # lost while handling an earlier frame: the rest is moot
                try:
                    self.handle(w, decode(payload))
                except (TypeError, ValueError, KeyError, AttributeError) as e:
                    # well-formed JSON with ill-typed fields: as bad as garbage
                    raise ProtocolError(f"garbled {payload[:40]!r}: {e}") from None
        except ProtocolError as e:
            log.warning("closing connection to worker %s: %s", w.id, e)
            self.lose(w, str(e))

    def send(self, w: ConnectedWorker, msg) -> None:
        """Queue a message; the loop flushes once per turn, so a burst leaves in one send,
        and the Runs of one turn go as one message (the worker decodes one, not one each)."""
        if not w.outbuf and not w.runs:
            self._dirty.append(w)
        if isinstance(msg, Run):
            w.runs.append(msg)
            return
        self._seal(w)  # in order: a Kill or Drop after a Run follows it
        w.outbuf += encode(msg)

    @staticmethod
    def _seal(w: ConnectedWorker) -> None:
        if w.runs:
            w.outbuf += encode(batch(w.runs))
            w.runs.clear()

    def flush_all(self) -> None:
        dirty, self._dirty = self._dirty, []
        for w in dirty:
            self.flush(w)

    def flush(self, w: ConnectedWorker) -> None:
        if self.workers.get(w.id) is not w:
            return
        self._seal(w)
        try:
            while w.outbuf:
                n = w.sock.send(w.outbuf)
                del w.outbuf[:n]
        except (BlockingIOError, tls.SSLWantWriteError):
            pass
        except OSError as e:
            self.lose(w, f"send failed: {e}")
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if w.outbuf else 0)
        if w.events != events:
            self.sel.modify(w.sock, events, w)
            w.events = events
