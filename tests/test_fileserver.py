"""Files over the wire: fetch, push, the file server, hashes and the checks on received bytes."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time

import pytest
import xxhash

from vinemake.wire import fileserver as fs
from vinemake.wire import protocol as p


def tcp_pair():
    """Two connected sockets over real TCP on 127.0.0.1 (port 0)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return p.Connection(client), p.Connection(server)


@pytest.fixture
def file_server(tmp_path):
    data = bytes(range(256)) * 1000  # 256 000 bytes: several 64 KiB-or-more chunks
    (tmp_path / "src").write_bytes(data)
    errors = []
    files = {"out-1": str(tmp_path / "src")}
    server = fs.FileServer("127.0.0.1", files.get, b"pw", on_error=errors.append)
    yield server, data, errors
    server.close()


def data_frames(client) -> tuple[list[int], bytes, tuple]:
    """The DATA frames a sender sends next: their sizes, their bytes joined, and the frame
    that ended them (its FileEnd, or what went wrong)."""
    sizes, got = [], b""
    while (frame := client.recv_frame())[0] == p.DATA:
        sizes.append(len(frame[1]))
        got += frame[1]
    return sizes, got, frame


def test_a_file_is_fetched_and_verified(file_server, tmp_path):
    server, data, _ = file_server
    digest = xxhash.xxh3_128_hexdigest(data)
    size, got = fs.fetch("127.0.0.1", server.port, "out-1", str(tmp_path / "dest"), b"pw",
                        expected_hash=digest)
    assert (size, got) == (len(data), digest)
    assert (tmp_path / "dest").read_bytes() == data


def test_a_whole_file_goes_in_chunks_with_the_hash_of_the_bytes_sent(tmp_path):
    # Read once for the hash, sent from the page cache: every chunk's bytes and the hash agree.
    data = os.urandom(2 * fs.CHUNK + 777)
    (tmp_path / "src").write_bytes(data)
    client, server = tcp_pair()
    server.sock.settimeout(30.0)
    small_buffers(client, server)  # the sender waits for room, chunk after chunk
    box = {}
    sender = threading.Thread(target=lambda: box.update(
        sent=fs.send_file(server, "out-1", str(tmp_path / "src"))))
    sender.start()
    assert client.recv(p.FileHead) == p.FileHead("out-1", len(data))
    sizes, got, frame = data_frames(client)
    sender.join(10)
    assert sizes == [fs.CHUNK, fs.CHUNK, 777] and got == data and box == {"sent": len(data)}
    assert p.decode(frame[1]) == p.FileEnd(xxhash.xxh3_128_hexdigest(data))


def test_bytes_that_do_not_match_the_recorded_hash_are_refused(file_server, tmp_path):
    server, data, _ = file_server
    with pytest.raises(p.ProtocolError) as e:
        fs.fetch("127.0.0.1", server.port, "out-1", str(tmp_path / "dest"), b"pw",
                expected_hash="0" * 32)
    digest = xxhash.xxh3_128_hexdigest(data)
    assert str(e.value) == (f"corrupt transfer of out-1: content hash {digest} is not the "
                            f"recorded {'0' * 32}")


def test_a_peer_must_authenticate_to_fetch(file_server, tmp_path):
    server, _, errors = file_server
    with pytest.raises(p.ProtocolError) as e:
        fs.fetch("127.0.0.1", server.port, "out-1", str(tmp_path / "dest"), b"guess")
    assert str(e.value) == "refused: authentication failed: wrong secret"
    assert not (tmp_path / "dest").exists()


def test_an_unknown_key_is_refused(file_server, tmp_path):
    server, _, _ = file_server
    with pytest.raises(p.ProtocolError) as e:
        fs.fetch("127.0.0.1", server.port, "out-404", str(tmp_path / "dest"), b"pw")
    assert str(e.value) == "refused: no such file: out-404"


def test_garbage_to_a_file_server_closes_that_connection_only(file_server, tmp_path):
    server, data, errors = file_server
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert s.recv(100) == b""
    size, _ = fs.fetch("127.0.0.1", server.port, "out-1", str(tmp_path / "dest"), b"pw")
    assert size == len(data)
    assert errors[0].startswith("file server: oversized frame: ")


