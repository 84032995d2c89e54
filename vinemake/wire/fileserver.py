"""Files over the wire: hashing, streaming files and directories as DATA frames, fetch, push.

A file travels as FileHead(key, size), DATA frames, FileEnd(hash): the receiver hashes what it
got (xxh3_128) and checks it against the sender's hash and, when the manager knows it, against the
hash the producing worker recorded. The frames and messages themselves live in wire/protocol.py.

Cut-through forwarding: a worker still receiving a file can already serve it. `recv_file` reports
its progress to a `Growing`; a server handed a Growing sends FileHead as soon as the size is
known, follows the file as it grows, and sends FileEnd only once the whole file has arrived and
passed its own checks. If the upstream transfer fails, the forwarded one is cut off without a
FileEnd, so its receiver fails too and tries another source: a forwarded copy is never trusted
more than the copy it came from.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import xxhash

from vinemake.common.hashing import hash_tree
from vinemake.wire import tls
from vinemake.wire.gate import Gate, Pass
from vinemake.wire.protocol import (
    CHUNK,
    DATA,
    HANDSHAKE_TIMEOUT_S,
    HEADER,
    Connection,
    FileEnd,
    FileHead,
    Get,
    ProtocolError,
    Put,
    Refuse,
    Stored,
    check_tls,
    client_handshake,
    connect,
    decode,
    new_hello,
    server_handshake,
    tune,
    welcome_for,
)

if TYPE_CHECKING:
    import ssl

# A received frame is written and reported in pieces of this size, and a file still arriving
# is forwarded in frames of at least this size: the wire's floor is 64 KiB, and each hop of a
# cut-through pipeline delays the bytes by one piece (a CHUNK would add its time on the link
# once per hop).
PIECE = 256 * 1024
# A forward is paced at this much above the fastest rate its own copy has been arriving at,
# measured over windows of PACE_WINDOW_S, the last PACE_WINDOWS of them: it cannot send
# faster than its bytes arrive for long anyway, and the bursts an unpaced sender makes when
# each piece lands overflow its link's queue (see docs/performance.md, Cluster).
PACE_HEADROOM = 1.25
PACE_WINDOW_S = 0.25
PACE_WINDOWS = 8


class _FrameWriter:
    """A file-like sink that sends what is written as DATA frames of CHUNK bytes."""

    def __init__(self, conn: Connection, h):
        self.conn, self.h, self.buf = conn, h, bytearray()

    def write(self, data) -> int:
        self.buf += data
        while len(self.buf) >= CHUNK:
            self._send(bytes(self.buf[:CHUNK]))
            del self.buf[:CHUNK]
        return len(data)

    def flush_all(self) -> None:
        if self.buf:
            self._send(bytes(self.buf))
            self.buf.clear()

    def _send(self, chunk: bytes) -> None:
        self.h.update(chunk)
        self.conn.send_raw(HEADER.pack(len(chunk), DATA) + chunk)


def send_file(conn: Connection, key: str, path: str) -> int:
    """Stream one file (a directory as a tar stream, size -1); the trailing hash is of the
    bytes actually sent."""
    h = xxhash.xxh3_128()
    if os.path.isdir(path):
        import tarfile  # here: only a directory travels as a tar stream

        conn.send(FileHead(key, -1))
        sink = _FrameWriter(conn, h)
        with tarfile.open(fileobj=sink, mode="w|") as tar:
            tar.add(path, arcname=".")
        sink.flush_all()
        conn.send(FileEnd(h.hexdigest()))
        return 0
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        conn.send(FileHead(key, size))
        buf = memoryview(bytearray(min(CHUNK, size)))
        sent = 0
        while sent < size and (n := f.readinto(buf[:min(CHUNK, size - sent)])):
            # The hash is of these bytes; the socket gets the same range from the page cache
            # (sendfile: no copies through Python). Should the file change in between, the
            # receiver's hash of what came is not this one, and the copy fails.
            h.update(buf[:n])
            conn.send_raw(HEADER.pack(n, DATA), more=True)
            _send_bytes(conn, f.fileno(), sent, n, key, buf[:n])
            sent += n
    if sent != size:
        raise ProtocolError(f"{key} shrank while being sent")
    conn.send(FileEnd(h.hexdigest()))
    return size


def recv_file(conn: Connection, key: str, dest: str, expected_hash: str = "",
              progress: Growing | None = None) -> tuple[int, str]:
    """Receive one file (or directory) into `dest`; (size, content hash).

    ProtocolError if the bytes are not what the sender sent or not what was recorded.
    `progress` hears the size and every chunk as it lands, so the file can be forwarded early.
    """
    head = conn.recv(FileHead)
    if head.key != key:
        raise ProtocolError(f"asked for {key}, got {head.key}")
    h = xxhash.xxh3_128()
    got = 0
    stream = head.size < 0
    path = dest + ".tar" if stream else dest
    piece = memoryview(bytearray(PIECE))
    # Unbuffered: a piece is visible to a forwarding reader as soon as it is written.
    with open(path, "wb", buffering=0) as f:
        if progress is not None:
            progress.begin(head.size, path)
        while stream or got < head.size:
            kind, length = conn.recv_head()
            if kind != DATA:
                if stream:
                    end = decode(conn.recv_payload(length))
                    if not isinstance(end, FileEnd):
                        raise ProtocolError(f"{key}: unexpected {end.TYPE} in a directory")
                    break
                raise ProtocolError(f"{key}: message inside file data")
            # A frame lands piece by piece, each hashed and written from one buffer, so a
            # forwarding reader hears of every PIECE without waiting for the whole frame.
            while length:
                view = piece[:min(length, PIECE)]
                conn.read_into(view)
                h.update(view)
                if f.write(view) != len(view):
                    raise OSError(f"{key}: short write to {path} (disk full?)")
                got += len(view)
                length -= len(view)
                if progress is not None:
                    progress.advance(len(view))
    if progress is not None:
        progress.all_in(h.hexdigest())
    if not stream:
        end = conn.recv(FileEnd)
    if end.hash != h.hexdigest():
        raise ProtocolError(f"corrupt transfer of {key}: bytes do not match the sender's hash")
    if stream:
        got, digest = _untar(dest, key)
    else:
        digest = h.hexdigest()
    if expected_hash and digest != expected_hash:
        raise ProtocolError(f"corrupt transfer of {key}: content hash {digest} is not the "
                            f"recorded {expected_hash}")
    return got, digest


def _untar(dest: str, key: str) -> tuple[int, str]:
    """Unpack the received stream at dest + '.tar' into directory `dest`, nothing outside."""
    import tarfile  # here: only a directory travels as a tar stream

    try:
        with tarfile.open(dest + ".tar", mode="r:") as tar:
            os.mkdir(dest)
            # "data": no absolute names, no '..', no links out, no devices.
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise ProtocolError(f"corrupt transfer of {key}: {e}") from None
    finally:
        os.unlink(dest + ".tar")
    return hash_tree(dest)


# ---------------------------------------------------------------- cut-through forwarding

class ArrivalRate:
    """How fast a file arrives: bytes per second over the last few windows, the fastest of
    them, and the pace a forward of it may keep. Pure: the caller gives the clock."""

    def __init__(self, now: float):
        self._mark = (now, 0)  # the current window's start: time, bytes received by then
        self._rates: deque[float] = deque(maxlen=PACE_WINDOWS)

    def note(self, now: float, received: int) -> None:
        start, before = self._mark
        if now - start >= PACE_WINDOW_S:
            self._rates.append((received - before) / (now - start))
            self._mark = (now, received)

    def pace(self) -> int | None:
        """Bytes per second a forward may send at; None (unpaced) until a window is over."""
        if not self._rates:
            return None
        return max(1, round(PACE_HEADROOM * max(self._rates)))


class Growing:
    """A file still arriving here, which readers may forward while it grows.

    The receiving side calls begin → advance … → all_in, then finish(ok) once its checks are
    done; readers call head, read and verified. Every holder of a reference (the receiver,
    each reader) releases it once, and the read descriptor closes with the last one, so a
    reader keeps its bytes even after the file is renamed into the cache or removed.
    """

    def __init__(self, key: str, stall_s: float = 120.0):
        self.key = key
        self.size: int | None = None  # from FileHead; -1: a directory's tar stream
        self.received = 0
        self.arrived = False  # every byte is in; the checks may still be running
        self.hash = ""  # of the bytes received, as they came (a directory's tar stream)
        self.ok: bool | None = None  # the verdict of the checks, once known
        self.reason = ""
        self._fd: int | None = None
        self._users = 1
        self._cond = threading.Condition()
        self._stall_s = stall_s
        self._rate = ArrivalRate(time.monotonic())

    def begin(self, size: int, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        with self._cond:
            self.size, self._fd = size, fd
            self._rate = ArrivalRate(time.monotonic())
            self._cond.notify_all()

    def advance(self, n: int) -> None:
        with self._cond:
            self.received += n
            self._rate.note(time.monotonic(), self.received)
            self._cond.notify_all()

    def pace(self) -> int | None:
        """Bytes per second to forward at now: paced to the arrival while the file still
        arrives, unpaced (None) once all of it is here."""
        with self._cond:
            return None if self.arrived else self._rate.pace()

    def all_in(self, digest: str) -> None:
        with self._cond:
            self.arrived, self.hash = True, digest
            self._cond.notify_all()

    def finish(self, ok: bool, reason: str = "") -> None:
        """The receiver is done (ok: the whole file passed its checks); drops its reference."""
        with self._cond:
            self.ok, self.reason = ok, reason
            self._cond.notify_all()
        self.release()

    def acquire(self) -> bool:
        """Take a reader's reference; False once the file failed or nobody holds it."""
        with self._cond:
            if self._users == 0 or self.ok is False:
                return False
            self._users += 1
            return True

    def release(self) -> None:
        with self._cond:
            self._users -= 1
            if self._users == 0 and self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def head(self) -> int:
        with self._cond:
            self._wait(lambda: self.size is not None)
            return self.size

    def ready(self, offset: int, most: int = CHUNK) -> int:
        """How many bytes from `offset` to send next: what has landed, up to `most`, once
        that is at least PIECE, or the rest once all is in (0 at the end). A frame is never
        shorter than PIECE however the file trickles in, and each hop holds a byte back
        only until a PIECE of it has landed."""
        with self._cond:
            self._wait(lambda: self.received - offset >= PIECE or self.arrived)
            return min(most, self.received - offset)

    def fileno(self) -> int:
        """The read descriptor (valid while the caller holds a reference)."""
        assert self._fd is not None
        return self._fd

    def verified(self) -> str:
        """The hash of the bytes received, once they passed the receiver's checks."""
        with self._cond:
            self._wait(lambda: self.ok is not None)
            return self.hash

    def _wait(self, ready: Callable[[], bool]) -> None:
        # Called with the lock held. A failed upstream cuts every forward of it off.
        while True:
            if self.ok is False:
                raise ProtocolError(f"{self.key}: the transfer it is forwarded from failed: "
                                    f"{self.reason}")
            if ready():
                return
            if not self._cond.wait(self._stall_s):
                raise ProtocolError(f"{self.key}: the transfer it is forwarded from stalled")


