"""The Python library program: `python3 -m vinemake.library FILE.py` serves calls to FILE.py.

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
- The parent is single-threaded: one selector loop over the request channel and each running
  child's pidfd and result pipe. No threads means fork never copies a lock some other thread
  holds.
- Requests arrive on stdin and responses leave on stdout, but the user's code must never touch
  that channel: at start the channel is moved to private descriptors, fd 0 becomes /dev/null
  and fd 1 is pointed at stderr, which the worker keeps as the library's log.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import resource
import selectors
import signal
import sys
import traceback
from dataclasses import dataclass
from types import ModuleType
from typing import Any

__all__ = ["PROTOCOL_VERSION", "Request", "parse_request", "response", "load_module",
           "functions_of", "main"]

PROTOCOL_VERSION = 1
_READ_CHUNK = 65536


@dataclass(frozen=True)
class Request:
    """One line from the pool: a call to run, or a call to cancel."""

    id: int
    function: str = ""
    args: tuple[str, ...] = ()
    cwd: str = "."
    env: tuple[tuple[str, str], ...] = ()
    output: str | None = None  # where the call's stdout and stderr go; else the library's log
    cancel: bool = False


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
    obj: dict[str, Any] = {"id": call_id, "status": "ok" if error is None else "error"}
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


def functions_of(module: ModuleType) -> dict[str, Any]:
    """The module's public top-level functions, by name: what calls may name."""
    return {name: value for name, value in vars(module).items()
            if callable(value) and not name.startswith("_")
            and getattr(value, "__module__", None) == module.__name__}


def _run_in_child(function: Any, request: Request, report_fd: int) -> None:
    """In the forked child: run the call in its sandbox, report a traceback on failure, exit."""
    code = 1  # until the function has returned
    _own_group(0)
    try:
        if request.output is not None:
            fd = os.open(request.output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
        os.chdir(request.cwd)
        os.environ.update(dict(request.env))
        function(*request.args)
        code = 0
    except BaseException as exc:  # noqa: B036 - SystemExit in a function is a failed call too
        # Drop this frame: the user's traceback starts at their function.
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next))
        _write_all(report_fd, text.encode(errors="replace"))
    finally:
        # Whatever happens, the child must never return into the server's loop.
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


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


@dataclass
class _Running:
    """A call in a forked child: its pid, the pipe its traceback comes on, and what it said."""

    id: int
    pid: int
    pidfd: int | None  # None on kernels before Linux 5.3: the pipe's end marks the exit
    report_fd: int
    report: bytearray


class _Server:
    """The selector loop: requests in, children forked, responses out."""

    def __init__(self, functions: dict[str, Any], chan_in: int, chan_out: int):
        self.functions = functions
        self.chan_in, self.chan_out = chan_in, chan_out
        self.selector = selectors.DefaultSelector()
        self.running: dict[int, _Running] = {}
        self.pending = b""

    def send(self, data: bytes) -> None:
        _write_all(self.chan_out, data)

    def serve(self) -> None:
        self.send((json.dumps({"ready": True, "protocol": PROTOCOL_VERSION,
                               "functions": sorted(self.functions)}) + "\n").encode())
        self.selector.register(self.chan_in, selectors.EVENT_READ, self._on_requests)
        while True:
            for key, _ in self.selector.select():
                # An earlier handler in this batch may have closed this fd (a call's pipe
                # when its pidfd fired), and a new call may even have reused the number.
                if self.selector.get_map().get(key.fd) is not key:
                    continue
                if not key.data(key.fileobj):
                    self._stop()
                    return

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
                _kill_call(self.running[request.id].pid)
            return
        function = self.functions.get(request.function)
        if function is None:
            known = ", ".join(sorted(self.functions)) or "none"
            self.send(response(request.id, f"no function named {request.function!r} in this "
                                           f"library (it has: {known})"))
            return
        self._start(function, request)

    def _start(self, function: Any, request: Request) -> None:
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()  # or the child would print the parent's buffered text again
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            os.close(self.chan_in)
            os.close(self.chan_out)
            _run_in_child(function, request, write_fd)
        _own_group(pid)  # here too, so a cancel arriving at once finds the group made
        os.close(write_fd)
        run = _Running(request.id, pid, _pidfd(pid), read_fd, bytearray())
        self.running[request.id] = run
        self.selector.register(read_fd, selectors.EVENT_READ, lambda fd: self._on_report(run))
        if run.pidfd is not None:
            self.selector.register(run.pidfd, selectors.EVENT_READ,
                                   lambda fd: self._on_exit(run))

    def _on_report(self, run: _Running) -> bool:
        data = os.read(run.report_fd, _READ_CHUNK)
        run.report += data
        if not data:
            self.selector.unregister(run.report_fd)
            if run.pidfd is None:
                self._on_exit(run)
        return True

    def _on_exit(self, run: _Running) -> bool:
        # The pidfd, not the pipe's end, says the call is over: a process the function left
        # behind may hold the pipe open forever.
        _, status, usage = os.wait4(run.pid, 0)
        self._drain(run)
        if run.pidfd is not None:
            self.selector.unregister(run.pidfd)
            os.close(run.pidfd)
        if run.report_fd in self.selector.get_map():
            self.selector.unregister(run.report_fd)
        os.close(run.report_fd)
        del self.running[run.id]
        self.send(response(run.id, _exit_error(status, bytes(run.report)), usage))
        return True

    def _drain(self, run: _Running) -> None:
        os.set_blocking(run.report_fd, False)
        try:
            while data := os.read(run.report_fd, _READ_CHUNK):
                run.report += data
        except BlockingIOError:
            pass

    def _stop(self) -> None:
        for run in self.running.values():
            _kill_call(run.pid)
            os.waitpid(run.pid, 0)


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
    """Import FILE.py, then serve calls until the pool closes the channel."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python3 -m vinemake.library FILE.py", file=sys.stderr)
        return 2
    chan_in, chan_out = _private_channel()
    try:
        module = load_module(argv[0])
    except BaseException:  # noqa: B036 - any failure of the user's import ends the library
        print(f"vinemake.library: importing {argv[0]} failed:\n{traceback.format_exc()}",
              file=sys.stderr, end="")
        return 1
    # Keep the collector away from what the import made, so a forked call does not touch (and
    # so copy) every page of it.
    gc.freeze()
    _Server(functions_of(module), chan_in, chan_out).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
