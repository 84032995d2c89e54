"""LibraryPool: real library processes started once, serving calls, restarted when they die."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time

import pytest

from vinemake.common.spec import Resources
from vinemake.common.task import LibrarySpec, Task
from vinemake.worker.libraries import (
    CallHandle,
    CallResult,
    LibraryPool,
    _Latch,
    describe_exit,
    split_call,
    tail,
)

DEADLINE = 20.0  # only a guard against a hung test; no assertion depends on timing

MODULE = '''
import os, signal, time
# Counts imports, next to the pool's instance dirs (one level above this instance's dir).
with open(os.path.join(os.path.dirname(os.getcwd()), "imports"), "a") as f:
    f.write(os.environ["VINEMAKE_LIBRARY"] + os.environ.get("EXTRA", "") + ";")

def double(src, dst):
    with open(src) as f, open(dst, "w") as g:
        g.write(f.read() * 2)

def fail(message):
    print("about to fail:", message)
    raise RuntimeError(message)

def meet(me, other):
    open(me, "w").close()
    end = time.monotonic() + 20
    while not os.path.exists(other):
        if time.monotonic() > end:
            raise TimeoutError("the other call never started")
        time.sleep(0.01)

def hold(marker, release):
    open(marker, "w").close()
    end = time.monotonic() + 20
    while not os.path.exists(release) and time.monotonic() < end:
        time.sleep(0.01)

def hang():
    time.sleep(600)

def crash():
    # The library and its shell lead the session's first group; this call has a group of its
    # own, which the worker kills once it sees the library die.
    os.killpg(os.getsid(0), signal.SIGKILL)
    time.sleep(600)

def heavy(mb, seconds):
    block = bytearray(int(mb) * 1000 * 1000)  # zero-filled: every page is touched
    end = time.process_time() + float(seconds)
    while time.process_time() < end:
        pass
    return len(block)

def spawn_and_hang(pidfile):
    import subprocess
    child = subprocess.Popen(["sleep", "600"])
    with open(pidfile, "w") as f:
        f.write(str(child.pid))
    time.sleep(600)
'''

# A library in another "language": plain sh with sed, speaking the documented protocol. Every
# call touches the file named by its first argument in the call's cwd.
SH_LIBRARY = r'''
echo "program log line" >&2
echo '{"ready": true, "protocol": 1}'
while read -r line; do
  id=$(printf '%s\n' "$line" | sed -n 's/^{"id": \([0-9]*\),.*/\1/p')
  file=$(printf '%s\n' "$line" | sed -n 's/.*"args": \["\([^"]*\)".*"cwd": "\([^"]*\)".*/\2\/\1/p')
  if [ -n "$file" ] && echo "made by sh" > "$file"; then
    echo "{\"id\": $id, \"status\": \"ok\"}"
  else
    echo "{\"id\": $id, \"status\": \"error\", \"error\": \"sh library: bad call\"}"
  fi
done
'''

# A misbehaving library: answers every call, except that `stuck` is never answered and even
# ignores its cancel, and `chatter` prints garbage on the protocol channel.
ROGUE_LIBRARY = r'''
import json, sys
print(json.dumps({"ready": True, "protocol": 1}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    print("received", request.get("function"), file=sys.stderr, flush=True)
    if request.get("cancel") or request["function"] == "stuck":
        continue
    if request["function"] == "chatter":
        print("hello from a careless print", flush=True)
    print(json.dumps({"id": request["id"], "status": "ok"}), flush=True)
'''


def spec(command: str, slots: int = 1, key: str = "rule-xxh3_128-00112233445566778899aabb",
         env: tuple[tuple[str, str], ...] = ()) -> LibrarySpec:
    return LibrarySpec(name="m", key=key, command=command, slots=slots, env=env)


def copier(*sources):
    """prepare(): put the library's input files into its instance dir."""
    def prepare(directory: str) -> None:
        for source in sources:
            shutil.copy(source, directory)
    return prepare


def wait_until(condition) -> None:
    end = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > end:
            pytest.fail("condition never became true")
        time.sleep(0.01)


def session_members(sid: int) -> list[int]:
    members = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and os.getsid(int(name)) == sid:
                members.append(int(name))
        except ProcessLookupError:
            pass
    return members