def test_data_chunks_are_at_least_64_kib():
    assert p.CHUNK >= 64 * 1024


def test_a_directory_travels_as_a_tar_stream_and_is_verified(tmp_path):
    src = tmp_path / "d"
    (src / "sub").mkdir(parents=True)
    (src / "a").write_bytes(b"alpha")
    (src / "sub" / "b").write_bytes(bytes(200_000))
    size, digest = fs.hash_tree(str(src))
    server = fs.FileServer("127.0.0.1", {"out-d": str(src)}.get, None)
    try:
        got = fs.fetch("127.0.0.1", server.port, "out-d", str(tmp_path / "copy"), None,
                      expected_hash=digest)
        with pytest.raises(p.ProtocolError) as e:
            fs.fetch("127.0.0.1", server.port, "out-d", str(tmp_path / "copy2"), None,
                    expected_hash="dir-0")
    finally:
        server.close()
    assert got == (200_005, digest)
    assert (tmp_path / "copy" / "sub" / "b").read_bytes() == bytes(200_000)
    assert str(e.value) == f"corrupt transfer of out-d: content hash {digest} is not the " \
                           "recorded dir-0"


def test_a_tar_stream_cannot_write_outside_its_directory(tmp_path):
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../escaped")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    client, server = tcp_pair()
    data = buf.getvalue()
    server.send(p.FileHead("out-x", -1))
    server.send_raw(struct.pack(">IB", len(data), p.DATA) + data)
    server.send(p.FileEnd(xxhash.xxh3_128_hexdigest(data)))
    (tmp_path / "in").mkdir()
    with pytest.raises(p.ProtocolError) as e:
        fs.recv_file(client, "out-x", str(tmp_path / "in" / "dest"))
    assert str(e.value).startswith("corrupt transfer of out-x: ")
    assert not (tmp_path / "in" / "escaped").exists() and not (tmp_path / "escaped").exists()


def test_an_awaited_upload_is_stored_and_an_unexpected_one_refused(tmp_path):
    (tmp_path / "src").write_bytes(b"payload" * 20_000)
    digest = xxhash.xxh3_128_hexdigest(b"payload" * 20_000)
    stored, errors = [], []
    awaited = {"out-1": (str(tmp_path / "landed"), digest)}
    server = fs.FileServer("127.0.0.1", lambda key: None, b"pw", accept=awaited.get,
                          on_stored=lambda *a: stored.append(a), on_error=errors.append)
    try:
        assert fs.push("127.0.0.1", server.port, "out-1", str(tmp_path / "src"), b"pw") == 140_000
        with pytest.raises(p.ProtocolError) as e:
            fs.push("127.0.0.1", server.port, "out-2", str(tmp_path / "src"), b"pw")
    finally:
        server.close()
    assert (tmp_path / "landed").read_bytes() == b"payload" * 20_000
    assert stored == [("out-1", 140_000, None)]
    assert str(e.value) == "refused: not expecting out-2"


# ---------------------------------------------------------------- cut-through forwarding


