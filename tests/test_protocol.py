"""The wire: frames, messages and the authenticated handshake."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from vinemake.common.spec import Resources
from vinemake.common.task import LibrarySpec, Measured, Task, TaskFile, TaskResult
from vinemake.wire import protocol as p


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


def test_a_connection_reads_messages_batched_and_frames_longer_than_its_buffer_whole():
    client, server = tcp_pair()
    big = p.Drop([f"key-{i:07d}" for i in range(40_000)])  # one frame of ~520 KB
    assert len(p.encode(big)) > p.READ_AHEAD
    msgs = [p.Get("a"), big, p.Get("b"), p.Shutdown("done")]
    sender = threading.Thread(target=server.send, args=msgs)
    sender.start()
    assert [client.recv() for _ in msgs] == msgs
    sender.join()
    server.close()
    with pytest.raises(EOFError):
        client.recv()


def test_data_read_into_a_buffer_takes_what_was_read_ahead_then_the_socket():
    client, server = tcp_pair()
    data = bytes(range(256)) * 2048  # 512 KiB: more than was read ahead with the header
    server.send(p.Get("a"))
    server.send_raw(p.HEADER.pack(len(data), p.DATA) + data)
    server.send(p.Shutdown("done"))
    assert client.recv(p.Get) == p.Get("a")
    assert client.recv_head() == (p.DATA, len(data))
    got = bytearray(len(data))
    client.read_into(memoryview(got)[:1000])
    client.read_into(memoryview(got)[1000:])
    assert got == data
    assert client.recv(p.Shutdown) == p.Shutdown("done")


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
    (b"[" * 100_000, "garbled message: nested too deeply"),
    (b'{"t": "Hello", "version": 3, "role": "worker", "nonce": "n", "resources": '
     b'{"cores": "many"}}', "garbled message: Hello.resources.cores must be a number, not "
                            "below zero"),
    (b'{"t": "FileHead", "key": "k", "size": NaN}', "garbled message: not JSON"),
    (b'{"t": "Kill", "task_ids": [1, true]}', "garbled message: Kill.task_ids[1] must be an "
                                               "integer from -9223372036854775808 to "
                                               "9223372036854775807"),
    (b'{"t": "Run", "task": {}, "fetch": []}', "garbled message: Run.task lacks after, attempt, "
     "cache_forever, category, command, env, environment, failed_dir, id, inputs, library, "
     "minis, name, outputs, resources, rule_key, stops_run"),
    (b'{"t": "Drop", "keys": [["deep"]]}', "garbled message: Drop.keys[0] must be a string"),
    (b'{"t": "Runs", "runs": [[{}, []]]}', "garbled message: Runs.runs[0][0] lacks after, attempt, "
     "cache_forever, category, command, env, environment, failed_dir, id, inputs, library, "
     "minis, name, outputs, resources, rule_key, stops_run"),
    (b'{"t": "Runs", "runs": [[]]}', "garbled message: Runs.runs[0] must be a list of 2 items"),
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
                        worker="w1", outputs=(("out-1", 4, "h"),))
    outcome = p.TaskOutcome(result, outputs=(("out-1", 4, "h", "/c/out-1"),))
    wire = p.decode(p.encode(p.Done([p.outcome_to_wire(outcome)]))[5:])
    assert p.outcome_from_wire(wire.outcomes[0]) == outcome


def test_what_orjson_refuses_still_crosses_the_wire():
    # A path with bytes that are not UTF-8 (a lone surrogate under surrogateescape), a time
    # beyond 64 bits (orjson would read it back as a float), and text outside ASCII: each
    # comes back exactly as it was sent.
    odd = b"/data/caf\xe9/r\xc3\xa9sum\xc3\xa9".decode("utf-8", "surrogateescape")
    msgs = [p.Drop([odd, "naïve ✓"]), p.Transferred(key="k", source="w1", size=3, start=2**70,
                                                    end=2.5, ok=True)]
    back = [p.decode(p.encode(m)[5:]) for m in msgs]
    assert back == msgs
    assert type(back[1].start) is int


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


_DROP = object()


def _done(**changes) -> bytes:
    """A Done payload of one successful outcome, with `changes` made to it (_DROP: left out)."""
    import orjson

    outcome = {"id": 5, "status": "ok", "exit_code": 0, "reason": "", "stderr": "",
               "measured": {"cores": 0.0, "memory_mb": 0.0, "disk_mb": 0.0,
                            "wall_time_s": 0.0012, "bytes_read": 0.0, "bytes_written": 0.0,
                            "samples": 0.0},
               "worker": "local", "outputs": [["out-1", 0, "h", "/c/out-1"]], "failed": [],
               "unfetched": [], "inline": []}
    for name, value in changes.items():
        if value is _DROP:
            del outcome[name]
        else:
            outcome[name] = value
    return orjson.dumps({"t": "Done", "outcomes": [outcome]})


_MEASURED = {"cores": 0.0, "memory_mb": 0.0, "disk_mb": 0.0, "wall_time_s": 0.0,
             "bytes_read": 0.0, "bytes_written": 0.0, "samples": 0.0}


@pytest.mark.parametrize("changes, error", [
    ({"id": True}, "Done.outcomes[0].id must be an integer from -9223372036854775808 to "
                   "9223372036854775807"),
    ({"status": "fine"}, "Done.outcomes[0].status must be one of ok, failed, signaled, "
                         "missing_output, resource_exceeded, lost, error, withdrawn, held_back"),
    ({"exit_code": 2.5}, "Done.outcomes[0].exit_code must be an integer from "
                         "-9223372036854775808 to 9223372036854775807"),
    ({"reason": 3}, "Done.outcomes[0].reason must be a string"),
    ({"worker": _DROP}, "Done.outcomes[0] lacks worker"),
    ({"worker": None}, "Done.outcomes[0].worker must be a string"),
    ({"evil": 1}, "Done.outcomes[0] has an unknown field 'evil'"),
    ({"measured": dict(_MEASURED, cores=-1.0)},
     "Done.outcomes[0].measured.cores must be a number, not below zero"),
    ({"measured": dict(_MEASURED, samples=True)},
     "Done.outcomes[0].measured.samples must be a number, not below zero"),
    ({"measured": {"cores": 0.0}}, "Done.outcomes[0].measured lacks bytes_read, bytes_written, "
                                   "disk_mb, memory_mb, samples, wall_time_s"),
    ({"outputs": [["k", -1, "h", "/c"]]}, "Done.outcomes[0].outputs[0][1] must be an integer "
                                          "from 0 to 9223372036854775807"),
    ({"outputs": [["k", 2 ** 63, "h", "/c"]]},
     "Done.outcomes[0].outputs[0][1] must be an integer from 0 to 9223372036854775807"),
    ({"outputs": [["k", 1, "h"]]}, "Done.outcomes[0].outputs[0] must be a list of 4 items"),
    ({"outputs": {}}, "Done.outcomes[0].outputs must be a list"),
    ({"failed": [["a", 1, "c"]]}, "Done.outcomes[0].failed[0][1] must be a string"),
    ({"inline": [["k", 5]]}, "Done.outcomes[0].inline[0][1] must be a string"),
])
def test_a_bad_outcome_is_refused_saying_where(changes, error):
    # (A message is checked by its schema compiled; what that refuses is checked by the
    # schema itself, which names the field.)
    with pytest.raises(p.ProtocolError) as e:
        p.decode(_done(**changes))
    assert str(e.value) == f"garbled message: {error}"


@pytest.mark.parametrize("changes", [
    {}, {"exit_code": None}, {"exit_code": -9, "status": "signaled"}, {"outputs": []},
    {"failed": [["out", "out-1", "/c/x"]], "status": "failed", "exit_code": 1},
    {"unfetched": [["k", ["w1", "manager"]]], "status": "error"},
    {"inline": [["out-1", "aGk="]]}, {"measured": dict(_MEASURED, cores=1, samples=3)},
])
def test_every_shape_of_good_outcome_is_read(changes):
    assert p.decode(_done(**changes)).outcomes[0]["id"] == 5