def send_growing(conn: Connection, key: str, g: Growing) -> int:
    """Forward a file still arriving: pieces as they land, FileEnd once it arrived intact.

    The FileEnd hash is the one this side computed over the bytes as they came in, so a copy
    damaged on this side's disk fails at the next hop. The bytes go from the page cache to the
    socket with sendfile (no copy through Python) unless the connection is TLS, paced to the
    rate the file arrives at (Growing.pace) until all of it is here.
    """
    size = g.head()
    conn.send(FileHead(key, size))
    sent = 0
    while frame := _next_frame(g, sent, size):
        # A file's size is known: its frames are whole CHUNKs announced ahead, each sent a
        # piece at a time as the pieces land (one header a CHUNK, not one a piece). Should
        # the copy upstream fail, this one is cut off inside a frame, which fails it too.
        conn.send_raw(HEADER.pack(frame, DATA), more=True)
        end = sent + frame
        while sent < end:
            if not (n := g.ready(sent, end - sent)):
                raise ProtocolError(f"{key} shrank while being forwarded")
            conn.pace(g.pace())
            _send_bytes(conn, g.fileno(), sent, n, key)
            sent += n
    conn.send(FileEnd(g.verified()))
    return sent


def _next_frame(g: Growing, sent: int, size: int) -> int:
    """The length of the next DATA frame a forward sends (0: no more): the rest of a file up
    to a CHUNK; for a directory's tar stream, of unknown length, what has landed."""
    if size >= 0:
        return min(CHUNK, size - sent)
    return g.ready(sent)


