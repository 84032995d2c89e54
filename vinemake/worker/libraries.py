"""Library instances on a worker: each started once, serving function calls, restarted if it dies.

The worker uses four things (or, for a whole `@call` Task, `pool.run(task, sandbox, prepare)`):

    pool = LibraryPool(root_dir)               # instance dirs and logs live under root_dir
    inst = pool.get(spec, prepare)             # the instance for spec.key (not started yet);
                                               # prepare(dir) puts spec.inputs into dir
    function, args = split_call(task.command)  # "FUNCTION ARG..." -> ("FUNCTION", [ARG...])
    result = inst.call(function, args, cwd=sandbox, timeout=wall_time, env=task.env,
                       output=path_for_the_calls_stdout_and_stderr)  # output is optional
    pool.close()                               # stop every instance

`call` starts the instance if it is not running (the first call placed on this worker pays the
library's start-up; the rest do not), blocks while `spec.slots` calls are already in flight, and
returns a CallResult whose status/exit_code/reason/stderr_tail map one to one onto TaskResult.
It never raises for anything the user's library or function did. The function must create the
rule's targets in `cwd`; checking them is the worker's job, as for any command.

An instance that dies fails the calls it was running (with the exit status and its log's tail)
and is started afresh, in a fresh directory, by the next call. A call that outlives its timeout
is cancelled; a library that does not answer the cancel within a grace period is killed, since
nothing else can stop a call inside a foreign program.

The wire format (newline-delimited JSON over the library's stdin/stdout) is specified in
docs/libraries.md. This module imports nothing from the parser, graph or engine.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from vinemake.common.paths import remove_path
from vinemake.common.records import dataclass
from vinemake.common.task import LibrarySpec, Task, with_threads

__all__ = ["CallResult", "CallHandle", "LibraryInstance", "LibraryPool", "split_call",
           "kill_session", "PROTOCOL_VERSION"]

PROTOCOL_VERSION = 1
TAIL_CHARS = 4000


@dataclass(frozen=True)
class CallResult:
    """What became of one call; the fields mean what TaskResult's fields of the same name mean.

    status is "ok", "failed" (the function raised, does not exist, or the library failed),
    "signaled" (the instance died from a signal while running the call), "resource_exceeded"
    (over its timeout) or "error" (vinemake's side: the instance could not be set up, every
    slot was busy, or the pool is closed; the engine may resubmit).
    """

    status: str
    exit_code: int | None = None
    reason: str = ""
    stderr_tail: str = ""
    # What the library reported the call cost, if it did: measurements, not outcome, so two
    # results that ended the same way compare equal whatever they cost.
    cpu_s: float = dataclasses.field(default=0.0, compare=False)
    memory_mb: float = dataclasses.field(default=0.0, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def split_call(command: str) -> tuple[str, list[str]]:
    """`evaluate a.txt "b c"` -> ("evaluate", ["a.txt", "b c"]). ValueError when unusable."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise ValueError(f"cannot split function call {command!r}: {exc}") from None
    if not words:
        raise ValueError("a function call needs a function name")
    return words[0], words[1:]


def tail(text: str, limit: int = TAIL_CHARS) -> str:
    """The last `limit` characters of text, marked when something was cut."""
    return text if len(text) <= limit else "…" + text[-limit:]


def describe_exit(returncode: int) -> str:
    """`exited with status 3`, `was killed by signal 9 (SIGKILL)`."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown"
        return f"was killed by signal {-returncode} ({name})"
    return f"exited with status {returncode}"


def call_request(call_id: int, function: str, args: list[str], cwd: str,
                 env: tuple[tuple[str, str], ...], output: str | None = None) -> bytes:
    """The request line for one call."""
    obj: dict[str, Any] = {"id": call_id, "function": function, "args": list(args), "cwd": cwd}
    if env:
        obj["env"] = dict(env)
    if output is not None:
        obj["output"] = output
    return (json.dumps(obj) + "\n").encode()


def result_of(name: str, function: str, message: dict[str, Any]) -> CallResult:
    """Turn the library's response to a call into a CallResult."""
    cpu_s, memory_mb = _usage(message.get("usage"))
    if message.get("status") == "ok":
        return CallResult("ok", 0, cpu_s=cpu_s, memory_mb=memory_mb)
    error = str(message.get("error") or "no error text given")
    return CallResult("failed", 1, f"function {function} failed in library {name}", tail(error),
                      cpu_s, memory_mb)


