"""`-T slurm` against a real SLURM (tests/cluster/slurm-up.sh): arrays, resources, cleanup."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import require

from vinemake.backends import Demand, ManagerAddress, ProviderOptions
from vinemake.backends.slurm import SlurmWorkers
from vinemake.common.errors import InfrastructureError
from vinemake.common.spec import Resources

pytestmark = pytest.mark.slurm

ONE = Resources(cores=1)
# Stands in for vinemake-worker: connects back, says how it was started, stays until the
# manager hangs up or its idle --timeout passes (what the real worker does when idle).
STUB = """\
import socket, sys
args = sys.argv[1:]
timeout = float(args[args.index("--timeout") + 1])
s = socket.create_connection((args[0], int(args[1])), timeout=10)
s.sendall((" ".join(args) + "\\n").encode())
s.settimeout(timeout)
try:
    s.recv(1)
except OSError:
    pass
"""


def slurm_answers() -> bool:
    try:
        done = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "is UP" in done.stdout


@pytest.fixture(scope="module")
def cluster():
    require(slurm_answers(), "a running SLURM (start it with tests/cluster/slurm-up.sh)")


@pytest.fixture
def listener():
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(60)
    yield server
    server.close()


@pytest.fixture
def stub(tmp_path: Path) -> str:
    path = tmp_path / "stub-worker"
    path.write_text(f"#!{sys.executable}\n{STUB}")
    path.chmod(0o755)
    return str(path)


def options(stub: str, **kw) -> ProviderOptions:
    return ProviderOptions(**{"worker_timeout_s": 60, "extra": (("worker_program", stub),),
                              **kw})


def accept_hello(server: socket.socket) -> tuple[socket.socket, str]:
    conn, _ = server.accept()
    conn.settimeout(30)
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        assert chunk, "worker hung up before saying hello"
        data += chunk
    return conn, data.decode().strip()


def squeue(name: str | list[str]) -> list[str]:
    """The ids of the jobs (array tasks) SLURM still lists under these names."""
    name = name if isinstance(name, str) else ",".join(name) or "none"
    out = subprocess.run(["squeue", "-h", "-r", f"--name={name}", "-o", "%i %T"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return out.split()[::2]


def wait_gone(name: str | list[str], seconds: float = 30) -> list[str]:
    """Jobs of `name` still listed after waiting up to `seconds` for them to leave."""
    end = time.monotonic() + seconds
    while (left := squeue(name)) and time.monotonic() < end:
        time.sleep(0.2)
    return left


def test_a_worker_array_connects_back_and_is_cancelled_on_close(cluster, listener, stub):
    provider = SlurmWorkers(background=False, log=lambda m: None)
    port = listener.getsockname()[1]
    provider.start(ManagerAddress("127.0.0.1", port), options(stub))
    try:
        provider.scale(Demand(waiting=(ONE, ONE)))
        assert len(provider.submitted) == 1, "one array for both workers"
        job = provider.submitted[0]
        conns, hellos = zip(*(accept_hello(listener) for _ in range(2)), strict=True)
        hellos = sorted(hellos)
        assert hellos == [f"127.0.0.1 {port} --cores 1 --timeout 60 --name slurm-{job}_{i}"
                          for i in (1, 2)]
        assert sorted(squeue(provider.names)) == [f"{job}_1", f"{job}_2"]
    finally:
        provider.close()
    assert wait_gone(provider.names) == []


def test_requested_resources_appear_in_scontrol(cluster, listener, stub):
    provider = SlurmWorkers(background=False, log=lambda m: None)
    provider.start(ManagerAddress("127.0.0.1", listener.getsockname()[1]), options(stub))
    try:
        provider.scale(Demand(waiting=(Resources(cores=2, memory_mb=300, wall_time_s=100),)))
        conn, hello = accept_hello(listener)
        assert "--cores 2 --memory 300 --timeout 60 --name" in hello
        shown = subprocess.run(["scontrol", "show", "job", provider.submitted[0]],
                               capture_output=True, text=True, check=True).stdout
        assert "NumCPUs=2 " in shown and "TRES=cpu=2,mem=300M" in shown
        assert "TimeLimit=00:03:00" in shown  # 100 s of WALL_TIME + 60 s idle, in minutes
        assert f"JobName={provider.names[0]}" in shown
    finally:
        provider.close()
    assert wait_gone(provider.names) == []


def test_a_scancelled_worker_is_replaced(cluster, listener, stub):
    provider = SlurmWorkers(background=False, log=lambda m: None, poll_interval_s=0)
    provider.start(ManagerAddress("127.0.0.1", listener.getsockname()[1]), options(stub))
    try:
        provider.scale(Demand(waiting=(ONE, ONE)))
        conns = [accept_hello(listener)[0] for _ in range(2)]
        job = provider.submitted[0]
        subprocess.run(["scancel", f"{job}_1"], check=True, timeout=30)
        end = time.monotonic() + 30
        while f"{job}_1" in squeue(provider.names) and time.monotonic() < end:
            time.sleep(0.2)
        # the manager lost that worker and re-queued its task
        provider.scale(Demand(waiting=(ONE,), connected_workers=1))
        assert len(provider.submitted) == 2
        _, hello = accept_hello(listener)
        assert hello.endswith(f"--name slurm-{provider.submitted[1]}_1")
        del conns
    finally:
        provider.close()
    assert wait_gone(provider.names) == []


@pytest.mark.parametrize("resources, batch_options, why", [
    (Resources(cores=999), "", "Batch job submission failed: More processors requested than "
                               "permitted"),
    (Resources(memory_mb=10**8), "", "Batch job submission failed: Requested node "
                                     "configuration is not available"),
    (ONE, "--partition=nope", "Batch job submission failed: Invalid partition name specified"),
    (ONE, "--bogus", "unrecognized option '--bogus'"),
])
def test_a_request_slurm_can_never_run_stops_with_its_reason(cluster, stub, resources,
                                                              batch_options, why):
    provider = SlurmWorkers(background=False, log=lambda m: None)
    provider.start(ManagerAddress("127.0.0.1", 9), options(stub, batch_options=batch_options))
    try:
        with pytest.raises(InfrastructureError) as raised:
            provider.scale(Demand(waiting=(resources,)))
    finally:
        provider.close()
    prefix = "" if why.startswith("unrec") else "error: "
    assert str(raised.value).splitlines()[0] == (
        f"sbatch refused the worker jobs and retrying cannot help: sbatch: {prefix}{why}")


CHILD = """\
import signal, sys, time
# Ctrl-C as an interactive shell delivers it, even when the tests were started in the
# background by a script (which starts its background jobs with SIGINT ignored).
signal.signal(signal.SIGINT, signal.default_int_handler)
from vinemake.backends import Demand, ManagerAddress, ProviderOptions
from vinemake.backends.slurm import SlurmWorkers
from vinemake.common.spec import Resources
p = SlurmWorkers(background=False)
p.start(ManagerAddress("127.0.0.1", int(sys.argv[1])),
        ProviderOptions(worker_timeout_s=60, extra=(("worker_program", sys.argv[2]),)))
