"""The Python library program: `python3 -m vinemake.library [--mode M] FILE.py` serves FILE.py.

Why it works this way (the protocol itself is in docs/libraries.md):

- FILE.py is imported once, before the program says it is ready. That import is the expensive
  preamble (numpy, a model's weights) every call would otherwise pay again.
- Each call runs in a child forked from this process after the import ("fork mode", as in
  TaskVine's serverless libraries). The child chdirs into the call's sandbox, which a thread
  could not do (the working directory is process-global), and whatever the function does to
  module globals, the environment or open files dies with the child, so one call cannot leak
  state into the next. Each child leads its own process group, so cancelling a call kills what
  it started too. Forking is cheap here: this process holds only the user's module, not a
  manager or a worker. Start-up stays paid once because the child inherits the imported module.
- The parent is single-threaded: one poll loop over the request channel and each running
  child's pidfd and result pipe. No threads means fork never copies a lock some other thread
  holds.
- Requests arrive on stdin and responses leave on stdout, but the user's code must never touch
  that channel: at start the channel is moved to private descriptors, fd 0 becomes /dev/null
  and fd 1 is pointed at stderr, which the worker keeps as the library's log.
- `--mode direct` (TaskVine's "direct" execution) trades that isolation for speed: a fork of
  a Python process costs milliseconds of CPU (its page tables, then a copy of every page the
  child writes), many times a trivial call. Each call then runs inside a long-lived *slot*
  process, forked from this one once and reused call after call, so globals a call changes
  stay for the next call that slot serves. A slot is forked when a call finds none idle (so
  there are as many as calls were ever in flight at once) and again after one dies or is
  cancelled, always from this untouched process.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import resource
import select
import signal
import sys
from collections import namedtuple
from collections.abc import Callable
from types import ModuleType

# Imports are kept few on purpose (traceback is imported only when a call fails; no
# dataclasses, no typing): every page this process holds is mapped again into each call's
# forked child, so each megabyte imported here is paid once per call (docs/performance.md).

__all__ = ["PROTOCOL_VERSION", "MODES", "Request", "parse_request", "response", "load_module",
           "functions_of", "main"]

PROTOCOL_VERSION = 1
MODES = ("fork", "direct")  # a child per call, or calls run in reused slot processes
USAGE = "usage: python3 -m vinemake.library [--mode fork|direct] FILE.py"
# Each read allocates this much before it is cut to what came: a smaller buffer touches fewer
# of the heap's pages, each copied again after the next fork. A few calls' requests fit.
_READ_CHUNK = 4096


class Request(namedtuple("Request", "id function args cwd env output cancel",
                         defaults=("", (), ".", (), None, False))):
    """One line from the pool: a call to run, or a call to cancel.

    id (int), function, args (strings), cwd, env ((name, value) pairs, sorted), output (where
    the call's stdout and stderr go; None: the library's log), cancel (a call to cancel).
    """

    __slots__ = ()


def parse_request(line: bytes) -> Request:
    """Decode one request line. ValueError names what is wrong with it."""
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"request is not JSON: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), int):
        raise ValueError("request must be a JSON object with an integer \"id\"")
    if obj.get("cancel"):
        return Request(id=obj["id"], cancel=True)
    function, args = obj.get("function"), obj.get("args", [])
    if not isinstance(function, str) or not isinstance(args, list) \
            or not all(isinstance(a, str) for a in args):
        raise ValueError("request needs \"function\" (a string) and \"args\" (strings)")
    env, output = obj.get("env", {}), obj.get("output")
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise ValueError("request \"env\" must map names to strings")
    return Request(id=obj["id"], function=function, args=tuple(args),
                   cwd=str(obj.get("cwd", ".")), env=tuple(sorted(env.items())),
                   output=None if output is None else str(output))


def response(call_id: int | None, error: str | None = None,
             usage: resource.struct_rusage | None = None) -> bytes:
    """The response line for a call: status ok, or status error with the error text.

    `usage` (the call's child, from wait4) adds what it cost: CPU seconds and peak RSS in KiB.
    """
    if error is None and usage is not None and type(call_id) is int:  # not a bool
        # Every call that returned: formatted here, not through json.dumps and its dicts (each
        # object the server touches is a page copied again after the next fork).
        return (f'{{"id": {call_id}, "status": "ok", "usage": {{"cpu_s": '
                f'{round(usage.ru_utime + usage.ru_stime, 4)!r}, "max_rss_kb": '
                f'{usage.ru_maxrss}}}}}\n').encode()
    obj: dict[str, object] = {"id": call_id, "status": "ok" if error is None else "error"}
    if error is not None:
        obj["error"] = error
    if usage is not None:
        obj["usage"] = {"cpu_s": round(usage.ru_utime + usage.ru_stime, 4),
                        "max_rss_kb": usage.ru_maxrss}
    return (json.dumps(obj) + "\n").encode()


def load_module(path: str) -> ModuleType:
    """Import the user's FILE.py once, under its own name, with its folder on sys.path."""
    name = os.path.splitext(os.path.basename(path))[0] or "library"
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def functions_of(module: ModuleType) -> dict[str, Callable[..., object]]:
    """The module's public top-level functions, by name: what calls may name."""
    return {name: value for name, value in vars(module).items()
            if callable(value) and not name.startswith("_")
            and getattr(value, "__module__", None) == module.__name__}


def _run_in_child(function: Callable[..., object], request: Request, report_fd: int) -> None:
    """In the forked child: run the call in its sandbox, report a traceback on failure, exit."""
    code = 1  # until the function has returned
    _own_group(0)
    try:
        _enter(request)
        function(*request.args)
        code = 0
    except BaseException as exc:  # noqa: B036 - SystemExit in a function is a failed call too
        os.set_blocking(report_fd, True)  # the server reads a report larger than the pipe
        _write_all(report_fd, _traceback_of(exc).encode(errors="replace"))
    finally:
        # Whatever happens, the child must never return into the server's loop.
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _enter(request: Request) -> None:
    """Set this process up for the call: its output file on fds 1 and 2, its working
    directory, its environment."""
    if request.output is not None:
        fd = os.open(request.output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    os.chdir(request.cwd)
    if request.env:  # else skip os.environ.update's Python code: a forked child copies the
        os.environ.update(dict(request.env))  # pages that code writes


def _traceback_of(exc: BaseException) -> str:
    """The traceback of what a call raised, starting at the user's function (this module's
    frames left out: an error of ours in setting the call up shows as its last line alone)."""
    import traceback  # only when a call fails: see the imports above

    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _exit_error(status: int, report: bytes) -> str | None:
    """The error text for a finished child, or None when the call succeeded."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "unknown"
        return f"the call was killed by signal {sig} ({name})"
    code = os.waitstatus_to_exitcode(status)
    if code == 0 and not report:
        return None
    return report.decode(errors="replace") or f"the call's process exited with status {code}"


class _Running:
    """A call in a forked child: its pid, the pipe its traceback comes on, and what it said."""

    __slots__ = ("id", "pid", "pidfd", "report_fd", "write_fd", "report")

    def __init__(self, call_id: int, pid: int, pidfd: int | None, report_fd: int):
        self.id, self.pid, self.report_fd = call_id, pid, report_fd
        self.pidfd = pidfd  # None on kernels before Linux 5.3: the pipe's end marks the exit
        self.write_fd: int | None = None  # our copy of the pipe's write end, if we hold one
        self.report = bytearray()


class _Server:
    """The selector loop: requests in, children forked, responses out."""

    def __init__(self, functions: dict[str, Callable[..., object]], chan_in: int, chan_out: int):
        self.functions = functions
        self.chan_in, self.chan_out = chan_in, chan_out
        # The poller and a table fd -> (handler, its argument), not selectors: its layers of
        # Python per event are pages this process writes, each copied again after every fork.
        self.poller = select.epoll() if hasattr(select, "epoll") else select.poll()
        self.handlers: dict[int, tuple[Callable[..., bool], object]] = {}
        self.running: dict[int, _Running | _Slot] = {}  # call id -> its child or slot
        self.pending = b""
        # Responses not yet written: those of one pass of the loop leave in one write, so calls
        # ending together wake the pool's reader once.
        self.outbox: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.outbox.append(data)

    def flush(self) -> None:
        if self.outbox:
            data = b"".join(self.outbox)
            self.outbox.clear()
            _write_all(self.chan_out, data)

    def serve(self) -> None:
        _write_all(self.chan_out, (json.dumps({"ready": True, "protocol": PROTOCOL_VERSION,
                                               "functions": sorted(self.functions)}) + "\n")
                   .encode())
        self._watch(self.chan_in, self._on_requests, self.chan_in)
        handlers = self.handlers
        while True:
            ready = [(fd, handlers.get(fd)) for fd, _ in self.poller.poll()]
            for fd, entry in ready:
                # An earlier handler in this batch may have closed this fd (a call's pipe
                # when its pidfd fired), and a new call may even have reused the number.
                if entry is None or handlers.get(fd) is not entry:
                    continue
                if not entry[0](entry[1]):
                    self.flush()
                    self._stop()
                    return
            self.flush()

    def _watch(self, fd: int, handler: Callable[..., bool], arg: object) -> None:
        """Call handler(arg) whenever fd is readable (or at its end)."""
        self.handlers[fd] = (handler, arg)
        self.poller.register(fd, select.POLLIN)

    def _unwatch(self, fd: int) -> None:
        if self.handlers.pop(fd, None) is not None:
            self.poller.unregister(fd)

    def _on_requests(self, fd: int) -> bool:
        data = os.read(fd, _READ_CHUNK)
        if not data:
            return False  # the pool closed the channel: stop serving
        *lines, self.pending = (self.pending + data).split(b"\n")
        for line in lines:
            if line.strip():
                self._handle(line)
        return True

    def _handle(self, line: bytes) -> None:
        try:
            request = parse_request(line)
        except ValueError as exc:
            self.send(response(None, f"bad request: {exc}"))
            return
        if request.cancel:
            if request.id in self.running:
                self._cancel(request.id)
            return
        function = self.functions.get(request.function)
        if function is None:
            known = ", ".join(sorted(self.functions)) or "none"
            self.send(response(request.id, f"no function named {request.function!r} in this "
                                           f"library (it has: {known})"))
            return
        self._start(function, request, line)

    def _cancel(self, call_id: int) -> None:
        _kill_call(self.running[call_id].pid)

    def _start(self, function: Callable[..., object], request: Request, line: bytes = b"") -> None:
        self.flush()  # what is answered goes out before the fork, not after it
        read_fd, write_fd = _report_pipe()
        sys.stdout.flush()
        sys.stderr.flush()  # or the child would print the parent's buffered text again
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            os.close(self.chan_in)
            os.close(self.chan_out)
            _run_in_child(function, request, write_fd)
        _own_group(pid)  # here too, so a cancel arriving at once finds the group made
        run = _Running(request.id, pid, _pidfd(pid), read_fd)
        if run.pidfd is None:
            os.close(write_fd)  # the pipe's end then marks the child's exit
        else:
            # Held open until the pidfd fires, so the child's exit does not also wake the loop
            # for the pipe's end: one pass of the loop fewer per call.
            run.write_fd = write_fd
        self.running[request.id] = run
        self._watch(read_fd, self._on_report, run)
        if run.pidfd is not None:
            self._watch(run.pidfd, self._on_exit, run)

    def _on_report(self, run: _Running) -> bool:
        try:
            data = os.read(run.report_fd, _READ_CHUNK)
        except BlockingIOError:
            return True  # nothing after all (the read end does not block: see _report_pipe)
        run.report += data
        if not data:
            self._unwatch(run.report_fd)
            if run.pidfd is None:
                self._on_exit(run)
        return True

    def _on_exit(self, run: _Running) -> bool:
        # The pidfd, not the pipe's end, says the call is over: a process the function left
        # behind may hold the pipe open forever.
        _, status, usage = os.wait4(run.pid, 0)
        if run.write_fd is not None:
            os.close(run.write_fd)  # first, so the drain ends at the pipe's end, not in EAGAIN
        self._drain(run)
        if run.pidfd is not None:
            self._unwatch(run.pidfd)
            os.close(run.pidfd)
        self._unwatch(run.report_fd)
        os.close(run.report_fd)
        del self.running[run.id]
        self.send(response(run.id, _exit_error(status, bytes(run.report)), usage))
        return True

    def _drain(self, run: _Running) -> None:
        try:
            while data := os.read(run.report_fd, _READ_CHUNK):
                run.report += data
        except BlockingIOError:
            pass  # a process the function left behind holds the pipe open: what came is all

    def _stop(self) -> None:
        for run in self.running.values():
            _kill_call(run.pid)
            os.waitpid(run.pid, 0)


# ------------------------------------------------------------------ direct mode


def _run_here(function: Callable[..., object], request: Request) -> str | None:
    """In a slot: run one call in this process; the error text, or None when it returned.

    What the call changes that would reach the next call unasked is put back: the working
    directory is set by every call, the environment and fds 1 and 2 are restored here.
    """
    saved_env = {name: os.environ.get(name) for name, _ in request.env}
    saved_fds = None
    try:
        if request.output is not None:
            _flush_std()
            saved_fds = (os.dup(1), os.dup(2))
        _enter(request)
        function(*request.args)
        return None
    except BaseException as exc:  # noqa: B036 - SystemExit in a function is a failed call too
        return _traceback_of(exc)
    finally:
        _flush_std()
        if saved_fds is not None:
            for fd, saved in zip((1, 2), saved_fds, strict=True):
                os.dup2(saved, fd)
                os.close(saved)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # closed or broken by a call: reopened after it (_reopen_std)


def _reopen_std() -> None:
    """A call that closed sys.stdout or sys.stderr must not break the next call's prints."""
    if sys.stdout.closed:
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - lives as long as the slot
    if sys.stderr.closed:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115


def _cpu_and_peak() -> tuple[float, int]:
    """CPU seconds of this process and the children it waited for; the larger peak RSS."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
            max(me.ru_maxrss, kids.ru_maxrss))


def _serve_slot(functions: dict[str, Callable[..., object]], requests: int, responses: int) -> None:
    """A slot's loop: one request line in, the call run here, its response line out, until
    the parent closes the requests pipe. Never returns."""
    code = 0
    try:
        with os.fdopen(requests, "rb") as lines:
            for line in lines:
                request = parse_request(line)
                before, _ = _cpu_and_peak()
                error = _run_here(functions[request.function], request)
                after, peak = _cpu_and_peak()
                # ru_maxrss is this slot's peak so far: the call's own cannot be told apart.
                usage = resource.struct_rusage((after - before, 0.0, peak) + (0,) * 13)
                _write_all(responses, response(request.id, error, usage))
                _reopen_std()
    except BaseException:  # noqa: B036 - a slot must never return into the server loop
        code = 1
    finally:
        os._exit(code)


class _Slot:
    """A slot process seen from the server: its pipes, and the call it runs (None: idle)."""

    __slots__ = ("pid", "pidfd", "requests", "responses", "buffer", "call", "gone")

    def __init__(self, pid: int, pidfd: int | None, requests: int, responses: int):
        self.pid, self.pidfd = pid, pidfd
        self.requests = requests  # our end: request lines to the slot
        self.responses = responses  # our end: response lines from the slot
        self.buffer = bytearray()
        self.call: int | None = None
        self.gone = False  # it exited while idle: no more calls go to it


class _DirectServer(_Server):
    """Calls go to idle slots (a new one forked when none is); responses are passed on."""

    def __init__(self, functions: dict[str, Callable[..., object]], chan_in: int, chan_out: int):
        super().__init__(functions, chan_in, chan_out)
        self.slots: list[_Slot] = []

    def _start(self, function: Callable[..., object], request: Request, line: bytes = b"") -> None:
        while True:
            slot = next((s for s in self.slots if s.call is None and not s.gone), None) \
                or self._new_slot()
            try:
                _write_all(slot.requests, line.rstrip(b"\n") + b"\n")
            except BrokenPipeError:
                slot.gone = True  # it exited while idle; its pidfd (or pipe's end) says so
                continue
            slot.call = request.id
            self.running[request.id] = slot
            return

    def _cancel(self, call_id: int) -> None:
        _kill_call(self.running[call_id].pid)  # its pidfd (or pipe's end) then answers

    def _new_slot(self) -> _Slot:
        to_slot, requests = os.pipe()
        responses, from_slot = os.pipe()
        _flush_std()  # or the slot would print the parent's buffered text again
        pid = os.fork()
        if pid == 0:
            _own_group(0)
            for fd in (requests, responses, self.chan_in, self.chan_out,
                       *(fd for s in self.slots for fd in (s.requests, s.responses, s.pidfd)
                         if fd is not None)):
                os.close(fd)
            _serve_slot(self.functions, to_slot, from_slot)
        _own_group(pid)
        os.close(to_slot)
        os.close(from_slot)
        slot = _Slot(pid, _pidfd(pid), requests, responses)
        self.slots.append(slot)
        self._watch(responses, self._on_responses, slot)
        if slot.pidfd is not None:
            self._watch(slot.pidfd, self._on_slot_exit, slot)
        return slot

    def _on_responses(self, slot: _Slot) -> bool:
        data = os.read(slot.responses, _READ_CHUNK)
        self._take(slot, data)
        if not data and slot.pidfd is None:
            self._on_slot_exit(slot)
        elif not data:
            self._unwatch(slot.responses)
        return True

    def _take(self, slot: _Slot, data: bytes) -> None:
        """Pass on each whole response line; the slot is idle again after its line."""
        slot.buffer += data
        while (end := slot.buffer.find(b"\n")) >= 0:
            line = bytes(slot.buffer[:end + 1])
            del slot.buffer[:end + 1]
            if slot.call is not None:
                self.running.pop(slot.call, None)
                slot.call = None
            self.send(line)

    def _on_slot_exit(self, slot: _Slot) -> bool:
        # What the slot wrote before it exited is passed on first: its last call may have
        # been answered (a thread it left behind may end it, or a cancel come too late).
        _, status, _ = os.wait4(slot.pid, 0)
        os.set_blocking(slot.responses, False)
        try:
            while data := os.read(slot.responses, _READ_CHUNK):
                self._take(slot, data)
        except BlockingIOError:
            pass
        for fd in (slot.pidfd, slot.responses):
            if fd is not None:
                self._unwatch(fd)
                os.close(fd)
        os.close(slot.requests)
        self.slots.remove(slot)
        if slot.call is not None:
            self.running.pop(slot.call, None)
            self.send(response(slot.call, _exit_error(status, b"") or
                               "the call's process exited with status 0 before it returned"))
        return True

    def _stop(self) -> None:
        for slot in self.slots:
            _kill_call(slot.pid)
            os.waitpid(slot.pid, 0)


def _own_group(pid: int) -> None:
    """Make the call's child the leader of its own process group (done by both sides of fork)."""
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass  # the child already did it, or already exited


def _kill_call(pid: int) -> None:
    """Kill a call's child and whatever it started (its process group)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _report_pipe() -> tuple[int, int]:
    """A call's report pipe, its read end not blocking (the server drains it without a
    blocking read when the call ends) and both ends closed on exec, as os.pipe's are."""
    if hasattr(os, "pipe2"):  # one system call, not three
        return os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    return read_fd, write_fd


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when pid exits, where the kernel offers one."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _private_channel() -> tuple[int, int]:
    """Move the protocol channel off fds 0 and 1 so the user's code cannot read or print on it."""
    chan_in, chan_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return chan_in, chan_out


def main(argv: list[str] | None = None) -> int:
    """Import FILE.py, then serve calls (in forked children, or in slots with --mode direct)
    until the pool closes the channel."""
    argv = sys.argv[1:] if argv is None else argv
    mode = "fork"
    if len(argv) == 3 and argv[0] == "--mode" and argv[1] in MODES:
        mode, argv = argv[1], argv[2:]
    if len(argv) != 1 or argv[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return 2
    chan_in, chan_out = _private_channel()
    try:
        module = load_module(argv[0])
    except BaseException:  # noqa: B036 - any failure of the user's import ends the library
        import traceback

        print(f"vinemake.library: importing {argv[0]} failed:\n{traceback.format_exc()}",
              file=sys.stderr, end="")
        return 1
    # Keep the collector away from what the import made, so a forked call does not touch (and
    # so copy) every page of it.
    gc.freeze()
    server = _DirectServer if mode == "direct" else _Server
    server(functions_of(module), chan_in, chan_out).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
