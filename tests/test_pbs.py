"""`-T pbs`: the qsub command it writes, how it reads qstat, and a live run through Debian's
slurm-wlm-torque wrappers (qsub/qstat/qdel over the test SLURM cluster)."""

from __future__ import annotations

import getpass
import shutil

import pytest
from conftest import require
from test_slurm import ONE, accept_hello, listener, options, slurm_answers, squeue, stub, wait_gone

from vinemake.backends import Demand, ManagerAddress, ProviderOptions
from vinemake.backends.batch import CommandResult, FakeClock, FakeRunner, WorkerJob
from vinemake.backends.pbs import Pbs, PbsWorkers
from vinemake.common.errors import InfrastructureError
from vinemake.common.spec import Resources

__all__ = ["listener", "stub"]  # fixtures shared with test_slurm


def test_qsub_command_and_script():
    runner = FakeRunner({"qsub": CommandResult(0, "123[].pbs01\n")})
    provider = PbsWorkers(runner, FakeClock(), background=False, log=lambda m: None)
    provider.start(ManagerAddress("10.0.0.5", 9123),
                   ProviderOptions(worker_timeout_s=120, batch_options="-q long -A proj"))
    provider.worker_program = "/opt/bin/vinemake-worker"
    provider.scale(Demand(waiting=(Resources(cores=2, memory_mb=4000, gpus=1,
                                             wall_time_s=3600),) * 3))
    assert runner.calls[0][:-1] == [
        "qsub", "-N", f"{provider.run_name}-1", "-t", "1-3",
        "-l", "nodes=1:ppn=2:gpus=1,mem=4000mb,walltime=01:02:00",
        "-o", "/dev/null", "-j", "oe", "-V", "-q", "long", "-A", "proj"]
    assert runner.scripts == [
        "#!/bin/sh\n"
        "# A vinemake worker pilot: it serves rules until idle for --timeout seconds.\n"
        "exec /opt/bin/vinemake-worker 10.0.0.5 9123 --cores 2 --memory 4000 --gpus 1 "
        '--timeout 120 --name "pbs-${PBS_JOBID}"\n']
    assert provider.submitted == ["123[].pbs01"]
    provider.close()
    assert runner.calls[-1] == ["qdel", "123[].pbs01"]


def test_qsub_output_is_a_job_id_or_nothing():
    pbs = Pbs()
    assert pbs.parse_job_id("29\n") == "29"
    assert pbs.parse_job_id("4711.server.example.org\n") == "4711.server.example.org"
    assert pbs.parse_job_id("There was an error running the Slurm sbatch command.\n") == ""


def test_qstat_rows_are_counted_by_job_name():
    out = """
vm:
                                                                               Req'd  Req'd   Elap
Job id               Username Queue    Name                 SessID NDS   TSK   Memory Time Use S
-------------------- -------- -------- -------------------- ------ ----- ----- ------ ----- - -----
29                   root     debug    vm-ab12-1            --         1     1     -- 00:05 Q 00:00
30                   root     debug    vm-ab12-1            --         1     1     -- 00:05 R 00:00
31                   root     debug    vm-ab12-1            --         1     1     -- 00:05 C 00:00
32                   root     debug    vm-ab12-2            --         1     1     -- 00:05 H 00:00
"""
    pbs = Pbs()
    status = pbs.parse_status(out)
    assert {k: (v.pending, v.running) for k, v in status.items()} == {
        "vm-ab12-1": (1, 1), "vm-ab12-2": (1, 0)}
    assert pbs.status_key(WorkerJob("29", ONE, 3, 3, 0.0, "vm-ab12-1")) == "vm-ab12-1"
    assert pbs.status_argv([]) == ["qstat", "-u", getpass.getuser()]


@pytest.fixture(scope="module")
def torque():
    require(slurm_answers() and shutil.which("qsub") is not None and
            "Slurm" in open(shutil.which("qsub")).read(),
            "the slurm-wlm-torque qsub wrapper on a running SLURM (tests/cluster/slurm-up.sh)")


@pytest.mark.slurm
def test_pbs_workers_connect_back_and_qdel_cancels_them(torque, listener, stub):
    provider = PbsWorkers(background=False, log=lambda m: None, poll_interval_s=0)
    port = listener.getsockname()[1]
    provider.start(ManagerAddress("127.0.0.1", port), options(stub))
    try:
        provider.scale(Demand(waiting=(ONE, ONE)))
        conns, hellos = zip(*(accept_hello(listener) for _ in range(2)), strict=True)
        assert all(h.startswith(f"127.0.0.1 {port} --cores 1 --timeout 60 --name pbs-")
                   for h in hellos)
        assert len(squeue(provider.names)) == 2
        # qstat sees both running: nothing more is submitted for the same work
        provider.scale(Demand(waiting=(ONE, ONE), connected_workers=0))
        assert len(provider.submitted) == 1
        assert [(j.job_id, j.alive) for j in provider.jobs] == [(provider.submitted[0], 2)]
    finally:
        provider.close()
    assert wait_gone(provider.names) == []


@pytest.mark.slurm
def test_pbs_refusal_is_reported_with_the_reason(torque, stub):
    provider = PbsWorkers(background=False, log=lambda m: None)
    provider.start(ManagerAddress("127.0.0.1", 9), options(stub))
    try:
        with pytest.raises(InfrastructureError) as raised:
            provider.scale(Demand(waiting=(Resources(cores=999),)))
    finally:
        provider.close()
    assert str(raised.value).startswith(
        "qsub refused the worker jobs and retrying cannot help: 'sbatch: error: Batch job "
        "submission failed: More processors requested than permitted")