def gone(pid: int) -> bool:
    """The process has ended (a zombie left for init to reap counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture
def pool(tmp_path):
    pool = LibraryPool(str(tmp_path / "libraries"), cancel_grace=0.5)
    yield pool
    pool.close(grace=0.5)


@pytest.fixture
def module(tmp_path):
    path = tmp_path / "lib.py"
    path.write_text(MODULE)
    return path


@pytest.fixture(params=["", "--mode direct "], ids=["fork", "direct"])
def python_library(pool, module, request):
    """The Python library program, in each of its modes: what the pool sees is the same."""
    command = f"{sys.executable} -m vinemake.library {request.param}lib.py"
    return pool.get(spec(command, slots=2, env=(("EXTRA", "+env"),)), copier(module))


@pytest.fixture
def sandbox(tmp_path):
    path = tmp_path / "sandbox"
    path.mkdir()
    (path / "in.txt").write_text("ab")
    return path


def imports(tmp_path) -> str:
    return (tmp_path / "libraries" / "imports").read_text()


def test_split_call():
    assert split_call('evaluate trained.1 "a b" c') == ("evaluate", ["trained.1", "a b", "c"])
    with pytest.raises(ValueError, match="^a function call needs a function name$"):
        split_call("  ")
    with pytest.raises(ValueError, match="^cannot split function call 'f \"x': "
                                         "No closing quotation$"):
        split_call('f "x')


def test_describe_exit_and_tail():
    assert describe_exit(3) == "exited with status 3"
    assert describe_exit(-9) == "was killed by signal 9 (SIGKILL)"
    assert tail("abcdef", 3) == "…def"
    assert tail("abc", 3) == "abc"


def test_start_up_is_paid_once_across_many_calls(python_library, sandbox, tmp_path):
    for i in range(6):
        assert python_library.call("double", ["in.txt", f"out{i}"], str(sandbox)) == \
            CallResult("ok", 0)
        assert (sandbox / f"out{i}").read_text() == "abab"
    assert imports(tmp_path) == "m+env;"
    assert python_library.starts == 1


def test_a_python_library_reports_each_call_s_cpu_and_peak_memory(python_library, sandbox):
    light = python_library.call("double", ["in.txt", "light"], str(sandbox))
    heavy = python_library.call("heavy", ["150", "0.3"], str(sandbox))
    assert light.ok and heavy.ok
    assert heavy.cpu_s >= 0.3 > light.cpu_s
    assert heavy.memory_mb >= 150 + light.memory_mb * 0.5  # on top of the forked library's


def test_a_library_that_reports_no_usage_gives_zeros(pool, tmp_path, sandbox):
    (tmp_path / "lib.sh").write_text(SH_LIBRARY)
    library = pool.get(spec("sh lib.sh"), copier(tmp_path / "lib.sh"))
    result = library.call("touch", ["x"], str(sandbox))
    assert result.ok and (result.cpu_s, result.memory_mb) == (0.0, 0.0)


def test_instance_runs_in_its_own_dir_with_its_inputs(python_library, sandbox):
    python_library.call("double", ["in.txt", "out"], str(sandbox))
    assert os.readlink(f"/proc/{python_library.pid}/cwd") == python_library.dir
    assert os.listdir(python_library.dir) == ["lib.py"]


def test_function_error_carries_the_users_traceback(python_library, sandbox):
    result = python_library.call("fail", ["no good"], str(sandbox))
    assert (result.status, result.exit_code, result.reason) == (
        "failed", 1, "function fail failed in library m")
    assert result.stderr_tail.startswith("Traceback (most recent call last):\n")
    assert result.stderr_tail.endswith("RuntimeError: no good\n")


def test_failed_calls_output_comes_before_its_traceback(python_library, sandbox, tmp_path):
    output = tmp_path / "call.out"
    result = python_library.call("fail", ["no good"], str(sandbox), output=str(output))
    assert result.stderr_tail.startswith(
        "about to fail: no good\nTraceback (most recent call last):\n")
    assert result.stderr_tail.endswith("RuntimeError: no good\n")
    assert output.read_text() == "about to fail: no good\n"
    assert "about to fail" not in open(python_library.log_path).read()


def test_unknown_function(python_library, sandbox):
    assert python_library.call("train", [], str(sandbox)) == CallResult(
        "failed", 1, "function train failed in library m",
        "no function named 'train' in this library (it has: crash, double, fail, hang, heavy, "
        "hold, meet, spawn_and_hang)")


def test_calls_run_concurrently_up_to_slots(python_library, sandbox):
    results = []
    thread = threading.Thread(
        target=lambda: results.append(python_library.call("meet", ["a", "b"], str(sandbox))))
    thread.start()
    assert python_library.call("meet", ["b", "a"], str(sandbox)) == CallResult("ok", 0)
    thread.join(DEADLINE)
    assert results == [CallResult("ok", 0)]


def test_no_more_calls_in_flight_than_slots(pool, module, sandbox):
    command = f"{sys.executable} -m vinemake.library lib.py"
    library = pool.get(spec(command, slots=1), copier(module))
    results = []
    thread = threading.Thread(target=lambda: results.append(
        library.call("hold", ["held", "release"], str(sandbox))))
    thread.start()
    wait_until((sandbox / "held").exists)
    assert library.call("double", ["in.txt", "x"], str(sandbox), wait_for_slot=False) == \
        CallResult("error", None, "library m has all 1 slots busy")
    (sandbox / "release").touch()
    thread.join(DEADLINE)
    assert results == [CallResult("ok", 0)]
    assert library.call("double", ["in.txt", "x"], str(sandbox), wait_for_slot=False).ok


def held_library(pool, module, sandbox):
    """A one-slot library whose slot a call holds until `release` exists; (it, that call's
    thread)."""
    command = f"{sys.executable} -m vinemake.library lib.py"
    library = pool.get(spec(command, slots=1), copier(module))
    holder = threading.Thread(target=lambda: library.call("hold", ["held", "release"],
                                                          str(sandbox)))
    holder.start()
    wait_until((sandbox / "held").exists)
    return library, holder


def test_a_call_cancelled_while_it_waits_for_a_slot_never_runs(pool, module, sandbox):
    library, holder = held_library(pool, module, sandbox)
    handle, results = CallHandle(), []
    waiter = threading.Thread(target=lambda: results.append(
        library.call("double", ["in.txt", "out"], str(sandbox), handle=handle)))
    waiter.start()
    handle.cancel()
    waiter.join(DEADLINE)  # withdrawn at once: not when the slot frees
    assert results == [CallResult("error", None, "cancelled before it started")]
    (sandbox / "release").touch()
    holder.join(DEADLINE)
    assert not (sandbox / "out").exists()
    assert library.call("double", ["in.txt", "x"], str(sandbox), wait_for_slot=False).ok


def test_calls_waiting_for_a_slot_get_it_in_the_order_they_came(pool, module, sandbox):
    library, holder = held_library(pool, module, sandbox)
    began, waiters = [], []
    for i in range(5):
        waiters.append(threading.Thread(target=library.call, args=(
            "double", ["in.txt", f"out{i}"], str(sandbox)), kwargs={
            "on_begin": lambda i=i: began.append(i)}))
        waiters[-1].start()
        wait_until(lambda n=i + 1: len(library._slots._line) == n)  # in line, in this order
    (sandbox / "release").touch()
    for thread in (holder, *waiters):
        thread.join(DEADLINE)
    assert began == [0, 1, 2, 3, 4]


def test_a_running_call_cancelled_is_stopped_and_the_library_serves_on(python_library,
                                                                       sandbox):
    handle, results = CallHandle(), []
    caller = threading.Thread(target=lambda: results.append(python_library.call(
        "hold", ["held", "never"], str(sandbox), handle=handle)))
    caller.start()
    wait_until((sandbox / "held").exists)
    handle.cancel()
    caller.join(DEADLINE)
    assert results == [CallResult("error", None, "function hold was cancelled")]
    assert python_library.call("double", ["in.txt", "out"], str(sandbox)).ok
    assert python_library.starts == 1


def test_instance_killed_between_calls_is_restarted(python_library, sandbox, tmp_path):
    assert python_library.call("double", ["in.txt", "out1"], str(sandbox)).ok
    os.killpg(python_library.pid, signal.SIGKILL)
    wait_until(lambda: python_library.pid is None)
    assert python_library.call("double", ["in.txt", "out2"], str(sandbox)) == CallResult("ok", 0)
    assert (python_library.starts, imports(tmp_path)) == (2, "m+env;m+env;")


def test_instance_dying_during_a_call_fails_it_with_the_reason(python_library, sandbox):
    result = python_library.call("crash", [], str(sandbox))
    assert (result.status, result.exit_code, result.reason) == (
        "signaled", -9, "library m was killed by signal 9 (SIGKILL) while running this call")
    assert python_library.call("double", ["in.txt", "out"], str(sandbox)).ok
    assert python_library.starts == 2


def test_library_that_fails_to_start(pool, tmp_path, sandbox):
    (tmp_path / "broken.py").write_text("1 / 0\n")
    command = f"{sys.executable} -m vinemake.library broken.py"
    library = pool.get(spec(command), copier(tmp_path / "broken.py"))
    result = library.call("double", [], str(sandbox))
    assert (result.status, result.exit_code, result.reason) == (
        "failed", 1, "library m exited with status 1 before it was ready")
    assert result.stderr_tail.startswith("vinemake.library: importing broken.py failed:\n")
    assert result.stderr_tail.endswith("ZeroDivisionError: division by zero\n")


def test_failure_to_set_up_the_instance_is_an_error_retried_by_the_next_call(pool, sandbox):
    attempts = []

    def prepare(directory: str) -> None:
        attempts.append(directory)
        raise OSError("input file-xxh3_128-42 is not in the cache")

    library = pool.get(spec("true"), prepare)
    for _ in range(2):
        assert library.call("f", [], str(sandbox)) == CallResult(
            "error", None, "cannot start library m: input file-xxh3_128-42 is not in the cache")
    assert attempts == [library.dir, library.dir]
    assert library.starts == 0


def test_call_over_its_timeout_is_cancelled_and_the_instance_survives(python_library, sandbox):
    assert python_library.call("hang", [], str(sandbox), timeout=0.2) == CallResult(
        "resource_exceeded", None, "function hang exceeded its wall time of 0.2s")
    assert python_library.call("double", ["in.txt", "out"], str(sandbox)).ok
    assert python_library.starts == 1


def test_cancel_stops_what_the_call_started(python_library, sandbox):
    # Cancelled once `sleep` has started (its pid written), not after a time limit that a
    # loaded machine could reach first; a timeout cancels the same way (test above).
    handle, results = CallHandle(), []
    caller = threading.Thread(target=lambda: results.append(python_library.call(
        "spawn_and_hang", ["sleep.pid"], str(sandbox), handle=handle)))
    caller.start()
    pid_file = sandbox / "sleep.pid"
    wait_until(lambda: pid_file.exists() and pid_file.read_text())  # written, not just made
    handle.cancel()
    caller.join(DEADLINE)
    assert results == [CallResult("error", None, "function spawn_and_hang was cancelled")]
    wait_until(lambda: gone(int(pid_file.read_text())))
    assert python_library.starts == 1


def test_killing_an_instance_stops_its_calls(python_library, sandbox):
    results = []
    thread = threading.Thread(target=lambda: results.append(
        python_library.call("spawn_and_hang", ["sleep.pid"], str(sandbox))))
    thread.start()
    pid_file = sandbox / "sleep.pid"
    wait_until(lambda: pid_file.exists() and pid_file.read_text())  # written, not just made
    os.killpg(python_library.pid, signal.SIGKILL)  # the library, not its calls' groups
    thread.join(DEADLINE)
    assert [r.reason for r in results] == [
        "library m was killed by signal 9 (SIGKILL) while running this call"]
    wait_until(lambda: gone(int((sandbox / "sleep.pid").read_text())))


def test_library_ignoring_a_cancel_is_killed_and_restarted(pool, tmp_path, sandbox):
    (tmp_path / "rogue.py").write_text(ROGUE_LIBRARY)
    library = pool.get(spec(f"{sys.executable} rogue.py", slots=2),
                       copier(tmp_path / "rogue.py"))
    results = []
    # A call stuck in the library, not the one that timed out, fails with why it was stopped.
    other = threading.Thread(target=lambda: results.append(
        library.call("stuck", [], str(sandbox))))
    other.start()
    wait_until(lambda: os.path.exists(library.log_path)
               and "received stuck" in open(library.log_path).read())
    assert library.call("stuck", [], str(sandbox), timeout=0.2).status == "resource_exceeded"
    other.join(DEADLINE)
    assert results == [CallResult("failed", None, "library m was stopped: it did not cancel a "
                                  "call to stuck that exceeded its wall time")]
    assert library.call("fine", [], str(sandbox)) == CallResult("ok", 0)
    assert library.starts == 2


def test_garbage_on_the_channel_fails_the_instance(pool, tmp_path, sandbox):
    (tmp_path / "rogue.py").write_text(ROGUE_LIBRARY)
    library = pool.get(spec(f"{sys.executable} rogue.py"), copier(tmp_path / "rogue.py"))
    assert library.call("chatter", [], str(sandbox)) == CallResult(
        "failed", None, "library m wrote a line that is not a protocol message: "
                        "'hello from a careless print'")
    assert library.call("fine", [], str(sandbox)).ok
    assert library.starts == 2


def test_a_sh_program_speaking_the_protocol_serves_calls(pool, tmp_path, sandbox):
    (tmp_path / "lib.sh").write_text(SH_LIBRARY)
    library = pool.get(spec("sh lib.sh", slots=2), copier(tmp_path / "lib.sh"))
    for name in ("one", "two", "three"):
        assert library.call("touch", [name], str(sandbox)) == CallResult("ok", 0)
        assert (sandbox / name).read_text() == "made by sh\n"
    assert library.starts == 1
    assert open(library.log_path).read() == "program log line\n"


def test_get_returns_one_instance_per_key(pool, module):
    first = pool.get(spec("true"), copier(module))
    assert pool.get(spec("true"), copier(module)) is first
    other = pool.get(spec("true", key="rule-xxh3_128-ffeeddccbbaa998877665544"), copier(module))
    assert other is not first and other.dir != first.dir
    assert pool.instances() == [first, other]


def test_close_stops_every_instance(pool, python_library, sandbox):
    assert python_library.call("double", ["in.txt", "out"], str(sandbox)).ok
    session = session_members(python_library.pid)
    # /bin/sh -c and the library program, and in direct mode the slot that served the call
    assert len(session) == (3 if "--mode direct" in python_library.spec.command else 2)
    pool.close(grace=DEADLINE)
    assert python_library.pid is None
    wait_until(lambda: all(gone(pid) for pid in session))
    assert python_library.call("double", ["in.txt", "out"], str(sandbox)) == CallResult(
        "error", None, "library m is shut down")


def test_run_takes_a_call_task_whole(pool, module, sandbox):
    library = spec(f"{sys.executable} -m vinemake.library lib.py")
    task = Task(id=4, rule_key="rule-xxh3_128-0", name="out", command='double in.txt "o u t"',
                library=library, resources=Resources(wall_time_s=DEADLINE))
    assert pool.run(task, str(sandbox), copier(module)) == CallResult("ok", 0)
    assert (sandbox / "o u t").read_text() == "abab"
    hanging = Task(id=5, rule_key="rule-xxh3_128-1", name="x", command="hang", library=library,
                   resources=Resources(wall_time_s=0.3))
    assert pool.run(hanging, str(sandbox), copier(module)) == CallResult(
        "resource_exceeded", None, "function hang exceeded its wall time of 0.3s")
    unbalanced = Task(id=6, rule_key="rule-xxh3_128-2", name="y", command="double 'in.txt",
                      library=library)
    assert pool.run(unbalanced, str(sandbox), copier(module)) == CallResult(
        "failed", None, "cannot split function call \"double 'in.txt\": No closing quotation")


def test_stopping_an_instance_stops_what_it_started(pool, tmp_path, sandbox):
    (tmp_path / "lib.sh").write_text(SH_LIBRARY)
    library = pool.get(spec("sleep 600 & echo $! > ../bg.pid; sh lib.sh"),
                       copier(tmp_path / "lib.sh"))
    assert library.call("touch", ["x"], str(sandbox)).ok
    background = int((tmp_path / "libraries" / "bg.pid").read_text())
    assert not gone(background)
    pool.close(grace=DEADLINE)
    wait_until(lambda: gone(background))


def test_when_the_library_exits_what_it_left_running_is_killed(pool, tmp_path, sandbox):
    # The background sleep holds the library's stdout open: only killing it ends the instance.
    (tmp_path / "lib.sh").write_text(SH_LIBRARY)
    library = pool.get(spec("sleep 600 & echo $! > ../bg.pid; sh lib.sh"),
                       copier(tmp_path / "lib.sh"))
    assert library.call("touch", ["x"], str(sandbox)).ok
    background = int((tmp_path / "libraries" / "bg.pid").read_text())
    os.kill(library.pid, signal.SIGKILL)  # the instance's main process only
    wait_until(lambda: library.pid is None)
    assert gone(background)
    assert library.call("touch", ["y"], str(sandbox)).ok
    assert library.starts == 2


def test_the_library_example_runs_from_an_unactivated_virtual_environment(tmp_path):
    # `python3 -m vinemake.library` in a Vinefile means vinemake's own interpreter, even
    # when the user runs vinemake by its absolute path without activating its venv (PATH
    # then names a python3 that lacks vinemake, or none at all: here, none).
    import subprocess

    example = tmp_path / "library"
    shutil.copytree(os.path.join(os.path.dirname(__file__), "..", "examples", "library"),
                    example, ignore=shutil.ignore_patterns(".vinemake", "count.*"))
    vinemake = os.path.join(os.path.dirname(sys.executable), "vinemake")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PATH")}
    bin_dir = tmp_path / "bin"  # the system's commands, but no python at all
    bin_dir.mkdir()
    for name in os.listdir("/usr/bin"):
        if not name.startswith("python"):
            os.symlink(os.path.join("/usr/bin", name), bin_dir / name)
    env["PATH"] = str(bin_dir)
    done = subprocess.run([vinemake], cwd=example, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in example.glob("count.*")) == [
        "count.a.txt", "count.b.txt", "count.c.txt"]


def test_each_start_of_an_instance_is_told_once_when_it_is_ready(tmp_path, module, sandbox):
    told = []
    pool = LibraryPool(str(tmp_path / "libraries"), cancel_grace=0.5,
                       on_ready=lambda *start: told.append(start))
    try:
        library = pool.get(spec(f"{sys.executable} -m vinemake.library lib.py", slots=2),
                           copier(module))
        assert library.call("double", ["in.txt", "out"], str(sandbox)).ok
        assert library.call("double", ["in.txt", "out2"], str(sandbox)).ok
        ((name, started, ready),) = told  # the second call found it running
        assert name == "m" and started <= ready
        os.killpg(library.pid, signal.SIGKILL)  # the instance dies: the next call restarts it
        wait_until(lambda: library.pid is None)
        assert library.call("double", ["in.txt", "out3"], str(sandbox)).ok
        assert len(told) == 2 and told[1][1] >= ready
    finally:
        pool.close(grace=0.5)


def test_a_library_starts_with_the_thread_counts_of_its_cores(pool, tmp_path, sandbox):
    # Numeric libraries size their thread pools when they are imported: at the start.
    (tmp_path / "threads.py").write_text(
        "import os\n"
        "AT_START = [os.environ.get(n) for n in ('CORES', 'OMP_NUM_THREADS', "
        "'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')]\n"
        "def threads(out):\n"
        "    open(out, 'w').write(' '.join(AT_START))\n")
    library = pool.get(LibrarySpec(name="t", key="rule-xxh3_128-0123", slots=1,
                                   command=f"{sys.executable} -m vinemake.library threads.py",
                                   resources=Resources(cores=3),
                                   env=(("MKL_NUM_THREADS", "1"),)),
                       copier(tmp_path / "threads.py"))
    assert library.call("threads", ["out"], str(sandbox)).ok
    assert (sandbox / "out").read_text() == "3 3 3 1"


def test_a_latch_set_from_another_thread_wakes_its_waiter_and_stays_open():
    latch = _Latch()
    assert (latch.is_set(), latch.wait(0), latch.wait(-1.5)) == (False, False, False)
    setter = threading.Thread(target=latch.set)
    setter.start()
    assert latch.wait() is True  # no timeout: returns only once set
    setter.join()
    latch.set()  # a second set (a call answered after it was cancelled) is harmless
    assert (latch.is_set(), latch.wait(0), latch.wait(), latch.wait(5.0)) == (True,) * 4