def _send_bytes(conn: Connection, fd: int, offset: int, n: int, key: str,
                read: memoryview | None = None) -> None:
    """`n` bytes of `fd` from `offset` to the connection (`read`: they, read already)."""
    if isinstance(conn.sock, tls.SSLSocket):  # TLS encrypts in user space: no sendfile
        conn.send_raw(os.pread(fd, n, offset) if read is None else read)
    else:
        _send_range(conn.sock, fd, offset, n, key)


def _send_range(sock: socket.socket, fd: int, offset: int, n: int, key: str) -> None:
    """`n` bytes of `fd` from `offset` to a plain socket with sendfile, straight from the page
    cache. os.sendfile itself, not socket.sendfile: that one makes a selector, an fstat and a
    seek for every call, and a forward calls it for every piece."""
    end = offset + n
    while offset < end:
        try:
            k = os.sendfile(sock.fileno(), fd, offset, end - offset)
        except BlockingIOError:  # a socket with a timeout is non-blocking underneath
            _wait_writable(sock)
            continue
        if k == 0:
            raise ProtocolError(f"{key} shrank while being sent")
        offset += k


def _wait_writable(sock: socket.socket) -> None:
    """Until `sock` can take more bytes; TimeoutError after its timeout, as its send would."""
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    timeout = sock.gettimeout()
    if not poller.poll(None if timeout is None else timeout * 1000):
        raise TimeoutError("timed out")


