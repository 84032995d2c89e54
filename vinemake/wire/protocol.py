"""The wire between manager, workers and peers: frames, typed messages, authentication.

This is the only module that knows the wire format. Everything on the wire is a frame:

    4 bytes big-endian payload length | 1 byte kind | payload

kind MSG carries one message as compact JSON `{"t": TYPE, ...fields}`; kind DATA carries raw
file bytes (chunks of at most CHUNK bytes, never less than 64 KiB except the last). A frame
longer than MAX_FRAME, an unknown kind, bad JSON or an unknown message type is a ProtocolError:
whoever reads it closes that one connection with the reason logged, and carries on with the
others.

A connection starts with a handshake (`client_handshake` / `server_handshake`):

    client → Hello(version, role, nonce_c, ...)
    server → Challenge(version, nonce_s)
    client → Auth(proof_c = HMAC(secret, "client:" + nonce_s))
    server → Welcome(proof_s = HMAC(secret, "server:" + nonce_c), ...) or Refuse(reason)

The secret never crosses the wire, and each side proves it knows it (the client first, so a
refused worker hears exactly why), so a worker never runs commands for an impostor manager.
Without a password file both proofs are empty; a side that has a secret refuses a peer that
sent no proof. Versions must be equal: the Refuse names both.

TLS (optional) wraps every connection to the manager: control and its file server. Workers
have no certificate, so with TLS the manager does not fetch outputs from a worker: it asks the
worker to Push them, and the worker uploads them (Put) to the manager's file server over TLS.
Files moving between two workers are authenticated and hash-verified but not encrypted.

Files travel as FileHead(key, size), DATA frames, FileEnd(hash); vinemake.wire.fileserver streams,
serves and verifies them.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import socket
import struct
import sys
import threading
from collections.abc import Callable
from dataclasses import MISSING, field, fields
from typing import TYPE_CHECKING

import orjson

from vinemake.common.compactjson import compact
from vinemake.common.errors import InfrastructureError
from vinemake.common.records import dataclass
from vinemake.common.spec import Resources
from vinemake.common.task import (
    STATUSES,
    LibrarySpec,
    Measured,
    MiniTask,
    Task,
    TaskFile,
    TaskResult,
)
from vinemake.wire import tls
from vinemake.wire.schema import Bad as _Bad
from vinemake.wire.schema import boolean as _bool
from vinemake.wire.schema import compiled
from vinemake.wire.schema import integer as _int
from vinemake.wire.schema import js_object as _object
from vinemake.wire.schema import js_tuple as _tuple
from vinemake.wire.schema import listed as _list
from vinemake.wire.schema import number as _number
from vinemake.wire.schema import one_of as _one_of
from vinemake.wire.schema import or_null as _or_null
from vinemake.wire.schema import string as _str
from vinemake.wire.schema import time as _time

if TYPE_CHECKING:
    import ssl

# Both ends refuse a message with a field they do not know, so a new field is a new version:
# a worker from another release is then refused with "version mismatch", not "garbled".
# 2: Welcome.max_tasks (the -j cap a worker applies itself).
# 3: Started (a worker says when each command really began).
# 4: Heartbeat and Welcome.heartbeat_s/silence_s; Cached (the forever cache) after Hello.
# 5: Task.stops_run (a worker starts nothing more after such a task failed).
# 6: a task file carries a URL (its fifth field, "" for none) the worker fetches itself.
# 7: Task.minis (the `@mini` rules a worker runs first, where their outputs are missing).
# 8: LibraryStarted (a worker says when a library instance started and was ready).
# 9: Task.environment and LibrarySpec.environment (the packed environment to run in).
# 10: Measured.bytes_read, bytes_written and samples (what a command read and wrote).
# 11: Runs (several tasks for one worker in one message).
# 12: Task.after (a task held until the tasks it names succeed) and status "held_back".
VERSION = 12
MSG, DATA = 0, 1
HEADER = struct.Struct(">IB")
MAX_FRAME = 16 * 1024 * 1024
# Before a peer has proven it knows the secret it may send only handshake messages, each at
# most this long (a Hello is a few hundred bytes): what an unknown peer can make us hold.
MAX_HANDSHAKE_FRAME = 64 * 1024
CHUNK = 1024 * 1024
HANDSHAKE_TIMEOUT_S = 10.0  # the whole handshake, however slowly the peer sends


class ProtocolError(InfrastructureError):
    """The other side sent something we refuse: the connection is closed with this reason."""


# ---------------------------------------------------------------- messages

_TYPES: dict[str, type] = {}


def _message(**schema):
    """Register a frozen dataclass as a message type named after the class; `schema` names
    the check of every field (decode refuses a message whose fields do not pass)."""

    def register(cls):
        cls = dataclass(frozen=True)(cls)
        cls.TYPE = cls.__name__
        cls.FIELDS = frozenset(f.name for f in fields(cls))
        cls.REQUIRED = frozenset(f.name for f in fields(cls)
                                 if f.default is MISSING and f.default_factory is MISSING)
        assert cls.FIELDS == schema.keys(), f"{cls.__name__}: a schema for every field"
        cls.SCHEMA = schema
        _TYPES[cls.__name__] = cls
        return cls

    return register


# ---------------------------------------------------------------- schemas
# What each field of each message must be (vinemake.wire.schema): checked as one compiled
# function per message type, and by the checks themselves only to say what is wrong.

_PORT = _int(0, 65535)
_COUNT = _int(0)
_RESOURCES = _object({}, {name: _or_null(_number) for name in Resources.__dataclass_fields__})
_FILE = _tuple(_str, _str, _or_null(_str), _COUNT, _str)  # key, sandbox, path, size, URL
_ENV = _list(_tuple(_str, _str))
_LIBRARY = _object({"name": _str, "key": _str, "command": _str, "inputs": _list(_FILE),
                    "resources": _RESOURCES, "slots": _int(1), "env": _ENV,
                    "environment": _str})
_MINI = _object({"key": _str, "name": _str, "command": _str, "inputs": _list(_FILE),
                 "outputs": _list(_FILE), "env": _ENV})
_TASK = _object({
    "id": _int(), "rule_key": _str, "name": _str, "command": _str, "inputs": _list(_FILE),
    "outputs": _list(_FILE), "env": _ENV, "resources": _RESOURCES, "category": _str,
    "library": _or_null(_LIBRARY), "cache_forever": _bool, "failed_dir": _or_null(_str),
    "attempt": _int(1), "stops_run": _bool, "minis": _list(_MINI),
    "environment": _str, "after": _list(_int())})
_SOURCE = _tuple(_str, _PORT, _str, _bool)  # host, port, label, tls
_OUTCOME = _object({
    "id": _int(), "status": _one_of(*STATUSES), "exit_code": _or_null(_int()),
    "reason": _str, "stderr": _str,
    "measured": _object({name: _number for name in Measured.__dataclass_fields__}),
    "worker": _str,
    "outputs": _list(_tuple(_str, _COUNT, _str, _str)),  # key, size, hash, cache path
    "failed": _list(_tuple(_str, _str, _str)),  # sandbox name, key, cache path
    "unfetched": _list(_tuple(_str, _list(_str))),  # key, sources tried
    "inline": _list(_tuple(_str, _str))})  # key, base64 bytes
_CACHED = _list(_tuple(_str, _COUNT, _str))  # key, size, hash
@_message(version=_int(), role=_str, nonce=_str, name=_str, resources=_RESOURCES,
          host_id=_str, file_port=_PORT)
class Hello:
    version: int
    role: str  # "worker" (control connection) or "fetch" (asks for files)
    nonce: str
    name: str = ""
    resources: dict = field(default_factory=dict)
    host_id: str = ""
    file_port: int = 0


@_message(version=_int(), nonce=_str)
class Challenge:
    version: int
    nonce: str


@_message(proof=_str)
class Auth:
    proof: str = ""


@_message(proof=_str, worker_id=_str, same_host=_bool, transfer_limit=_int(1),
          file_port=_PORT, max_tasks=_COUNT, heartbeat_s=_number, silence_s=_number)
class Welcome:
    proof: str = ""
    worker_id: str = ""
    same_host: bool = False
    transfer_limit: int = 3
    file_port: int = 0  # the manager's file server, where Push uploads go
    max_tasks: int = 0  # tasks (commands and calls) the worker may run at once (-j); 0: no cap
    # Each side sends a Heartbeat every heartbeat_s; either takes silence_s without a word
    # from the other for a peer that is gone (stopped, hung, cut off); 0: never.
    heartbeat_s: float = 0.0
    silence_s: float = 0.0


@_message(reason=_str)
class Refuse:
    reason: str


@_message(entries=_CACHED)
class Cached:
    """Worker → manager, first after the handshake: its `@cache forever` files, kept across
    restarts (after, not in Hello: what a peer may send before it is authenticated is small)."""

    entries: list


@_message()
class Heartbeat:
    """Either way, when nothing else was sent for a while: "I am still here"."""


_FETCH = _list(_tuple(_str, _str, _list(_SOURCE)))


@_message(task=_TASK, fetch=_FETCH)
class Run:
    """Run one task. `fetch` lists inputs to get first: [key, hash, [source, ...]] each."""

    task: dict
    fetch: list = field(default_factory=list)


@_message(runs=_list(_tuple(_TASK, _FETCH)))
class Runs:
    """Run several tasks: [[task, fetch], ...], each as one Run says. The manager sends the
    tasks it gives a worker in one turn together: one message for the worker to read."""

    runs: list

    def each(self) -> list[Run]:
        return [Run(task, fetch) for task, fetch in self.runs]


def batch(runs: list[Run]) -> Run | Runs:
    """The Runs for one worker as one message: the Run itself when it is alone."""
    return runs[0] if len(runs) == 1 else Runs([[r.task, r.fetch] for r in runs])


@_message(outcomes=_list(_OUTCOME))
class Done:
    """Outcomes of finished tasks, batched when several finish together."""

    outcomes: list


@_message(tasks=_list(_tuple(_int(), _time)))
class Started:
    """Commands that began on a worker: [[task id, unix time], ...], batched like Done."""

    tasks: list


@_message(library=_str, start=_time, end=_time)
class LibraryStarted:
    """A library instance on a worker was started at `start` and ready to serve at `end`."""

    library: str
    start: float
    end: float


@_message(key=_str, source=_str, size=_COUNT, start=_time, end=_time, ok=_bool, hash=_str,
          reason=_str)
class Transferred:
    """A worker fetched (or failed to fetch) one file: the manager logs it and frees the source."""

    key: str
    source: str
    size: int
    start: float
    end: float
    ok: bool = True
    hash: str = ""
    reason: str = ""


@_message(keys=_list(_str))
class Drop:
    keys: list


@_message(task_ids=_list(_int()))
class Kill:
    """Kill these running tasks: their results are no longer wanted."""

    task_ids: list


@_message(reason=_str)
class Shutdown:
    reason: str = ""


@_message(key=_str)
class Get:
    key: str


@_message(key=_str)
class Push:
    """Manager → worker: upload `key` to the manager's file server (over TLS, when the worker
    has no certificate to serve it encrypted itself)."""

    key: str


# Transferred.source of a worker's report that it could not Push a file.
PUSH_FAILED = "push"
# A fetch source (and Transferred.source) that is a URL source's own server: its host field
# holds the URL.
URL = "url"
# Transferred.source of a file a worker made itself (nothing moved): a `@mini` rule's output,
# or an unpacked environment, whose key is ENVIRONMENT + the key of its tarball.
MINI = "mini"
ENVIRONMENT = "env-"


@_message(key=_str)
class Put:
    """Uploader → file server: may I send `key`? The server echoes Put (go ahead) or Refuses;
    the file follows, answered by Stored."""

    key: str


@_message(key=_str)
class Stored:
    key: str


@_message(key=_str, size=_int(-1))
class FileHead:
    key: str
    size: int  # -1: a directory, sent as a tar stream


@_message(hash=_str)
class FileEnd:
    hash: str


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # Python's decoder would take NaN and Infinity


# Every message is encoded by one side and decoded by the other, several per task: orjson
# does both several times faster than the json module (docs/performance.md, "Dispatch").
# What orjson cannot write goes through the json module as before: a string with a lone
# surrogate (a path's undecodable bytes under surrogateescape) or an integer beyond 64 bits.
# Such a payload starts with a space, which tells the reader to use the json module too:
# orjson would read a big integer back as a float. A payload orjson cannot read is read by
# the json module, so a bad frame gets the same reason as ever.
# Built once: json.loads builds a decoder per call, and loads of bytes first sniffs their
# encoding (the wire is always UTF-8).
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def encode(msg) -> bytes:
    """One message as a complete MSG frame."""
    body = dict(msg.__dict__)
    body["t"] = msg.TYPE
    payload, by_json = compact(body)
    if by_json:
        payload = b" " + payload
    return HEADER.pack(len(payload), MSG) + payload


def decode(payload: bytes):
    """A MSG frame's payload back into its message; ProtocolError if it is not one, or if
    any field does not pass its schema."""
    if payload[:1] == b" ":
        body = _json_body(payload)
    else:
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            body = _json_body(payload)
    if not isinstance(body, dict):
        raise ProtocolError("garbled message: not a JSON object")
    cls = _TYPES.get(body.pop("t", None)) if isinstance(body.get("t"), str) else None
    if cls is None:
        raise ProtocolError("garbled message: unknown message type")
    passes = _PASSES.get(cls)
    if passes is None:
        _check(cls, body)
        _read_one(cls)
    elif not passes(body):
        _check(cls, body)
        raise ProtocolError(f"garbled message: {cls.TYPE}")  # the two checks disagree: a bug
    return cls(**body)


# A message type's schema is compiled (vinemake.wire.schema) once this many of its messages
# were read: compiling a task's costs a few ms, more than a short run's few messages save.
COMPILE_AFTER = 16
_PASSES: dict[type, Callable[[dict], bool]] = {}  # message type -> its compiled check
_READ: dict[type, int] = {}  # message type -> how many were read before it was compiled


def _read_one(cls) -> None:
    n = _READ[cls] = _READ.get(cls, 0) + 1
    if n >= COMPILE_AFTER:
        required = {name: cls.SCHEMA[name] for name in cls.REQUIRED}
        optional = {name: cls.SCHEMA[name] for name in cls.FIELDS - cls.REQUIRED}
        _PASSES[cls] = compiled(_object(required, optional))


def _check(cls, body: dict) -> None:
    """A ProtocolError naming the field of `body` that is not as `cls` has it, and what it
    must be, if any."""
    if not body.keys() <= cls.FIELDS:
        raise ProtocolError(f"garbled message: unknown fields in {cls.TYPE}")
    if not cls.REQUIRED <= body.keys():
        raise ProtocolError(f"garbled message: missing fields in {cls.TYPE}")
    name = ""
    try:
        for name, value in body.items():
            cls.SCHEMA[name](value)
    except _Bad as e:
        where = "".join(reversed(e.path))
        raise ProtocolError(f"garbled message: {cls.TYPE}.{name}{where} {e.what}") from None


def _json_body(payload: bytes):
    """What the json module reads in `payload` (where orjson gave up), or why it is garbled."""
    try:
        return _DECODER.decode(payload.decode())
    except ValueError:
        raise ProtocolError("garbled message: not JSON") from None
    except RecursionError:  # e.g. 100,000 `[`: no message nests more than a few levels
        raise ProtocolError("garbled message: nested too deeply") from None


class FrameReader:
    """Splits a byte stream into (kind, payload) frames; for non-blocking readers."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        frames = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= HEADER.size:
            length, kind = HEADER.unpack_from(buf, pos)
            _check_header(length, kind)
            end = pos + HEADER.size + length
            if len(buf) < end:
                break
            frames.append((kind, bytes(buf[pos + HEADER.size:end])))
            pos = end
        del buf[:pos]
        return frames