def _usage(usage: Any) -> tuple[float, float]:
    """(CPU s, peak MB) from a response's optional `usage`; zeros for anything malformed."""
    if not isinstance(usage, dict):
        return 0.0, 0.0
    cpu, rss = usage.get("cpu_s"), usage.get("max_rss_kb")
    ok = [isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in (cpu, rss)]
    return (float(cpu) if ok[0] else 0.0), (rss / 1000 if ok[1] else 0.0)


def with_output(result: CallResult, output: str) -> CallResult:
    """A failed call's stderr tail: what the call printed, then the library's error text."""
    if result.ok or not output:
        return result
    text = output if output.endswith("\n") or not result.stderr_tail else output + "\n"
    return dataclasses.replace(result, stderr_tail=tail(text + result.stderr_tail))


def read_tail(path: str, limit: int = TAIL_CHARS) -> str:
    """The last `limit` characters of a file; empty if it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - limit))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def kill_session(sid: int) -> None:
    """SIGKILL every process in session sid: a library instance and everything it started.

    The group goes first (one atomic kill); the session scan then finds what moved to groups
    of its own, like each call the Python library program runs. Twice, for what was forking
    during the first scan. Only a process that left the session (setsid, a daemon) escapes.
    """
    try:
        os.killpg(sid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for _ in range(2):
        for pid in _pids():
            try:
                if os.getsid(pid) == sid:
                    os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []  # no /proc: the group kill is all there is


class _StartFailed(Exception):
    """The library process ended, or never said it was ready; args[0] is a CallResult."""


class _Latch:
    """A one-shot event on one bare lock: set() wakes wait(), and every later wait returns at
    once. threading.Event builds a new lock for each wait and notifies through a Condition's
    Python code; a call's hot path crosses two of them, between the reader and the caller."""

    __slots__ = ("_lock", "_set")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()  # held until set
        self._set = False

    def set(self) -> None:
        self._set = True
        _open(self._lock)

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        """True once set; False if `timeout` seconds passed first."""
        if self._set:
            return True
        limit = -1 if timeout is None else min(max(timeout, 0.0), threading.TIMEOUT_MAX)
        if self._lock.acquire(timeout=limit):
            _open(self._lock)  # left open for every later wait
        return self._set


def _open(lock) -> None:
    try:
        lock.release()
    except RuntimeError:
        pass  # open already: set twice, or a waiter went through and opened it again


class CallHandle:
    """One call, from before it has a slot until its response: cancel() stops it from any
    thread (a call not begun never runs; a running one is cancelled in its library)."""

    def __init__(self) -> None:
        self.done = _Latch()  # answered, or cancelled: the caller wakes
        self.answered = _Latch()
        self.result: CallResult | None = None
        self.cancelled = False
        self.turn: _Turn | None = None  # its place in the line for a slot, while it waits

    def finish(self, result: CallResult) -> None:
        if self.result is None:
            self.result = result
        self.answered.set()
        self.done.set()

    def cancel(self) -> None:
        self.cancelled = True  # before looking at turn: _Slots.take sets them the other way
        turn = self.turn
        if turn is not None:
            turn.latch.set()
        self.done.set()


class _Turn:
    """A call's place in the line for a slot: its latch is set when it is given one
    (`granted`) or when the call is cancelled."""

    __slots__ = ("latch", "granted")

    def __init__(self) -> None:
        self.latch = _Latch()
        self.granted = False


class _Slots:
    """A library's slots, given in the order calls asked for them (a semaphore's waiters race
    for a freed slot: a call could wait behind many that came later); a call cancelled while
    it waits leaves the line at once."""

    def __init__(self, count: int) -> None:
        self._free = count
        self._lock = threading.Lock()
        self._line: collections.deque[_Turn] = collections.deque()

    def take(self, handle: CallHandle, wait: bool) -> bool:
        """A slot for the call of `handle`; False when it was cancelled first, or every slot
        is busy and it may not wait."""
        with self._lock:
            if self._free and not self._line:
                self._free -= 1
                return True
            if not wait:
                return False
            turn = handle.turn = _Turn()
            self._line.append(turn)
        if handle.cancelled:  # cancelled before it could see the turn to wake
            turn.latch.set()
        turn.latch.wait()
        with self._lock:
            handle.turn = None
            if not turn.granted:
                self._line.remove(turn)
            return turn.granted

    def give_back(self) -> None:
        with self._lock:
            if self._line:
                turn = self._line.popleft()
                turn.granted = True
                turn.latch.set()
            else:
                self._free += 1