class Arrivals:
    """The files this side is receiving now, by key, so its file server can forward them."""

    def __init__(self):
        self._cond = threading.Condition()
        self._files: dict[str, Growing] = {}

    def start(self, key: str) -> Growing:
        g = Growing(key)
        with self._cond:
            self._files[key] = g
            self._cond.notify_all()
        return g

    def end(self, g: Growing, ok: bool, reason: str = "") -> None:
        with self._cond:
            if self._files.get(g.key) is g:
                del self._files[g.key]
        g.finish(ok, reason)

    def find(self, key: str) -> Growing | None:
        """The file `key` as it arrives, with a reference the caller must release."""
        with self._cond:
            g = self._files.get(key)
        return g if g is not None and g.acquire() else None

    def wait(self, timeout: float) -> None:
        """Until a new arrival starts, or timeout seconds."""
        with self._cond:
            self._cond.wait(timeout)


def fetch(host: str, port: int, key: str, dest: str, secret: bytes | None,
          ssl_context: ssl.SSLContext | None = None, expected_hash: str = "",
          progress: Growing | None = None) -> tuple[int, str]:
    """Get one file from a file server (a peer worker or the manager) into `dest`."""
    conn = connect(host, port, ssl_context, timeout=60.0)
    try:
        client_handshake(conn, new_hello("fetch"), secret)
        conn.send(Get(key))
        return recv_file(conn, key, dest, expected_hash, progress)
    finally:
        conn.close()