def _check_header(length: int, kind: int, limit: int = MAX_FRAME) -> None:
    if length > limit:
        raise ProtocolError(f"oversized frame: {length} bytes (limit {limit})")
    if kind not in (MSG, DATA):
        raise ProtocolError(f"garbled frame: unknown kind {kind}")


# ---------------------------------------------------------------- plain data on the wire

def task_to_wire(task: Task) -> dict:
    lib = task.library
    return {
        "id": task.id, "rule_key": task.rule_key, "name": task.name, "command": task.command,
        "inputs": [_file_to_wire(f) for f in task.inputs],
        "outputs": [_file_to_wire(f) for f in task.outputs],
        "env": task.env, "resources": task.resources.__dict__, "category": task.category,
        "library": None if lib is None else {
            "name": lib.name, "key": lib.key, "command": lib.command,
            "inputs": [_file_to_wire(f) for f in lib.inputs],
            "resources": lib.resources.__dict__, "slots": lib.slots, "env": lib.env,
            "environment": lib.environment},
        "cache_forever": task.cache_forever, "failed_dir": task.failed_dir,
        "attempt": task.attempt, "stops_run": task.stops_run,
        "minis": [{"key": m.key, "name": m.name, "command": m.command,
                   "inputs": [_file_to_wire(f) for f in m.inputs],
                   "outputs": [_file_to_wire(f) for f in m.outputs], "env": m.env}
                  for m in task.minis],
        "environment": task.environment, "after": task.after,
    }


