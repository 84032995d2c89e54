"""The wire: frames, messages, the authenticated handshake, file streaming and its checks."""

from __future__ import annotations

import socket
import struct
import threading

import pytest
import xxhash

from vinemake import protocol as p
from vinemake.spec import Resources
from vinemake.task import LibrarySpec, Measured, Task, TaskFile, TaskResult


def tcp_pair():
    """Two connected sockets over real TCP on 127.0.0.1 (port 0)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return p.Connection(client), p.Connection(server)


def test_messages_round_trip_through_frames_split_anywhere():
    msgs = [p.Get("out-1"), p.Drop(["a", "b"]), p.Shutdown("done")]
    data = b"".join(p.encode(m) for m in msgs)
    reader = p.FrameReader()
    frames = []
    for i in range(0, len(data), 3):  # arrives three bytes at a time
        frames += reader.feed(data[i:i + 3])
    assert [p.decode(payload) for kind, payload in frames] == msgs
    assert {kind for kind, _ in frames} == {p.MSG}


def test_an_oversized_frame_is_refused_before_its_body_arrives():
    reader = p.FrameReader()
    with pytest.raises(p.ProtocolError) as e:
        reader.feed(struct.pack(">IB", 0xFFFFFFFF, 0))
    assert str(e.value) == f"oversized frame: 4294967295 bytes (limit {p.MAX_FRAME})"


@pytest.mark.parametrize("payload, error", [
    (b"{not json", "garbled message: not JSON"),
    (b'{"t": "Nope"}', "garbled message: unknown message type"),
    (b'{"t": 5}', "garbled message: unknown message type"),
    (b'{"key": "k"}', "garbled message: unknown message type"),
    (b'{"t": "Get", "key": "k", "evil": 1}', "garbled message: unknown fields in Get"),
    (b'{"t": "Get"}', "garbled message: missing fields in Get"),
    (b"[1, 2]", "garbled message: not a JSON object"),
    (b"\xff\xfe", "garbled message: not JSON"),
])
def test_garbled_messages_are_protocol_errors(payload, error):
    with pytest.raises(p.ProtocolError) as e:
        p.decode(payload)
    assert str(e.value) == error


def test_an_unknown_frame_kind_is_refused():
    with pytest.raises(p.ProtocolError) as e:
        p.FrameReader().feed(struct.pack(">IB", 1, 7) + b"x")
    assert str(e.value) == "garbled frame: unknown kind 7"


def test_tasks_and_outcomes_survive_the_wire():
    task = Task(id=7, rule_key="rule-1", name="out", command="echo 'a b' > out",
                inputs=(TaskFile("file-1", "in/x", "/abs/x", 12),),
                outputs=(TaskFile("out-1", "out", None),), env=(("A", "1"),),
                resources=Resources(cores=2, memory_mb=100, wall_time_s=1.5),
                library=LibrarySpec("lib", "lib-1", "python lib.py",
                                    (TaskFile("file-2", "lib.py", "/abs/lib.py", 3),), slots=2),
                cache_forever=True, failed_dir="/f", attempt=2)
    assert p.task_from_wire(p.decode(p.encode(p.Run(p.task_to_wire(task)))[5:]).task) == task
    result = TaskResult(task_id=7, status="ok", exit_code=0, measured=Measured(memory_mb=3.5),
                        worker="w1", outputs=(("out-1", 4),))
    outcome = p.Outcome(result, outputs=(("out-1", 4, "h", "/c/out-1"),))
    wire = p.decode(p.encode(p.Done([p.outcome_to_wire(outcome)]))[5:])
    assert p.outcome_from_wire(wire.outcomes[0]) == outcome


def handshake(client_secret, server_secret, version=p.VERSION):
    """Run both sides of a handshake; (client outcome, server outcome) as values or errors."""
    client, server = tcp_pair()
    out = {}

    def serve():
        try:
            out["server"] = hello = p.server_handshake(server, server_secret)
            server.send(p.welcome_for(hello, server_secret, worker_id="w1"))
        except p.ProtocolError as e:
            out["server"] = e

    t = threading.Thread(target=serve)
    t.start()
    hello = p.Hello(version=version, role="worker", nonce="n1", name="w")
    try:
        out["client"] = p.client_handshake(client, hello, client_secret)
    except p.ProtocolError as e:
        out["client"] = e
    t.join()
    client.close()
    server.close()
    return out["client"], out["server"]


def test_handshake_with_the_same_secret_welcomes_the_worker():
    welcome, hello = handshake(b"s3cret", b"s3cret")
    assert welcome.worker_id == "w1"
    assert hello.name == "w"


def test_handshake_without_any_secret_is_open():
    welcome, _ = handshake(None, None)
    assert welcome.worker_id == "w1"


def test_a_wrong_secret_is_refused_with_the_reason_on_both_sides():
    client, server = handshake(b"wrong", b"s3cret")
    assert str(server) == "authentication failed: wrong secret"
    assert str(client) == "refused: authentication failed: wrong secret"


def test_a_missing_secret_is_refused():
    client, server = handshake(None, b"s3cret")
    assert str(server) == "authentication failed: no proof of the secret (missing --password?)"
    assert str(client) == ("refused: authentication failed: no proof of the secret "
                           "(missing --password?)")


def test_a_worker_with_a_secret_refuses_a_manager_without_it():
    client, server = handshake(b"s3cret", None)
    assert str(client) == "authentication failed: the server does not know the secret"


def test_a_worker_refuses_a_manager_with_another_secret():
    client, server = handshake(b"s3cret", b"other")
    assert str(server) == "authentication failed: wrong secret"
    assert str(client) == "refused: authentication failed: wrong secret"


def test_a_version_mismatch_is_refused_naming_both_versions():
    client, server = handshake(None, None, version=99)
    assert str(server) == f"version mismatch: server speaks {p.VERSION}, client speaks 99"
    assert str(client) == f"refused: version mismatch: server speaks {p.VERSION}, client speaks 99"


def test_the_secret_never_crosses_the_wire():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        raw = socket.create_connection(listener.getsockname())
        server = p.Connection(listener.accept()[0])
    seen = bytearray()

    class Spy:  # records every byte the client sends
        def sendall(self, data):
            seen.extend(data)
            raw.sendall(data)

        def __getattr__(self, name):
            return getattr(raw, name)

    client = p.Connection(raw)
    client.sock = Spy()

    def serve():
        hello = p.server_handshake(server, b"hunter2-secret")
        server.send(p.welcome_for(hello, b"hunter2-secret"))

    t = threading.Thread(target=serve)
    t.start()
    p.client_handshake(client, p.new_hello("worker"), b"hunter2-secret")
    t.join()
    assert seen and b"hunter2" not in seen


@pytest.fixture
def file_server(tmp_path):
    data = bytes(range(256)) * 1000  # 256 000 bytes: several 64 KiB-or-more chunks
    (tmp_path / "src").write_bytes(data)
    errors = []
    files = {"out-1": str(tmp_path / "src")}
    server = p.FileServer("127.0.0.1", files.get, b"pw", on_error=errors.append)
    yield server, data, errors
    server.close()


def test_a_file_is_fetched_and_verified(file_server, tmp_path):
    server, data, _ = file_server
    digest = xxhash.xxh3_128_hexdigest(data)
    size, got = p.fetch("127.0.0.1", server.port, "out-1", str(tmp_path / "dest"), b"pw",
                        expected_hash=digest)
    assert (size, got) == (len(data), digest)
    assert (tmp_path / "dest").read_bytes() == data


def test_bytes_that_do_not_match_the_recorded_hash_are_refused(file_server, tmp_path):
    server, data, _ = file_server
    with pytest.raises(p.ProtocolError) as e:
        p.fetch("127.0.0.1", server.port, "out-1", str(tmp_path / "dest"), b"pw",
                expected_hash="0" * 32)
    digest = xxhash.xxh3_128_hexdigest(data)
    assert str(e.value) == (f"corrupt transfer of out-1: content hash {digest} is not the "
                            f"recorded {'0' * 32}")


def test_a_peer_must_authenticate_to_fetch(file_server, tmp_path):
    server, _, errors = file_server
    with pytest.raises(p.ProtocolError) as e:
        p.fetch("127.0.0.1", server.port, "out-1", str(tmp_path / "dest"), b"guess")
    assert str(e.value) == "refused: authentication failed: wrong secret"
    assert not (tmp_path / "dest").exists()


def test_an_unknown_key_is_refused(file_server, tmp_path):
    server, _, _ = file_server
    with pytest.raises(p.ProtocolError) as e:
        p.fetch("127.0.0.1", server.port, "out-404", str(tmp_path / "dest"), b"pw")
    assert str(e.value) == "refused: no such file: out-404"


def test_garbage_to_a_file_server_closes_that_connection_only(file_server, tmp_path):
    server, data, errors = file_server
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert s.recv(100) == b""
    size, _ = p.fetch("127.0.0.1", server.port, "out-1", str(tmp_path / "dest"), b"pw")
    assert size == len(data)
    assert errors[0].startswith("file server: oversized frame: ")


def test_data_chunks_are_at_least_64_kib():
    assert p.CHUNK >= 64 * 1024


def test_a_directory_travels_as_a_tar_stream_and_is_verified(tmp_path):
    src = tmp_path / "d"
    (src / "sub").mkdir(parents=True)
    (src / "a").write_bytes(b"alpha")
    (src / "sub" / "b").write_bytes(bytes(200_000))
    size, digest = p.hash_tree(str(src))
    server = p.FileServer("127.0.0.1", {"out-d": str(src)}.get, None)
    try:
        got = p.fetch("127.0.0.1", server.port, "out-d", str(tmp_path / "copy"), None,
                      expected_hash=digest)
        with pytest.raises(p.ProtocolError) as e:
            p.fetch("127.0.0.1", server.port, "out-d", str(tmp_path / "copy2"), None,
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
        p.recv_file(client, "out-x", str(tmp_path / "in" / "dest"))
    assert str(e.value).startswith("corrupt transfer of out-x: ")
    assert not (tmp_path / "in" / "escaped").exists() and not (tmp_path / "escaped").exists()


def test_an_awaited_upload_is_stored_and_an_unexpected_one_refused(tmp_path):
    (tmp_path / "src").write_bytes(b"payload" * 20_000)
    digest = xxhash.xxh3_128_hexdigest(b"payload" * 20_000)
    stored, errors = [], []
    awaited = {"out-1": (str(tmp_path / "landed"), digest)}
    server = p.FileServer("127.0.0.1", lambda key: None, b"pw", accept=awaited.get,
                          on_stored=lambda *a: stored.append(a), on_error=errors.append)
    try:
        assert p.push("127.0.0.1", server.port, "out-1", str(tmp_path / "src"), b"pw") == 140_000
        with pytest.raises(p.ProtocolError) as e:
            p.push("127.0.0.1", server.port, "out-2", str(tmp_path / "src"), b"pw")
    finally:
        server.close()
    assert (tmp_path / "landed").read_bytes() == b"payload" * 20_000
    assert stored == [("out-1", 140_000, None)]
    assert str(e.value) == "refused: not expecting out-2"