def wait_for(condition, what: str, timeout: float = 10.0):
    """Poll until condition() is truthy: readiness, never a timing assertion."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class Feed:
    """The receiving side of a Growing, driven by the test: bytes land when it says so."""

    def __init__(self, tmp_path, key: str, data: bytes):
        self.path = str(tmp_path / f"{key}.arriving")
        self.f = open(self.path, "wb", buffering=0)
        self.data, self.at = data, 0
        self.g = fs.Growing(key, stall_s=10.0)
        self.g.begin(len(data), self.path)

    def land(self, n: int, damage: bool = False) -> None:
        piece = self.data[self.at:self.at + n]
        self.f.write(bytes(len(piece)) if damage else piece)
        self.g.advance(len(piece))
        self.at += n
        if self.at >= len(self.data):
            self.g.all_in(xxhash.xxh3_128_hexdigest(self.data))  # as it came off the wire


def forward_server(feeds: dict, errors: list, tls=None) -> fs.FileServer:
    """A file server whose files are still arriving (a fresh reader reference each ask)."""
    def resolve(key):
        g = feeds[key].g
        return g if g.acquire() else None
    return fs.FileServer("127.0.0.1", resolve, b"pw", tls, on_error=errors.append)


def fetch_in_thread(port: int, key: str, dest: str, progress=None, tls=None):
    box = {}

    def run():
        try:
            box["result"] = fs.fetch("127.0.0.1", port, key, dest, b"pw", tls,
                                     progress=progress)
        except (p.ProtocolError, EOFError) as e:
            box["error"] = e
    t = threading.Thread(target=run)
    t.start()
    return t, box


@contextlib.contextmanager
def forwarding(tmp_path, data: bytes):
    """`data`, arriving as a Feed says, forwarded by a file server to a fetch in a thread:
    (the feed, what the fetch received, its thread, its box, the server's errors); the
    server is closed at the end."""
    feed, errors = Feed(tmp_path, "out-1", data), []
    server = forward_server({"out-1": feed}, errors)
    downstream = fs.Growing("out-1")
    try:
        t, box = fetch_in_thread(server.port, "out-1", str(tmp_path / "copy"), downstream)
        yield feed, downstream, t, box, errors
    finally:
        server.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_file_is_forwarded_while_it_is_still_arriving(tmp_path, request, tls):
    # Under TLS the bytes are encrypted in user space: no sendfile, the forward reads them.
    serving = fetching = None
    if tls:
        cert, key = request.getfixturevalue("certificate")
        serving, fetching = p.server_context(str(cert), str(key)), p.client_context()
    data = os.urandom(5 * fs.CHUNK + 1234)
    feed, errors = Feed(tmp_path, "out-1", data), []
    server = forward_server({"out-1": feed}, errors, serving)
    downstream = fs.Growing("out-1")
    try:
        t, box = fetch_in_thread(server.port, "out-1", str(tmp_path / "copy"), downstream,
                                 fetching)
        feed.land(2 * fs.CHUNK)
        # the first two chunks reach the next hop while the rest has not arrived here yet
        wait_for(lambda: downstream.received == 2 * fs.CHUNK, "the forwarded chunks")
        assert feed.at < len(data)
        feed.land(len(data))
        feed.g.finish(True)
        t.join(10)
    finally:
        server.close()
    assert box == {"result": (len(data), xxhash.xxh3_128_hexdigest(data))}
    assert (tmp_path / "copy").read_bytes() == data
    assert errors == []


def test_a_forward_is_cut_off_when_the_copy_it_follows_fails(tmp_path):
    data = os.urandom(3 * fs.CHUNK)
    with forwarding(tmp_path, data) as (feed, downstream, t, box, errors):
        feed.land(len(data))
        # every byte got through, but the copy they came from fails its checks
        wait_for(lambda: downstream.received == len(data), "the forwarded bytes")
        feed.g.finish(False, "corrupt transfer of out-1: bytes do not match the sender's hash")
        t.join(10)
    assert isinstance(box["error"], EOFError), box
    assert str(box["error"]) == "connection closed"
    assert errors == ["file server: out-1: the transfer it is forwarded from failed: "
                      "corrupt transfer of out-1: bytes do not match the sender's hash"]


def test_forwarded_frames_stay_at_least_a_piece_while_the_file_trickles_in(tmp_path):
    data = os.urandom(2 * fs.CHUNK + 10)
    feed = Feed(tmp_path, "out-1", data)
    client, server = tcp_pair()
    assert feed.g.acquire()  # the reader's reference, as a file server takes one
    sender = threading.Thread(target=fs.send_growing, args=(server, "out-1", feed.g))
    sender.start()
    for _ in range(0, len(data), 40_000):  # 40 KB at a time: less than a piece
        feed.land(40_000)
    feed.g.finish(True)
    assert client.recv(p.FileHead) == p.FileHead("out-1", len(data))
    sizes, got, frame = data_frames(client)
    sender.join(10)
    assert got == data
    # however the bytes trickled in: no frame but the last under a piece, none over a chunk
    assert all(fs.PIECE <= size <= fs.CHUNK for size in sizes[:-1]), sizes
    assert p.decode(frame[1]) == p.FileEnd(xxhash.xxh3_128_hexdigest(data))


def test_a_forwarded_file_goes_in_whole_chunks_announced_before_their_pieces_land(tmp_path):
    # One frame header a chunk, not one a piece: the frame is announced when its first
    # piece lands and its other pieces follow as they land.
    data = os.urandom(2 * fs.CHUNK + 10)
    feed = Feed(tmp_path, "out-1", data)
    client, server = tcp_pair()
    assert feed.g.acquire()
    sender = threading.Thread(target=fs.send_growing, args=(server, "out-1", feed.g))
    sender.start()
    feed.land(fs.PIECE)
    assert client.recv(p.FileHead) == p.FileHead("out-1", len(data))
    assert client.recv_head() == (p.DATA, fs.CHUNK)
    first = memoryview(bytearray(fs.PIECE))
    client.read_into(first)  # the first piece arrives before the rest of its frame landed
    assert bytes(first) == data[:fs.PIECE] and feed.at == fs.PIECE
    feed.land(len(data))
    feed.g.finish(True)
    rest = client.recv_payload(fs.CHUNK - fs.PIECE)
    sizes, got, frame = data_frames(client)
    sizes, got = [fs.CHUNK, *sizes], bytes(first) + rest + got
    sender.join(10)
    assert got == data
    assert sizes == [fs.CHUNK, fs.CHUNK, 10]
    assert p.decode(frame[1]) == p.FileEnd(xxhash.xxh3_128_hexdigest(data))


def test_a_forward_cut_off_inside_a_frame_fails_the_next_hop_with_the_reason(tmp_path):
    data = os.urandom(3 * fs.CHUNK)
    with forwarding(tmp_path, data) as (feed, downstream, t, box, errors):
        feed.land(fs.CHUNK + fs.PIECE)  # the second frame announced, a piece of it sent
        wait_for(lambda: downstream.received == fs.CHUNK + fs.PIECE, "the forwarded bytes")
        feed.g.finish(False, "w3: connection closed inside a frame")
        t.join(10)
    assert isinstance(box["error"], p.ProtocolError), box
    assert str(box["error"]) == "connection closed inside a frame"
    assert errors == ["file server: out-1: the transfer it is forwarded from failed: "
                      "w3: connection closed inside a frame"]


def small_buffers(client: p.Connection, server: p.Connection) -> None:
    """Socket buffers far smaller than the file, so a forward must wait for room."""
    server.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)


def arrived_over_small_buffers(tmp_path, timeout: float):
    """A file all arrived (a reader's reference taken), and a connection whose socket buffers
    are far smaller than it, the sending side with `timeout`: (data, feed, client, server)."""
    data = os.urandom(4 * fs.CHUNK)
    feed = Feed(tmp_path, "out-1", data)
    assert feed.g.acquire()
    feed.land(len(data))
    feed.g.finish(True)
    client, server = tcp_pair()
    small_buffers(client, server)
    server.sock.settimeout(timeout)
    return data, feed, client, server


def test_a_forward_on_a_socket_with_a_timeout_waits_for_room_to_send(tmp_path):
    # A socket with a timeout is non-blocking underneath: sendfile says "try again" when its
    # buffer is full, and the forward waits for room instead of failing.
    data, feed, client, server = arrived_over_small_buffers(tmp_path, 30.0)
    box = {}
    sender = threading.Thread(target=lambda: box.update(
        sent=fs.send_growing(server, "out-1", feed.g)))
    sender.start()
    assert client.recv(p.FileHead) == p.FileHead("out-1", len(data))
    _, got, frame = data_frames(client)
    sender.join(10)
    assert got == data and box == {"sent": len(data)}
    assert p.decode(frame[1]) == p.FileEnd(xxhash.xxh3_128_hexdigest(data))


def test_a_forward_to_a_peer_that_stops_reading_times_out(tmp_path):
    _, feed, client, server = arrived_over_small_buffers(tmp_path, 0.2)
    with pytest.raises(TimeoutError, match="^timed out$"):
        fs.send_growing(server, "out-1", feed.g)  # the client reads nothing
    client.close()


def test_the_arrival_rate_is_the_fastest_recent_window_and_the_pace_a_quarter_above_it():
    rate = fs.ArrivalRate(now=100.0)
    rate.note(100.1, 1_000_000)  # the first window is not over yet: no pace
    assert rate.pace() is None
    rate.note(100.25, 2_500_000)  # 2.5 MB in 0.25 s
    assert rate.pace() == round(1.25 * 10_000_000)
    rate.note(100.75, 3_500_000)  # 1 MB in 0.5 s: slower, the faster window still counts
    assert rate.pace() == round(1.25 * 10_000_000)
    for i in range(fs.PACE_WINDOWS):  # the fast window ages out after PACE_WINDOWS more
        rate.note(101.0 + i * 0.25, 3_500_000 + (i + 1) * 500_000)
    assert rate.pace() == round(1.25 * 2_000_000)


def pacing_of(conn: p.Connection) -> int:
    return struct.unpack("Q", conn.sock.getsockopt(socket.SOL_SOCKET, p.SO_MAX_PACING_RATE, 8))[0]


@pytest.mark.skipif(p.SO_MAX_PACING_RATE is None, reason="sockets are paced on Linux only")
def test_a_forward_is_paced_to_its_arrival_while_the_file_arrives_and_unpaced_after(tmp_path):
    data = os.urandom(4 * fs.PIECE + 1000)
    feed = Feed(tmp_path, "out-1", data)
    client, server = tcp_pair()
    assert pacing_of(server) == p.UNPACED
    assert feed.g.acquire()
    sender = threading.Thread(target=fs.send_growing, args=(server, "out-1", feed.g))
    sender.start()
    assert client.recv(p.FileHead) == p.FileHead("out-1", len(data))
    feed.land(fs.PIECE)
    time.sleep(1.2 * fs.PACE_WINDOW_S)  # not a race: the window only needs to be over
    feed.land(fs.PIECE)  # two pieces in more than a window: at most this fast
    assert client.recv_head() == (p.DATA, fs.CHUNK)  # the first chunk, a piece at a time
    got = client.recv_payload(2 * fs.PIECE)
    assert 0 < pacing_of(server) <= fs.PACE_HEADROOM * 2 * fs.PIECE / (1.2 * fs.PACE_WINDOW_S)
    feed.land(2 * fs.PIECE)
    got += client.recv_payload(2 * fs.PIECE)
    # the last bytes, less than a piece: the forward waits for all_in, then sends them unpaced
    feed.land(1000)
    feed.g.finish(True)
    _, rest, frame = data_frames(client)
    got += rest
    sender.join(10)
    assert got == data
    assert p.decode(frame[1]) == p.FileEnd(xxhash.xxh3_128_hexdigest(data))
    assert pacing_of(server) == p.UNPACED


def test_a_forward_sends_a_piece_without_waiting_for_a_whole_chunk(tmp_path):
    data = os.urandom(3 * fs.CHUNK)
    with forwarding(tmp_path, data) as (feed, downstream, t, box, errors):
        feed.land(fs.PIECE)
        # one piece is here, far less than a chunk: the next hop gets it now
        wait_for(lambda: downstream.received == fs.PIECE, "the forwarded piece")
        feed.land(len(data))
        feed.g.finish(True)
        t.join(10)
    assert box == {"result": (len(data), xxhash.xxh3_128_hexdigest(data))}
    assert errors == []


def test_a_frame_is_reported_piece_by_piece_as_it_lands(tmp_path):
    data = os.urandom(fs.CHUNK)
    client, server = tcp_pair()
    progress = fs.Growing("out-1")
    box = {}
    receiver = threading.Thread(target=lambda: box.update(result=fs.recv_file(
        client, "out-1", str(tmp_path / "copy"), progress=progress)))
    receiver.start()
    server.send(p.FileHead("out-1", len(data)))
    # one frame of a whole chunk, of which only the first piece has been sent so far
    server.send_raw(p.HEADER.pack(len(data), p.DATA) + data[:fs.PIECE])
    wait_for(lambda: progress.received == fs.PIECE, "the first piece to be reported")
    assert (tmp_path / "copy").read_bytes() == data[:fs.PIECE]
    server.send_raw(data[fs.PIECE:])
    server.send(p.FileEnd(xxhash.xxh3_128_hexdigest(data)))
    receiver.join(10)
    assert box == {"result": (len(data), xxhash.xxh3_128_hexdigest(data))}
    assert progress.arrived and progress.hash == xxhash.xxh3_128_hexdigest(data)


@pytest.mark.parametrize("timeout", [None, 30.0], ids=["blocking", "with a timeout"])
def test_a_file_trickling_in_is_received_whole_and_the_message_after_it_read(tmp_path,
                                                                             timeout):
    # The receiver sleeps until a piece has arrived, never for more than the frame still
    # owes: a short last frame followed by a tiny FileEnd must not leave it waiting.
    data = os.urandom(2 * fs.PIECE + 1000)
    client, server = tcp_pair()
    client.sock.settimeout(timeout)
    box = {}

    def receive():
        box["result"] = fs.recv_file(client, "out-1", str(tmp_path / "copy"))
        box["after"] = client.recv(p.Stored)
    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    server.send(p.FileHead("out-1", len(data)))
    frames = [data[:fs.PIECE + 7], data[fs.PIECE + 7:]]  # the last one shorter than a piece
    for frame in frames:
        wire = p.HEADER.pack(len(frame), p.DATA) + frame
        for i in range(0, len(wire), 40_000):  # a slow link: the frame in bits
            server.send_raw(wire[i:i + 40_000])
            time.sleep(0.001)
    server.send(p.FileEnd(xxhash.xxh3_128_hexdigest(data)), p.Stored("out-1"))
    receiver.join(30)
    alive = receiver.is_alive()
    server.close()
    assert not alive, "the receiver waited for bytes that were never going to come"
    assert box == {"result": (len(data), xxhash.xxh3_128_hexdigest(data)),
                   "after": p.Stored("out-1")}
    assert (tmp_path / "copy").read_bytes() == data


def test_a_frame_cut_off_inside_its_payload_fails_the_transfer(tmp_path):
    client, server = tcp_pair()
    box = {}

    def receive():
        try:
            fs.recv_file(client, "out-1", str(tmp_path / "copy"))
        except p.ProtocolError as e:
            box["error"] = str(e)
    receiver = threading.Thread(target=receive)
    receiver.start()
    server.send(p.FileHead("out-1", fs.CHUNK))
    server.send_raw(p.HEADER.pack(fs.CHUNK, p.DATA) + bytes(fs.PIECE + 5))
    server.close()
    receiver.join(10)
    assert box == {"error": "connection closed inside a frame"}


def test_a_directory_is_forwarded_hop_to_hop_as_it_arrives(tmp_path):
    src = tmp_path / "d"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "b").write_bytes(os.urandom(3 * fs.CHUNK))
    size, digest = fs.hash_tree(str(src))
    origin = fs.FileServer("127.0.0.1", {"out-d": str(src)}.get, b"pw")
    arrivals = fs.Arrivals()
    middle = fs.FileServer("127.0.0.1", arrivals.find, b"pw")
    try:
        g = arrivals.start("out-d")  # the middle hop is receiving: the next may already ask
        t, box = fetch_in_thread(middle.port, "out-d", str(tmp_path / "last"))
        fs.fetch("127.0.0.1", origin.port, "out-d", str(tmp_path / "mid"), b"pw",
                 expected_hash=digest, progress=g)
        arrivals.end(g, True)
        t.join(10)
    finally:
        origin.close()
        middle.close()
    assert box == {"result": (size, digest)}
    assert (tmp_path / "last" / "sub" / "b").read_bytes() == (src / "sub" / "b").read_bytes()
    assert arrivals.find("out-d") is None


def test_a_copy_damaged_on_the_forwarding_side_fails_at_the_next_hop(tmp_path):
    data = os.urandom(2 * fs.CHUNK)
    with forwarding(tmp_path, data) as (feed, downstream, t, box, errors):
        wait_for(lambda: downstream.size is not None, "the forward to start")
        feed.land(fs.CHUNK)
        feed.land(fs.CHUNK, damage=True)  # arrived intact, then went bad on this side's disk
        feed.g.finish(True)
        t.join(10)
    assert str(box["error"]) == "corrupt transfer of out-1: bytes do not match the sender's hash"


def test_a_closed_file_server_refuses_connections_and_its_thread_has_ended():
    # Closing the listening socket alone woke no accept() blocked on it: the kernel kept the
    # port accepting for that thread, which waited on for good (one of each per manager).
    before = set(threading.enumerate())
    server = fs.FileServer("127.0.0.1", lambda key: None, None)
    accepting = [t for t in threading.enumerate() if t not in before and t.name == "file-server"]
    assert len(accepting) == 1
    server.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=10).close()
    assert not any(t.is_alive() for t in accepting)