def task_from_wire(d: dict) -> Task:
    # Called once a task on the worker, with a task its schema passed (decode): lists, not
    # generators, and the Resources of a category made once.
    try:
        lib = d["library"]
        return Task(
            id=d["id"], rule_key=d["rule_key"], name=d["name"], command=d["command"],
            inputs=tuple([_file_from_wire(f) for f in d["inputs"]]),
            outputs=tuple([_file_from_wire(f) for f in d["outputs"]]),
            env=tuple([(k, v) for k, v in d["env"]]),
            resources=_resources(d["resources"]), category=d["category"],
            library=None if lib is None else LibrarySpec(
                name=lib["name"], key=lib["key"], command=lib["command"],
                inputs=tuple(_file_from_wire(f) for f in lib["inputs"]),
                resources=Resources(**lib["resources"]), slots=lib["slots"],
                env=tuple((str(k), str(v)) for k, v in lib["env"]),
                environment=lib["environment"]),
            cache_forever=d["cache_forever"], failed_dir=d["failed_dir"], attempt=d["attempt"],
            stops_run=d["stops_run"], minis=tuple(
                MiniTask(key=m["key"], name=m["name"], command=m["command"],
                         inputs=tuple(_file_from_wire(f) for f in m["inputs"]),
                         outputs=tuple(_file_from_wire(f) for f in m["outputs"]),
                         env=tuple((str(k), str(v)) for k, v in m["env"]))
                for m in d["minis"]), environment=d["environment"],
            after=tuple(d["after"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ProtocolError(f"garbled task: {e!s:.80}") from None


# The Resources read lately, by their fields: the tasks of a category all name the same.
_RESOURCES_READ: dict[tuple, Resources] = {}


def _resources(d: dict) -> Resources:
    key = tuple(d.items())
    r = _RESOURCES_READ.get(key)
    if r is None:
        if len(_RESOURCES_READ) >= 64:
            _RESOURCES_READ.clear()
        r = _RESOURCES_READ[key] = Resources(**d)
    return r


def _file_to_wire(f: TaskFile) -> list:
    return [f.key, f.sandbox, f.path, f.size, f.url]


def _file_from_wire(v: list) -> TaskFile:
    key, sandbox, path, size, url = v
    return TaskFile(key, sandbox, path, size, url)


@dataclass(frozen=True)
class TaskOutcome:
    """What a worker reports for one task: the TaskResult plus where its files are.

    outputs: (key, size, content hash, path in the worker's cache) for each output made.
    failed: (sandbox name, cache key, path in the worker's cache) for outputs of a failed run.
    unfetched: (key, sources tried) for an input no source could give (status "error").
    inline: (key, bytes) of small outputs sent along, so the manager need not fetch them.
    """

    result: TaskResult
    outputs: tuple[tuple[str, int, str, str], ...] = ()
    failed: tuple[tuple[str, str, str], ...] = ()
    unfetched: tuple[tuple[str, tuple[str, ...]], ...] = ()
    inline: tuple[tuple[str, bytes], ...] = ()


def outcome_to_wire(o: TaskOutcome) -> dict:
    r = o.result
    return {"id": r.task_id, "status": r.status, "exit_code": r.exit_code, "reason": r.reason,
            "stderr": r.stderr_tail, "measured": r.measured.__dict__, "worker": r.worker,
            "outputs": o.outputs, "failed": o.failed, "unfetched": o.unfetched,
            "inline": [[k, base64.b64encode(data).decode()] for k, data in o.inline]}


def outcome_from_wire(d: dict) -> TaskOutcome:
    # Called once a task on the manager's loop, with an outcome its schema passed (decode):
    # its values have their types already. Lists (not generators) and positional fields,
    # and nothing built for the lists a successful task leaves empty.
    try:
        outputs = tuple([(k, s, h, p) for k, s, h, p in d["outputs"]])
        result = TaskResult(d["id"], d["status"], d["exit_code"], d["reason"], d["stderr"],
                            Measured(**d["measured"]), d["worker"],
                            tuple([(k, s, h) for k, s, h, _ in outputs]))
        failed = d["failed"]
        failed = tuple([(n, k, p) for n, k, p in failed]) if failed else ()
        unfetched = d["unfetched"]
        unfetched = tuple([(k, tuple(sources)) for k, sources in unfetched]) if unfetched \
            else ()
        inline = d["inline"]
        inline = tuple([(k, base64.b64decode(data, validate=True))
                        for k, data in inline]) if inline else ()
    except (KeyError, TypeError, ValueError, binascii.Error) as e:
        raise ProtocolError(f"garbled outcome: {e!s:.80}") from None
    return TaskOutcome(result, outputs, failed, unfetched, inline)


def resources_to_wire(r: Resources) -> dict:
    return dict(r.__dict__)


def resources_from_wire(d: dict) -> Resources:
    try:
        return Resources(**d)
    except TypeError as e:
        raise ProtocolError(f"garbled resources: {e}") from None


# ---------------------------------------------------------------- blocking connections

# Bytes a connection reads ahead of the frame it is at (messages come in batches).
READ_AHEAD = 256 * 1024
# A file's data is read in pieces: the reader sleeps until this much has arrived (SO_RCVLOWAT)
# instead of waking for every packet.
DATA_LOWAT = 256 * 1024
# Linux's SO_MAX_PACING_RATE (Python names no constant for it): the most bytes per second
# the kernel lets this socket send, spread evenly instead of in bursts.
SO_MAX_PACING_RATE = getattr(socket, "SO_MAX_PACING_RATE",
                             47 if sys.platform.startswith("linux") else None)
UNPACED = 2 ** 64 - 1


class Connection:
    """A blocking framed connection (worker side, peers, handshakes). send() is thread-safe.

    Reading keeps its own buffer of what arrived ahead of the current frame; a file's data
    goes from the socket straight into the caller's buffer (read_into), waking the reader
    once per piece rather than per packet.
    """

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._send_lock = threading.Lock()
        self._buf = bytearray(READ_AHEAD)
        self._view = memoryview(self._buf)
        self._start = self._end = 0  # the bytes read ahead: self._buf[_start:_end]
        # TLS records do not map to socket bytes, and an SSLSocket takes no flags
        self._plain = not isinstance(sock, tls.SSLSocket)
        self._lowat = 1
        self._pace = UNPACED

    def send(self, *msgs) -> None:
        data = b"".join(encode(m) for m in msgs)
        with self._send_lock:
            self.sock.sendall(data)

    def try_send(self, *msgs) -> bool:
        """send(), unless another thread is sending (then the peer hears from us anyway)."""
        if not self._send_lock.acquire(blocking=False):
            return False
        try:
            self.sock.sendall(b"".join(encode(m) for m in msgs))
        finally:
            self._send_lock.release()
        return True

    def send_raw(self, data: bytes, more: bool = False) -> None:
        """`more`: further bytes follow at once (a frame header before its data), so the
        kernel holds these back to share packets with them instead of sending them alone."""
        with self._send_lock:
            if more and self._plain:
                self.sock.sendall(data, socket.MSG_MORE)
            else:
                self.sock.sendall(data)

    def pace(self, rate: int | None) -> None:
        """Send at most `rate` bytes per second from now on (None: as fast as TCP may), the
        packets spread evenly; a no-op where the kernel cannot pace a socket."""
        rate = UNPACED if rate is None else max(1, rate)
        if rate == self._pace or not self._plain or SO_MAX_PACING_RATE is None:
            return
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE, struct.pack("Q", rate))
        except OSError:
            return
        self._pace = rate

    def recv_frame(self, limit: int = MAX_FRAME) -> tuple[int, bytes]:
        """The next frame, at most `limit` bytes long; EOFError when the other side closed
        cleanly between frames."""
        kind, length = self.recv_head(limit)
        return kind, self.recv_payload(length)

    def recv_head(self, limit: int = MAX_FRAME) -> tuple[int, int]:
        """The next frame's kind and payload length; its payload is read next, whole with
        recv_payload or in pieces with read_into. EOFError as for recv_frame."""
        head = self._read(HEADER.size)
        if not head:
            raise EOFError("connection closed")
        if len(head) < HEADER.size:
            raise ProtocolError("connection closed inside a frame header")
        length, kind = HEADER.unpack(head)
        _check_header(length, kind, limit)
        return kind, length

    def recv_payload(self, length: int) -> bytes:
        payload = self._read(length)
        if len(payload) < length:
            raise ProtocolError("connection closed inside a frame")
        return payload

    def read_into(self, view: memoryview) -> None:
        """Fill `view` with the next bytes of the current frame's payload: first what was
        read ahead, the rest from the socket straight into `view` (no bytes object, no copy
        through the read-ahead buffer), asleep until all of it (up to DATA_LOWAT) arrived."""
        got = min(len(view), self._end - self._start)
        view[:got] = self._view[self._start:self._start + got]
        self._start += got
        while got < len(view):
            # never more than the bytes this frame still owes: those are sure to come
            self._set_lowat(min(len(view) - got, DATA_LOWAT))
            n = self.sock.recv_into(view[got:])
            if not n:
                raise ProtocolError("connection closed inside a frame")
            got += n

    def _read(self, n: int) -> bytes:
        """The next `n` bytes (fewer only if the other side closed first)."""
        if self._end - self._start < n:
            if n > len(self._buf):  # a payload larger than the buffer: read it whole
                out = bytearray(n)
                got = self._end - self._start
                out[:got] = self._view[self._start:self._end]
                self._start = self._end = 0
                self._set_lowat(1)
                while got < n and (k := self.sock.recv_into(memoryview(out)[got:])):
                    got += k
                return bytes(out[:got])
            self._fill(n)
        got = min(n, self._end - self._start)
        data = bytes(self._view[self._start:self._start + got])
        self._start += got
        return data

    def _fill(self, n: int) -> None:
        """Read until `n` bytes are ahead (or the other side closed), n <= READ_AHEAD."""
        have = self._end - self._start
        if self._start:
            self._buf[:have] = self._view[self._start:self._end]
            self._start, self._end = 0, have
        self._set_lowat(1)
        while self._end < n:
            k = self.sock.recv_into(self._view[self._end:])
            if not k:
                return
            self._end += k

    def _set_lowat(self, n: int) -> None:
        # Until the socket holds n bytes it neither wakes a poll nor returns from a recv.
        # Set only to bytes the sender is sure to send, so a read never waits for more.
        if self._plain and n != self._lowat:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, n)
            self._lowat = n

    def recv(self, *expect: type, limit: int = MAX_FRAME):
        """The next message, which must be one of `expect` (if given); Refuse raises."""
        kind, payload = self.recv_frame(limit)
        if kind != MSG:
            raise ProtocolError("unexpected data frame")
        msg = decode(payload)
        if isinstance(msg, Refuse) and Refuse not in expect:
            raise ProtocolError(f"refused: {msg.reason}")
        if expect and not isinstance(msg, expect):
            raise ProtocolError(f"unexpected {msg.TYPE}")
        return msg

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def tune(sock: socket.socket) -> None:
    """Small messages must leave at once; dead peers must be noticed eventually."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    # A host whose link went down sends no RST: notice it in ~15 s, idle or not.
    for opt, value in (("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 4),
                       ("TCP_USER_TIMEOUT", 15000)):
        if hasattr(socket, opt):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)


def check_tls(sock: socket.socket, ssl_context: ssl.SSLContext | None) -> None:
    """Before a server wraps a new connection: does the client speak TLS exactly when this
    side does? If not, say so in a plain Refuse it can read (a TLS client's library reports
    our plain bytes as a bad record) and raise ProtocolError. A TLS connection opens with a
    handshake record, first byte 0x16; a frame starting so would be over 369 MB."""
    first = sock.recv(1, socket.MSG_PEEK)
    if not first:
        raise EOFError("connection closed before the handshake")
    tls = first == b"\x16"
    if tls == (ssl_context is not None):
        return
    if tls:
        sock.sendall(encode(Refuse("this side does not speak TLS: remove --ssl")))
        raise ProtocolError("the client speaks TLS (its --ssl), this side does not")
    sock.sendall(encode(Refuse("the manager speaks TLS: add --ssl")))
    raise ProtocolError("the client does not speak TLS (no --ssl), this side does")


def connect(host: str, port: int, ssl_context: ssl.SSLContext | None = None,
            timeout: float | None = HANDSHAKE_TIMEOUT_S) -> Connection:
    sock = socket.create_connection((_lookup_name(host), port), timeout=timeout)
    tune(sock)
    if ssl_context is not None:
        sock = ssl_context.wrap_socket(sock, server_hostname=host)
    return Connection(sock)


def _lookup_name(host: str) -> str | bytes:
    """`host` as getaddrinfo is given it: an ASCII name as its bytes, the same name, but
    Python loads its IDNA codec (with stringprep and unicodedata) to encode a str first, on
    the worker's way to its first connection. A malformed ASCII name then fails as the
    lookup's OSError, not as the codec's UnicodeError."""
    return host.encode("ascii") if host.isascii() else host


def read_secret(path: str | None) -> bytes | None:
    """The shared secret in a password file (surrounding whitespace ignored), or None."""
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            return f.read().strip()
    except OSError as e:
        raise InfrastructureError(f"cannot read password file {path}: {e.strerror}") from None


def server_context(cert: str, key: str) -> ssl.SSLContext:
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise InfrastructureError(f"cannot load TLS certificate {cert}: {e}") from None
    return ctx


def client_context() -> ssl.SSLContext:
    import ssl

    """TLS for privacy; identity is proven by the HMAC handshake, so self-signed certs are fine."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _proof(secret: bytes | None, side: str, nonce: str) -> str:
    if secret is None:
        return ""
    import hashlib  # here, as hmac: only a run with --password needs OpenSSL's hashes loaded
    import hmac

    return hmac.new(secret, f"{side}:{nonce}".encode(), hashlib.sha256).hexdigest()


def _proves(proof: str, secret: bytes, side: str, nonce: str) -> bool:
    """Whether `proof` is `side`'s proof of `secret` for `nonce` (compared in constant time)."""
    import hmac

    return hmac.compare_digest(proof, _proof(secret, side, nonce))


def _nonce() -> str:
    return os.urandom(16).hex()


def client_handshake(conn: Connection, hello: Hello, secret: bytes | None,
                     welcome: Welcome | None = None) -> Welcome:
    """Say hello, prove the secret, check the server's proof; the server's Welcome."""
    conn.send(hello)
    ch = conn.recv(Challenge, limit=MAX_HANDSHAKE_FRAME)
    if ch.version != hello.version:
        raise ProtocolError(f"version mismatch: server speaks {ch.version}, "
                            f"this side speaks {hello.version}")
    conn.send(Auth(_proof(secret, "client", ch.nonce)))
    got = conn.recv(Welcome, limit=MAX_HANDSHAKE_FRAME)
    if secret is not None and not _proves(got.proof, secret, "server", hello.nonce):
        raise ProtocolError("authentication failed: the server does not know the secret")
    return got


def server_handshake(conn: Connection, secret: bytes | None) -> Hello:
    """Check the client's version and proof; the caller then sends `welcome_for(hello)`.

    Every message before the proof is at most MAX_HANDSHAKE_FRAME bytes; the caller bounds
    the time (see vinemake.wire.gate)."""
    kind, payload = conn.recv_frame(MAX_HANDSHAKE_FRAME)
    version = _version_in(payload) if kind == MSG else VERSION
    if version != VERSION:
        # before the schema: another release's Hello has other fields
        reason = f"version mismatch: server speaks {VERSION}, client speaks {version}"
        conn.send(Refuse(reason))
        raise ProtocolError(reason)
    hello = decode(payload) if kind == MSG else None
    if not isinstance(hello, Hello):
        raise ProtocolError("unexpected " + (hello.TYPE if hello else "data frame"))
    nonce = _nonce()
    conn.send(Challenge(VERSION, nonce))
    auth = conn.recv(Auth, limit=MAX_HANDSHAKE_FRAME)
    if secret is not None:
        if not auth.proof:
            reason = "authentication failed: no proof of the secret (missing --password?)"
        elif not _proves(auth.proof, secret, "client", nonce):
            reason = "authentication failed: wrong secret"
        else:
            reason = ""
        if reason:
            conn.send(Refuse(reason))
            raise ProtocolError(reason)
    return hello


def _version_in(payload: bytes) -> object:
    """The version a Hello of any release names (VERSION if it names none: decode judges)."""
    try:
        body = _DECODER.decode(payload.decode())
    except (ValueError, RecursionError):
        return VERSION
    return body.get("version", VERSION) if isinstance(body, dict) else VERSION


def welcome_for(hello: Hello, secret: bytes | None, **kw) -> Welcome:
    """The Welcome that answers `hello`, carrying the server's proof of the secret."""
    return Welcome(proof=_proof(secret, "server", hello.nonce), **kw)


def host_id() -> str:
    """Same value exactly when two processes share a kernel boot and a network namespace.

    The namespace is part of it so workers in emulated hosts (ip netns) count as remote.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = "?"
    try:
        netns = os.stat("/proc/self/ns/net").st_ino
    except OSError:
        netns = 0
    return f"{socket.gethostname()}/{boot}/{netns}"


def new_hello(role: str, **kw) -> Hello:
    return Hello(version=VERSION, role=role, nonce=_nonce(), **kw)
