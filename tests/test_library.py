"""The Python library program, spoken to over its stdin/stdout exactly as docs/libraries.md says."""

from __future__ import annotations

import json
import os
import resource
import selectors
import subprocess
import sys
import textwrap
import types

import pytest

from vinemake.library import (
    Request,
    functions_of,
    load_module,
    parse_request,
    response,
)

DEADLINE = 20.0  # only a guard against a hung test; no assertion depends on timing

MODULE = '''
import json, os, sys, time
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "imports"), "a") as f:
    f.write("x")
STATE = []
COUNT = 0
print("import-time print goes to the log")

def write(name, text):
    print("a print inside a call goes to the log too")
    with open(name, "w") as f:
        f.write(text + " in " + os.getcwd())

def remember(item, out):
    STATE.append(item)
    with open(out, "w") as f:
        f.write(",".join(STATE))

def mutate(out):
    # Says what it finds, then changes it all: the next call must find the module as imported.
    global COUNT
    with open(out, "w") as f:
        f.write(f"{COUNT} {getattr(json, 'MARK', None)} {os.environ.get('MUTATED')} "
                f"{hasattr(sys.modules[__name__], 'ADDED')} {os.getpid()}")
    COUNT += 1
    json.MARK = "set"
    os.environ["MUTATED"] = "yes"
    sys.modules[__name__].ADDED = True
    os.chdir("/")

def fail(message):
    raise ValueError(message)

def leave():
    raise SystemExit(3)

def env(name, out):
    with open(out, "w") as f:
        f.write(os.environ.get(name, "unset"))

def meet(me, other):
    # Finishes only if the other call runs at the same time: proves calls are concurrent.
    open(me, "w").close()
    end = time.monotonic() + 20
    while not os.path.exists(other):
        if time.monotonic() > end:
            raise TimeoutError("the other call never started")
        time.sleep(0.01)

def hang():
    open("hanging", "w").close()
    time.sleep(600)

def huge(n):
    raise ValueError("x" * int(n))

def grow(mb):
    block = bytearray(int(mb) * 1000 * 1000)  # zero-filled: every page is touched
    return len(block)

def die(how):
    # The process running the call ends without the call returning.
    if how == "kill":
        os.kill(os.getpid(), 9)
    os._exit(int(how))

def close_stdout():
    sys.stdout.close()  # flushing it afterwards raises: the child must exit all the same

def _private():
    pass
'''


LIBRARY = [sys.executable, "-m", "vinemake.library", "lib.py"]
DIRECT = [sys.executable, "-m", "vinemake.library", "--mode", "direct", "lib.py"]
# The same program on a kernel without pidfd_open (before Linux 5.3, as on older clusters).
LIBRARY_WITHOUT_PIDFD = [
    sys.executable, "-c",
    "import os, runpy; del os.pidfd_open; runpy.run_module('vinemake.library', "
    "run_name='__main__')", "lib.py"]


DIRECT_WITHOUT_PIDFD = [*LIBRARY_WITHOUT_PIDFD[:-1], "--mode", "direct", "lib.py"]


@pytest.fixture(params=[LIBRARY, DIRECT], ids=["fork", "direct"])
def library(tmp_path, request):
    """A running `python3 -m vinemake.library [--mode direct] lib.py`; yields a small client.

    Every test runs in both modes unless it names the program itself: the protocol and what
    a call's outcome says do not depend on the mode."""
    (tmp_path / "lib.py").write_text(MODULE)
    log = open(tmp_path / "log", "wb")
    argv = request.param
    proc = subprocess.Popen(argv, cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=log)
    client = Client(proc)
    yield client
    proc.kill()
    proc.wait()
    proc.stdout.close()
    proc.stdin.close()
    log.close()