class FileServer:
    """Serves files by key to authenticated clients, at most `limit` at once; one thread each.

    `resolve(key)` gives the local path of a file this side may serve, a Growing for one still
    arriving (the server releases it when done), or None.
    `on_error(reason)` hears why a connection was dropped (for the log).
    """

    def __init__(self, host: str, resolve: Callable[[str], str | Growing | None],
                 secret: bytes | None,
                 ssl_context: ssl.SSLContext | None = None, limit: int = 3,
                 on_error: Callable[[str], None] = lambda reason: None,
                 accept: Callable[[str], tuple[str, str] | None] | None = None,
                 on_stored: Callable[[str, int, str | None], None] = lambda *a: None,
                 gate: Gate | None = None):
        # accept(key) -> (destination path, expected hash) for an upload this side awaits;
        # on_stored(key, size, error) hears how it went (error None when it arrived intact).
        self._accept = accept
        self._on_stored = on_stored
        self._resolve = resolve
        self._secret = secret
        self._ssl = ssl_context
        self._on_error = on_error
        self.set_limit(limit)
        self._gate = gate or Gate(HANDSHAKE_TIMEOUT_S)
        self._listener = socket.create_server((host, 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        self._accepting = threading.Thread(target=self._accept_loop, name="file-server",
                                           daemon=True)
        self._accepting.start()


    def set_limit(self, limit: int) -> None:
        """Serve at most `limit` transfers at once from now on (a worker learns the
        manager's --transfer-limit when it joins). Transfers already going keep their slot
        of the old limit."""
        self.slots = threading.BoundedSemaphore(max(1, limit))
    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                sock, addr = self._listener.accept()
            except OSError:
                return
            admitted = self._gate.admit(sock, addr[0])
            if admitted is None:  # too many handshakes waiting: the peer retries
                sock.close()
                continue
            threading.Thread(target=self._serve, args=(sock, admitted), daemon=True).start()

    def _serve(self, sock: socket.socket, admitted: Pass) -> None:
        conn = None
        try:
            try:
                sock.settimeout(HANDSHAKE_TIMEOUT_S)
                tune(sock)
                check_tls(sock, self._ssl)
                if self._ssl is not None:
                    sock = self._ssl.wrap_socket(sock, server_side=True)
                conn = Connection(sock)
                hello = server_handshake(conn, self._secret)
                conn.send(welcome_for(hello, self._secret))
            finally:
                admitted.done()
            sock.settimeout(120.0)
            while True:
                try:
                    get = conn.recv(Get, Put)
                except EOFError:
                    return
                if isinstance(get, Put):
                    self._store(conn, get.key)
                    continue
                path = self._resolve(get.key)  # a file, or a directory sent as tar
                if path is None:
                    conn.send(Refuse(f"no such file: {get.key}"))
                    return
                if isinstance(path, Growing):
                    try:
                        with self.slots:
                            send_growing(conn, get.key, path)
                    finally:
                        path.release()
                    continue
                with self.slots:
                    send_file(conn, get.key, path)
        except (ProtocolError, OSError, EOFError) as e:  # ssl's errors are OSErrors
            self._on_error(f"file server: {e}")
        finally:
            if conn is not None:
                conn.close()
            else:
                sock.close()

    def _store(self, conn: Connection, key: str) -> None:
        wanted = self._accept(key) if self._accept is not None else None
        if wanted is None:
            conn.send(Refuse(f"not expecting {key}"))
            raise ProtocolError(f"unexpected upload of {key}")
        dest, expected = wanted
        conn.send(Put(key))
        try:
            size, _ = recv_file(conn, key, dest, expected)
        except (ProtocolError, OSError, EOFError) as e:
            self._on_stored(key, 0, str(e))
            raise
        conn.send(Stored(key))
        self._on_stored(key, size, None)

    def close(self) -> None:
        """Stop accepting: the port is closed when this returns. (Closing the socket alone
        wakes no accept() blocked on it: the port went on accepting, the thread on waiting.)"""
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # accept() returns, with an error
        if self._accepting is not threading.current_thread():
            self._accepting.join(5)  # (at once: the shutdown woke it)
        self._listener.close()
        self._gate.close()


def push(host: str, port: int, key: str, path: str, secret: bytes | None,
         ssl_context: ssl.SSLContext | None = None) -> int:
    """Upload one file (or directory) to a file server that awaits it; bytes sent."""
    conn = connect(host, port, ssl_context, timeout=60.0)
    try:
        client_handshake(conn, new_hello("push"), secret)
        conn.send(Put(key))
        conn.recv(Put)
        size = send_file(conn, key, path)
        conn.recv(Stored)
        return size
    finally:
        conn.close()