p.scale(Demand(waiting=(Resources(cores=1),)))
print(",".join(p.names), flush=True)
time.sleep(120)
"""


def test_ctrl_c_leaves_no_job_behind(cluster, listener, stub, tmp_path):
    """No try/finally in the child: the provider's own exit hook cancels on KeyboardInterrupt."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen([sys.executable, str(script), str(listener.getsockname()[1]), stub],
                             stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        name = child.stdout.readline().strip()
        conn, _ = accept_hello(listener)
        assert len(squeue(name)) == 1
        child.send_signal(signal.SIGINT)
        child.wait(timeout=60)
    finally:
        child.kill()
        child.wait()
    assert wait_gone(name) == []


def test_jobs_of_other_runs_are_left_alone(cluster, listener, stub):
    other = f"not-vinemake-{uuid.uuid4().hex[:8]}"
    job = subprocess.run(["sbatch", "--parsable", "-J", other, "-o", "/dev/null", "--mem=10M",
                          "--wrap", "sleep 60"], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        provider = SlurmWorkers(background=False, log=lambda m: None)
        provider.start(ManagerAddress("127.0.0.1", listener.getsockname()[1]), options(stub))
        provider.scale(Demand(waiting=(ONE,)))
        conn, _ = accept_hello(listener)
        provider.close()
        assert wait_gone(provider.names) == []
        assert squeue(other) == [job]
    finally:
        subprocess.run(["scancel", job], check=True)


# ---------------------------------------------------------------- end to end: vinemake -T slurm

CHAIN = """\
a.txt:
\techo a > a.txt
b.txt: a.txt
\tcat a.txt > b.txt; echo b >> b.txt
c.txt: a.txt
\tcat a.txt > c.txt; echo c >> c.txt
all.txt: b.txt c.txt
\tcat b.txt c.txt > all.txt
"""


def vinemake_argv(tag: str, *extra: str) -> list[str]:
    """`vinemake -T slurm` whose jobs carry `tag` as their SLURM comment, to find them after."""
    return [sys.executable, "-m", "vinemake", "-T", "slurm", "--manager-host", "127.0.0.1",
            "--worker-timeout", "10", "--batch-options", f"--comment={tag}", *extra]


def tagged(tag: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %k"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.split()[1:] == [tag]]


def wait_untagged(tag: str, seconds: float = 30) -> list[str]:
    end = time.monotonic() + seconds
    while (left := tagged(tag)) and time.monotonic() < end:
        time.sleep(0.2)
    return left


def wait_for(path: Path, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < end, f"{path.name} never appeared"
        time.sleep(0.1)


@pytest.fixture
def tag() -> str:
    return f"vinemake-test-{uuid.uuid4().hex[:8]}"


def test_vinemake_T_slurm_builds_the_workflow_then_leaves_no_job(cluster, tmp_path, tag):
    (tmp_path / "Vinefile").write_text(CHAIN)
    first = subprocess.run(vinemake_argv(tag), cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "all.txt").read_text() == "a\nb\na\nc\n"
    assert wait_untagged(tag) == []
    second = subprocess.run(vinemake_argv(tag), cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert second.returncode == 0, second.stderr
    assert "nothing to do, 4 rules up to date" in second.stderr + second.stdout


def test_rule_resources_are_what_the_worker_job_asks_slurm_for(cluster, tmp_path, tag):
    (tmp_path / "Vinefile").write_text(
        "@resources cores=2 memory=300MB wall_time=100\n"
        "job.txt:\n\tprintenv SLURM_ARRAY_JOB_ID > job.txt\n")
    done = subprocess.run(vinemake_argv(tag), cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    job = (tmp_path / "job.txt").read_text().strip()
    shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True,
                           check=True).stdout
    assert "NumCPUs=2 " in shown and "TRES=cpu=2,mem=300M" in shown
    assert "TimeLimit=00:02:00" in shown  # 100 s of WALL_TIME + 10 s idle timeout
    assert f"Comment={tag}" in shown


def test_a_rules_batch_options_reach_its_worker_job_after_batch_options(cluster, tmp_path, tag):
    (tmp_path / "Vinefile").write_text(
        f"own.txt:\n@BATCH_OPTIONS=--comment={tag}-rule\n"
        "\tprintenv SLURM_ARRAY_JOB_ID > own.txt\n"
        f"CATEGORY=special\nBATCH_OPTIONS=--comment={tag}-cat\n"
        "cat.txt:\n\tprintenv SLURM_ARRAY_JOB_ID > cat.txt\n")
    done = subprocess.run(vinemake_argv(tag), cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    comments = {}
    for name in ("own", "cat"):
        job = (tmp_path / f"{name}.txt").read_text().strip()
        shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True,
                               text=True, check=True).stdout
        comments[name] = shown.split("Comment=")[1].split()[0]
    # --batch-options (--comment=TAG) comes first on sbatch's command line: the rule's wins.
    assert comments == {"own": f"{tag}-rule", "cat": f"{tag}-cat"}
    assert [wait_untagged(c) for c in comments.values()] == [[], []]


def slow_vinefile(tmp_path: Path, secs: int) -> Path:
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "Vinefile").write_text(
        f"out.txt:\n\tmktemp {marks}/started.XXXXXX >/dev/null; sleep {secs}; "
        "echo done > out.txt\n")
    return marks


def started(marks: Path) -> int:
    return len(list(marks.iterdir()))


def test_a_worker_job_scancelled_mid_rule_does_not_lose_the_workflow(cluster, tmp_path, tag):
    marks = slow_vinefile(tmp_path, 5)
    run = subprocess.Popen(vinemake_argv(tag), cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        end = time.monotonic() + 60
        while not started(marks):
            assert time.monotonic() < end and run.poll() is None, "the rule never started"
            time.sleep(0.1)
        # Not a timing assertion: the manager samples its workers once a second, and a worker
        # that came and went unseen is only noticed at the next squeue, 30 s later.
        time.sleep(2)
        jobs = tagged(tag)
        subprocess.run(["scancel", *jobs], check=True, timeout=30)
        output, _ = run.communicate(timeout=120)
    finally:
        run.kill()
        run.wait()
    assert run.returncode == 0, output
    assert (tmp_path / "out.txt").read_text() == "done\n"
    assert started(marks) == 2, "the rule ran again on a replacement worker"
    assert wait_untagged(tag) == []


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stopping_vinemake_leaves_no_job_behind(cluster, tmp_path, tag, sig, code):
    marks = slow_vinefile(tmp_path, 60)
    run = subprocess.Popen(vinemake_argv(tag), cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        end = time.monotonic() + 60
        while not started(marks):
            assert time.monotonic() < end and run.poll() is None, "the rule never started"
            time.sleep(0.1)
        assert tagged(tag)
        run.send_signal(sig)
        output, _ = run.communicate(timeout=60)
    finally:
        run.kill()
        run.wait()
    assert run.returncode == code, output
    assert wait_untagged(tag) == []


def test_after_kill_9_the_workers_end_by_themselves(cluster, tmp_path, tag):
    """Nothing can cancel the jobs of a SIGKILLed vinemake: its workers notice and exit."""
    marks = slow_vinefile(tmp_path, 600)
    run = subprocess.Popen(vinemake_argv(tag), cwd=tmp_path, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 60
        while not started(marks):
            assert time.monotonic() < end and run.poll() is None, "the rule never started"
            time.sleep(0.1)
        run.kill()
        run.wait()
        killed_at = time.monotonic()
        # the worker loses its manager, kills the rule, waits at most its idle timeout (10 s)
        assert wait_untagged(tag, seconds=40) == []
        print(f"worker jobs gone {time.monotonic() - killed_at:.1f} s after kill -9")
    finally:
        run.kill()
        run.wait()
        left = tagged(tag)
        if left:
            subprocess.run(["scancel", *left], check=False)