def _interpreter_first(path: str) -> str:
    """PATH with this worker's interpreter's directory first, so that `python3 -m
    vinemake.library` finds vinemake even when vinemake was started by its absolute path
    from a virtual environment nobody activated. A PATH the rule exports still wins."""
    own = os.path.dirname(sys.executable)
    parts = [p for p in path.split(os.pathsep) if p and p != own]
    return os.pathsep.join([own, *parts])


def library_path() -> tuple[tuple[str, str], ...]:
    """PYTHONPATH for a library started by another interpreter (its environment's): where
    vinemake itself is, so `python3 -m vinemake.library` still finds it."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    rest = os.environ.get("PYTHONPATH", "")
    return (("PYTHONPATH", here + (os.pathsep + rest if rest else "")),)


class _Process:
    """One running library process: writes requests, and a reader thread matches responses."""

    def __init__(self, spec: LibrarySpec, workdir: str, log_path: str):
        self.name = spec.name
        self.log_path = log_path
        # Its environment's PATH (in spec.env) wins over vinemake's interpreter.
        env = {**os.environ, "PATH": _interpreter_first(os.environ.get("PATH", "")),
               # Threads as for a command: the library sizes its pools when it starts.
               **dict(with_threads(spec.resources.cores, spec.env)),
               "VINEMAKE_LIBRARY": spec.name,
               "VINEMAKE_LIBRARY_PROTOCOL": str(PROTOCOL_VERSION)}
        with open(log_path, "ab") as log:
            # A session of its own, so stopping the instance stops whatever it started.
            self.popen = subprocess.Popen(
                ["/bin/sh", "-c", spec.command], cwd=workdir, env=env, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        self.ready = threading.Event()
        self.spawned_at = time.time()
        self.ready_at: float | None = None  # when it said it was ready
        self.announced = False  # its start was reported (LibraryInstance.on_ready)
        self.ended: CallResult | None = None  # why it ended, once it has
        self.pending: dict[int, tuple[str, CallHandle]] = {}
        self.started = False  # it said it was ready
        # Two locks: a writer blocked on a full pipe must not stop the reader matching responses.
        self.lock = threading.Lock()  # pending and ended
        self.write_lock = threading.Lock()
        self.ids = itertools.count(1)
        self.reader = threading.Thread(target=self._read, name=f"library-{spec.name}",
                                       daemon=True)
        self.reader.start()
        threading.Thread(target=self._watch, name=f"library-{spec.name}-exit",
                         daemon=True).start()

    @property
    def alive(self) -> bool:
        return self.ended is None

    def wait_ready(self, timeout: float) -> None:
        if not self.ready.wait(timeout):
            self.kill()
            self.reader.join()
            raise _StartFailed(CallResult("failed", None, f"library {self.name} was not ready "
                                          f"after {timeout:g}s", self.log_tail()))
        if not self.started:
            raise _StartFailed(self.ended)

    def call(self, function: str, args: list[str], cwd: str,
             env: tuple[tuple[str, str], ...], output: str | None, timeout: float | None,
             cancel_grace: float, pending: CallHandle) -> CallResult:
        with self.lock:
            if self.ended is not None:
                return self.ended
            call_id = next(self.ids)
            self.pending[call_id] = (function, pending)
        self._send(call_request(call_id, function, args, cwd, env, output))
        if not pending.done.wait(timeout):
            self._cancel(call_id, function, pending, cancel_grace, "exceeded its wall time")
            return CallResult("resource_exceeded", None,
                              f"function {function} exceeded its wall time of {timeout:g}s")
        if pending.result is None:  # cancelled while it ran
            self._cancel(call_id, function, pending, cancel_grace, "was cancelled")
            return CallResult("error", None, f"function {function} was cancelled")
        return pending.result

    def _send(self, line: bytes) -> None:
        with self.write_lock:
            try:
                self.popen.stdin.write(line)
                self.popen.stdin.flush()
            except (OSError, ValueError):
                pass  # it died: the reader sees the end and fails the pending calls with why

    def _cancel(self, call_id: int, function: str, pending: CallHandle, grace: float,
                why: str) -> None:
        self._send((json.dumps({"id": call_id, "cancel": True}) + "\n").encode())
        if not pending.answered.wait(grace):
            # The call may still hold a slot inside the library: only a restart frees it. Wait
            # for the reader to see the end, so the next call starts a new instance.
            self._broken(f"was stopped: it did not cancel a call to {function} that {why}")
            self.kill()
            self.reader.join(grace)

    def _read(self) -> None:
        try:
            for line in self.popen.stdout:
                if line.strip() and not self._on_line(line):
                    break
        finally:
            # Whatever happened here, no call may be left waiting on an instance nobody reads.
            self.kill()
            self._finish(self.popen.wait())

    def _watch(self) -> None:
        """When the library exits, kill what it left in its group.

        Something it started in the background may hold its stdout open; the reader would
        then never see the end, and the calls in flight would wait forever. WNOWAIT leaves
        the exit to be reaped by the reader, so the group id cannot be reused before the kill.
        """
        try:
            os.waitid(os.P_PID, self.popen.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            return  # the reader already reaped it, after killing the group
        self.kill()

    def _finish(self, returncode: int) -> None:
        with self.lock:
            if self.ended is None:
                when = "while running this call" if self.started else "before it was ready"
                self.ended = self._death(returncode, when)
            waiting, self.pending = list(self.pending.values()), {}
        for _, pending in waiting:
            pending.finish(self.ended)
        self.ready.set()

    def _on_line(self, line: bytes) -> bool:
        """Handle one line from the library; False when it broke the protocol."""
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            return self._broken(f"wrote a line that is not a protocol message: "
                                f"{line[:200].decode(errors='replace').rstrip()!r}")
        if not self.started:
            if message.get("ready") is not True:
                return self._broken("did not start with a ready message")
            if message.get("protocol", PROTOCOL_VERSION) != PROTOCOL_VERSION:
                return self._broken(f"speaks protocol {message.get('protocol')!r}, "
                                    f"not {PROTOCOL_VERSION}")
            self.started = True
            self.ready_at = time.time()
            self.ready.set()
            return True
        call_id = message.get("id")
        with self.lock:
            entry = self.pending.pop(call_id, None) if isinstance(call_id, int) else None
        if entry is not None:
            function, pending = entry
            pending.finish(result_of(self.name, function, message))
        return True  # a response to a cancelled call, or to nothing: ignored

    def _broken(self, what: str) -> bool:
        """Record why the instance must end (the first reason wins); False, to stop reading."""
        with self.lock:
            if self.ended is None:
                self.ended = CallResult("failed", None, f"library {self.name} {what}")
        return False

    def _death(self, returncode: int, when: str) -> CallResult:
        status = "signaled" if returncode < 0 else "failed"
        return CallResult(status, returncode, f"library {self.name} {describe_exit(returncode)} "
                          f"{when}", self.log_tail())

    def log_tail(self) -> str:
        return read_tail(self.log_path)

    def kill(self) -> None:
        kill_session(self.popen.pid)

    def stop(self, grace: float) -> None:
        """Close the channel (the library's cue to exit), then kill what is left after grace."""
        with self.write_lock:
            try:
                self.popen.stdin.close()
            except OSError:
                pass
        # On the library's exit the reader kills whatever it left in its group, then reaps it.
        self.reader.join(grace)
        if self.reader.is_alive():
            self.kill()
            self.reader.join()
        self.popen.stdout.close()


class LibraryInstance:
    """One library on this worker, started when its first call comes, restarted after a death."""

    def __init__(self, spec: LibrarySpec, root_dir: str, prepare: Callable[[str], None],
                 start_timeout: float, cancel_grace: float,
                 on_ready: Callable[[str, float, float], None] | None = None):
        self.spec = spec
        self.on_ready = on_ready  # (name, started, ready) once per process that became ready
        self.prepare = prepare
        base = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec.name)
        self.dir = os.path.join(root_dir, f"{base}-{spec.key[-16:]}")
        self.log_path = self.dir + ".log"
        self.start_timeout = start_timeout
        self.cancel_grace = cancel_grace
        self.starts = 0  # how many times a process was started: 1 unless it died
        self.closed = False
        self._slots = _Slots(max(1, spec.slots))
        self._lock = threading.Lock()
        self._process: _Process | None = None

    @property
    def pid(self) -> int | None:
        """The running library's pid, for the worker's monitor; None while none runs.

        It is also the id of the session every process of the instance is in (the calls'
        forked children included, in groups of their own); kill_session(pid) stops them all.
        """
        process = self._process
        return process.popen.pid if process is not None and process.alive else None

    def call(self, function: str, args: list[str], cwd: str, timeout: float | None = None,
             env: tuple[tuple[str, str], ...] = (), output: str | None = None,
             wait_for_slot: bool = True,
             on_begin: Callable[[], None] | None = None,
             handle: CallHandle | None = None) -> CallResult:
        """Run FUNCTION(*args) in the library with cwd as its working directory.

        `on_begin()` is called as the call really begins: a slot is free and the library is
        ready (it may have had to start first), not before. `handle.cancel()`, from any
        thread, withdraws the call if it has not begun (status "error", nothing run) and
        cancels it in the library if it has.

        `output` names a file for the call's stdout and stderr (the Python library program
        honours it; others may not); a failed call's stderr_tail then starts with its tail.
        With wait_for_slot=False a call that finds every slot busy returns status "error"
        at once instead of waiting (the manager accounts slots; this catches it overbooking).
        """
        handle = handle or CallHandle()
        if not self._slots.take(handle, wait_for_slot):
            if handle.cancelled:
                return CallResult("error", None, "cancelled before it started")
            return CallResult("error", None, f"library {self.spec.name} has all "
                              f"{self.spec.slots} slots busy")
        try:
            try:
                process = self._running()
            except _StartFailed as failed:
                return failed.args[0]
            if process is None:
                return CallResult("error", None, f"library {self.spec.name} is shut down")
            if handle.cancelled:
                return CallResult("error", None, "cancelled before it started")
            if output is not None:
                output = os.path.abspath(output)
            if on_begin is not None:
                on_begin()
            result = process.call(function, args, os.path.abspath(cwd), env, output, timeout,
                                  self.cancel_grace, handle)
            return result if output is None else with_output(result, read_tail(output))
        finally:
            self._slots.give_back()

    def _running(self) -> _Process | None:
        with self._lock:
            if self.closed:
                return None
            if self._process is None or not self._process.alive:
                try:
                    self._start()
                except Exception as exc:  # prepare() is the worker's code: anything may fail
                    # Setting up (linking inputs, spawning) is vinemake's failure, not the
                    # user's: status "error" lets the engine resubmit the call.
                    raise _StartFailed(CallResult(
                        "error", None, f"cannot start library {self.spec.name}: {exc}")) from exc
            process = self._process
        assert process is not None
        process.wait_ready(self.start_timeout)
        self._announce(process)
        return process

    def _announce(self, process: _Process) -> None:
        with self._lock:
            if process.announced or process.ready_at is None:
                return
            process.announced = True
        if self.on_ready is not None:
            self.on_ready(self.spec.name, process.spawned_at, process.ready_at)

    def _start(self) -> None:
        if self._process is not None:
            self._process.stop(0)
        remove_path(self.dir)  # a fresh start gets a fresh directory
        os.makedirs(self.dir)
        self.prepare(self.dir)
        self.starts += 1
        self._process = _Process(self.spec, self.dir, self.log_path)

    def close(self, grace: float = 2.0) -> None:
        with self._lock:
            self.closed = True
            if self._process is not None:
                self._process.stop(grace)