class Client:
    """Writes request lines and reads response lines, failing the test rather than hanging."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.selector = selectors.DefaultSelector()
        self.selector.register(proc.stdout, selectors.EVENT_READ)
        self.buffer = b""  # our own: a buffered reader would hide lines from select()
        self.usage: dict[int, dict] = {}  # call id -> the usage its response reported

    def send(self, **request) -> None:
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()

    def receive(self) -> dict:
        while b"\n" not in self.buffer:
            if not self.selector.select(DEADLINE):
                pytest.fail("the library did not answer")
            data = os.read(self.proc.stdout.fileno(), 65536)
            assert data, f"the library closed its channel after {self.buffer!r}"
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        message = json.loads(line)
        if "usage" in message:  # checked here, kept aside so tests compare the outcome
            usage = message.pop("usage")
            assert set(usage) == {"cpu_s", "max_rss_kb"}
            assert usage["cpu_s"] >= 0 and usage["max_rss_kb"] > 0
            self.usage[message["id"]] = usage
        return message

    def call(self, call_id: int, function: str, *args: str, cwd: str, **extra) -> dict:
        self.send(id=call_id, function=function, args=list(args), cwd=cwd, **extra)
        return self.receive()


def test_ready_message_lists_public_functions(library):
    assert library.receive() == {
        "ready": True, "protocol": 1,
        "functions": ["close_stdout", "die", "env", "fail", "grow", "hang", "huge", "leave", "meet",
                      "mutate", "remember", "write"]}


def test_call_runs_in_the_given_cwd_and_prints_do_not_reach_the_channel(library, tmp_path):
    library.receive()
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    assert library.call(1, "write", "out.txt", "hello", cwd=str(sandbox)) == {
        "id": 1, "status": "ok"}
    assert (sandbox / "out.txt").read_text() == f"hello in {sandbox}"
    library.proc.stdin.close()
    assert library.proc.wait(DEADLINE) == 0
    assert (tmp_path / "log").read_text() == (
        "import-time print goes to the log\na print inside a call goes to the log too\n")


def test_output_of_a_call_goes_to_the_file_it_names(library, tmp_path):
    library.receive()
    output = tmp_path / "call.out"
    assert library.call(1, "write", "x", "y", cwd=str(tmp_path), output=str(output)) == {
        "id": 1, "status": "ok"}
    assert output.read_text() == "a print inside a call goes to the log too\n"
    library.proc.stdin.close()
    assert library.proc.wait(DEADLINE) == 0
    assert (tmp_path / "log").read_text() == "import-time print goes to the log\n"


@pytest.mark.parametrize("library", [LIBRARY], indirect=True, ids=["fork"])
def test_module_is_imported_once_and_calls_do_not_share_state(library, tmp_path):
    library.receive()
    for i in range(5):
        assert library.call(i, "remember", str(i), f"state{i}", cwd=str(tmp_path))["status"] \
            == "ok"
        # Each call runs in a fresh fork of the imported module: no call sees another's state.
        assert (tmp_path / f"state{i}").read_text() == str(i)
    assert (tmp_path / "imports").read_text() == "x"


@pytest.mark.parametrize("library", [LIBRARY, LIBRARY_WITHOUT_PIDFD], indirect=True,
                         ids=["pidfd", "no-pidfd"])
def test_in_fork_mode_nothing_a_call_changes_reaches_the_next(library, tmp_path):
    library.receive()
    # Two calls in flight at once, then one at a time: every one of them finds the module,
    # the modules it imported and the environment as they were after the import.
    for i in range(0, 8, 2):
        library.send(id=i, function="mutate", args=[f"out{i}"], cwd=str(tmp_path))
        library.send(id=i + 1, function="mutate", args=[f"out{i + 1}"], cwd=str(tmp_path))
        assert sorted(m["id"] for m in (library.receive(), library.receive())) == [i, i + 1]
    for i in range(8, 11):
        assert library.call(i, "mutate", f"out{i}", cwd=str(tmp_path))["status"] == "ok"
    found = [(tmp_path / f"out{i}").read_text().split() for i in range(11)]
    assert [f[:4] for f in found] == [["0", "None", "None", "False"]] * 11
    assert len({f[4] for f in found}) == 11  # a process of its own for every call


@pytest.mark.parametrize("library", [DIRECT], indirect=True, ids=["direct"])
def test_in_direct_mode_a_slot_keeps_its_state_from_call_to_call(library, tmp_path):
    library.receive()
    for i in range(3):
        assert library.call(i, "remember", str(i), f"state{i}", cwd=str(tmp_path))["status"] \
            == "ok"
    # One call at a time: one slot served them all, and its globals stayed.
    assert (tmp_path / "state2").read_text() == "0,1,2"
    assert (tmp_path / "imports").read_text() == "x"


def test_unknown_function_is_an_error_naming_what_exists(library, tmp_path):
    library.receive()
    assert library.call(7, "_private", cwd=str(tmp_path)) == {
        "id": 7, "status": "error",
        "error": "no function named '_private' in this library (it has: close_stdout, die, env, "
                 "fail, grow, hang, huge, leave, meet, mutate, remember, write)"}


def test_exception_returns_the_users_traceback(library, tmp_path):
    library.receive()
    answer = library.call(3, "fail", "bad input", cwd=str(tmp_path))
    assert answer["id"] == 3 and answer["status"] == "error"
    error = answer["error"]
    assert error.startswith("Traceback (most recent call last):\n  File \"")
    assert error.endswith("in fail\n    raise ValueError(message)\nValueError: bad input\n")
    assert "vinemake" not in error  # the user's frames only


def test_wrong_arguments_and_sys_exit_are_call_errors(library, tmp_path):
    library.receive()
    assert library.call(1, "fail", cwd=str(tmp_path))["error"] == (
        "TypeError: fail() missing 1 required positional argument: 'message'\n")
    assert library.call(2, "leave", cwd=str(tmp_path))["error"].endswith("SystemExit: 3\n")
    assert library.call(3, "write", "x", "y", cwd=str(tmp_path / "absent"))["error"] == (
        f"FileNotFoundError: [Errno 2] No such file or directory: '{tmp_path / 'absent'}'\n")


def test_a_traceback_larger_than_a_pipe_arrives_whole(library, tmp_path):
    library.receive()
    error = library.call(1, "huge", "300000", cwd=str(tmp_path))["error"]
    assert error.endswith("ValueError: " + "x" * 300000 + "\n")


def test_a_call_that_breaks_its_stdout_still_ends_cleanly(library, tmp_path):
    library.receive()
    assert library.call(1, "close_stdout", cwd=str(tmp_path)) == {"id": 1, "status": "ok"}
    assert library.call(2, "write", "out", "after", cwd=str(tmp_path)) == {
        "id": 2, "status": "ok"}
    library.proc.stdin.close()
    assert library.proc.wait(DEADLINE) == 0
    assert library.proc.stdout.read() == b""  # no second server answering from a stray child


def test_env_of_the_request_reaches_the_function(library, tmp_path):
    library.receive()
    library.call(1, "env", "GREETING", "out", cwd=str(tmp_path), env={"GREETING": "hi"})
    assert (tmp_path / "out").read_text() == "hi"
    # and only that call: a direct-mode slot puts its environment back
    library.call(2, "env", "GREETING", "out2", cwd=str(tmp_path))
    assert (tmp_path / "out2").read_text() == "unset"


def test_a_call_s_output_file_is_its_own(library, tmp_path):
    library.receive()
    library.call(1, "write", "x", "y", cwd=str(tmp_path), output=str(tmp_path / "call.out"))
    library.call(2, "write", "x", "y", cwd=str(tmp_path))
    library.proc.stdin.close()
    assert library.proc.wait(DEADLINE) == 0
    assert (tmp_path / "call.out").read_text() == "a print inside a call goes to the log too\n"
    assert (tmp_path / "log").read_text() == (
        "import-time print goes to the log\na print inside a call goes to the log too\n")


@pytest.mark.parametrize("how, error", [
    ("kill", "the call was killed by signal 9 (SIGKILL)"),
    ("3", "the call's process exited with status 3"),
    ("0", "the call's process exited with status 0 before it returned")])
@pytest.mark.parametrize("library", [DIRECT, DIRECT_WITHOUT_PIDFD], indirect=True,
                         ids=["direct", "direct-no-pidfd"])
def test_a_call_that_ends_its_slot_fails_and_a_new_slot_serves_the_next(library, tmp_path,
                                                                       how, error):
    library.receive()
    assert library.call(1, "die", how, cwd=str(tmp_path)) == {
        "id": 1, "status": "error", "error": error}
    assert library.call(2, "write", "after", "ok", cwd=str(tmp_path)) == {
        "id": 2, "status": "ok"}


@pytest.mark.parametrize("library", [LIBRARY, LIBRARY_WITHOUT_PIDFD, DIRECT,
                                     DIRECT_WITHOUT_PIDFD], indirect=True,
                         ids=["pidfd", "no-pidfd", "direct", "direct-no-pidfd"])
def test_calls_run_concurrently(library, tmp_path):
    library.receive()
    library.send(id=1, function="meet", args=["a", "b"], cwd=str(tmp_path))
    library.send(id=2, function="meet", args=["b", "a"], cwd=str(tmp_path))
    answers = sorted((library.receive(), library.receive()), key=lambda a: a["id"])
    assert answers == [{"id": 1, "status": "ok"}, {"id": 2, "status": "ok"}]


@pytest.mark.parametrize("library", [LIBRARY, LIBRARY_WITHOUT_PIDFD, DIRECT,
                                     DIRECT_WITHOUT_PIDFD], indirect=True,
                         ids=["pidfd", "no-pidfd", "direct", "direct-no-pidfd"])
def test_every_call_s_response_reports_its_child_s_usage(library, tmp_path):
    library.receive()  # ready
    assert library.call(1, "write", "small", "x", cwd=str(tmp_path))["status"] == "ok"
    assert library.call(2, "grow", "40", cwd=str(tmp_path))["status"] == "ok"
    assert library.call(3, "fail", "x", cwd=str(tmp_path))["status"] == "error"
    assert library.usage[2]["max_rss_kb"] > library.usage[1]["max_rss_kb"] + 35000  # KiB
    assert 3 in library.usage


def test_cancel_kills_the_running_call(library, tmp_path):
    library.receive()
    library.send(id=4, function="hang", args=[], cwd=str(tmp_path))
    library.send(id=4, cancel=True)
    assert library.receive() == {
        "id": 4, "status": "error", "error": "the call was killed by signal 9 (SIGKILL)"}
    assert library.call(5, "write", "after", "ok", cwd=str(tmp_path))["status"] == "ok"


def test_bad_request_is_answered_without_an_id(library):
    library.receive()
    library.proc.stdin.write(b"{\"function\": \"write\"}\n")
    library.proc.stdin.flush()
    assert library.receive() == {
        "id": None, "status": "error",
        "error": "bad request: request must be a JSON object with an integer \"id\""}


def test_failing_import_exits_1_with_the_traceback(tmp_path):
    (tmp_path / "broken.py").write_text("import os\n1 / 0\n")
    run = subprocess.run([sys.executable, "-m", "vinemake.library", "broken.py"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=DEADLINE)
    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr.startswith("vinemake.library: importing broken.py failed:\nTraceback")
    assert run.stderr.endswith("ZeroDivisionError: division by zero\n")


@pytest.mark.parametrize("args", [[], ["--mode", "direct"], ["--mode", "spawn", "lib.py"],
                                  ["--direct", "lib.py"], ["a.py", "b.py"]])
def test_usage(tmp_path, args):
    run = subprocess.run([sys.executable, "-m", "vinemake.library", *args], capture_output=True,
                         text=True, timeout=DEADLINE, cwd=tmp_path)
    assert (run.returncode, run.stdout, run.stderr) == (
        2, "", "usage: python3 -m vinemake.library [--mode fork|direct] FILE.py\n")


def test_parse_request():
    assert parse_request(b'{"id": 1, "function": "f", "args": ["a"], "cwd": "/s", '
                         b'"env": {"B": "2", "A": "1"}}') == Request(
        1, "f", ("a",), "/s", (("A", "1"), ("B", "2")))
    assert parse_request(b'{"id": 9, "cancel": true}') == Request(9, cancel=True)
    with pytest.raises(ValueError, match="^request needs \"function\""):
        parse_request(b'{"id": 1, "function": "f", "args": [1]}')
    with pytest.raises(ValueError, match="^request \"env\" must map names to strings$"):
        parse_request(b'{"id": 1, "function": "f", "args": [], "env": ["A"]}')


def test_response():
    assert response(2) == b'{"id": 2, "status": "ok"}\n'
    assert response(2, "boom\n") == b'{"id": 2, "status": "error", "error": "boom\\n"}\n'
    usage = resource.struct_rusage((1.25, 0.5) + (0,) * 14)
    usage = resource.struct_rusage(usage[:2] + (51200,) + usage[3:])
    assert response(3, usage=usage) == \
        b'{"id": 3, "status": "ok", "usage": {"cpu_s": 1.75, "max_rss_kb": 51200}}\n'


def test_functions_of_skips_imports_and_private_names(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    path = tmp_path / "mod.py"
    path.write_text(textwrap.dedent("""
        from os.path import join
        import json
        def visible(): pass
        def _hidden(): pass
        class Model: pass
    """))
    module = load_module(str(path))
    assert isinstance(module, types.ModuleType)
    assert sorted(functions_of(module)) == ["Model", "visible"]
    assert sys.path[0] == str(tmp_path)