class LibraryPool:
    """The libraries on one worker, by key."""

    def __init__(self, root_dir: str, *, start_timeout: float = 120.0,
                 cancel_grace: float = 2.0,
                 on_ready: Callable[[str, float, float], None] | None = None):
        self.root_dir = root_dir
        self.on_ready = on_ready  # told (name, started, ready) when an instance is ready
        self.start_timeout = start_timeout
        self.cancel_grace = cancel_grace
        self._instances: dict[str, LibraryInstance] = {}
        self._lock = threading.Lock()
        os.makedirs(root_dir, exist_ok=True)

    def get(self, spec: LibrarySpec, prepare: Callable[[str], None]) -> LibraryInstance:
        """The instance of spec (by spec.key), created on first use; started by its first call."""
        with self._lock:
            instance = self._instances.get(spec.key)
            if instance is None:
                instance = LibraryInstance(spec, self.root_dir, prepare, self.start_timeout,
                                           self.cancel_grace, self.on_ready)
                self._instances[spec.key] = instance
            return instance

    def run(self, task: Task, sandbox: str, prepare: Callable[[str], None],
            output: str | None = None) -> CallResult:
        """Run a `@call` task (task.library set) in its library: the worker's one entry point.

        The task's wall time bounds the call (not the library's start-up); its env reaches
        the function.
        """
        assert task.library is not None, "run() is for function-call tasks"
        try:
            function, args = split_call(task.command)
        except ValueError as exc:
            return CallResult("failed", None, str(exc))
        instance = self.get(task.library, prepare)
        return instance.call(function, args, sandbox, timeout=task.resources.wall_time_s,
                             env=task.env, output=output)

    def instances(self) -> list[LibraryInstance]:
        with self._lock:
            return list(self._instances.values())

    def close(self, grace: float = 2.0) -> None:
        """Stop every instance: each gets `grace` seconds to exit after its channel closes."""
        for instance in self.instances():
            instance.close(grace)
