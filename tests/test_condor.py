"""`-T condor`: the submit description it writes, and how it reads condor_q.

HTCondor has no Debian package here, so nothing runs against a live pool (see docs/cluster.md).
"""

from __future__ import annotations

from vinemake.backends import Demand, ManagerAddress, ProviderOptions
from vinemake.backends.batch import CommandResult, FakeClock, FakeRunner, WorkerJob
from vinemake.backends.condor import Condor, CondorWorkers, condor_arguments
from vinemake.common.spec import Resources


def test_submit_description():
    runner = FakeRunner({"condor_submit": CommandResult(0, "812.0 - 812.2\n")})
    provider = CondorWorkers(runner, FakeClock(), background=False, log=lambda m: None)
    provider.start(ManagerAddress("10.0.0.5", 9123, password_file="/home/a b/pw"),
                   ProviderOptions(worker_timeout_s=60,
                                   batch_options='requirements = (OpSys == "LINUX")\n'
                                                 "+AccountingGroup = \"proj\""))
    provider.worker_program = "/opt/bin/vinemake-worker"
    provider.scale(Demand(waiting=(Resources(cores=2, memory_mb=3000, disk_mb=100, gpus=1,
                                             wall_time_s=60),) * 3))
    assert runner.calls[0][:-1] == ["condor_submit", "-terse"]
    assert runner.scripts == [
        "# A vinemake worker pilot: it serves rules until idle for --timeout seconds.\n"
        "universe = vanilla\n"
        "executable = /opt/bin/vinemake-worker\n"
        "transfer_executable = false\n"
        "arguments = \"10.0.0.5 9123 --cores 2 --memory 3000 --disk 100 --gpus 1 --timeout 60 "
        "--password '/home/a b/pw' --name condor-$(Cluster).$(Process)\"\n"
        "request_cpus = 2\n"
        "request_memory = 3000\n"
        "request_disk = 102400\n"
        "request_gpus = 1\n"
        "periodic_remove = JobStatus == 2 && time() - EnteredCurrentStatus > 120\n"
        "getenv = true\n"
        "output = /dev/null\n"
        "error = /dev/null\n"
        f"JobBatchName = {provider.run_name}-1\n"
        'requirements = (OpSys == "LINUX")\n'
        '+AccountingGroup = "proj"\n'
        "queue 3\n"]
    assert provider.submitted == ["812"]
    provider.close()
    assert runner.calls[-1] == ["condor_rm", "812"]


def test_arguments_quoting():
    assert condor_arguments(["a", "b c", "it's", 'say "hi"']) == (
        '"a \'b c\' \'it\'\'s\' \'say ""hi""\'"')


def test_condor_q_by_cluster():
    condor = Condor()
    jobs = [WorkerJob("812", Resources(cores=1), 3, 3, 0.0, "vm-ab12-1")]
    assert condor.status_argv(jobs) == ["condor_q", "812", "-af", "ClusterId", "ProcId",
                                        "JobStatus"]
    status = condor.parse_status("812 0 2\n812 1 1\n812 2 4\n813 0 5\n")
    assert {k: (v.pending, v.running, v.reason) for k, v in status.items()} == {
        "812": (1, 1, ""), "813": (1, 0, "held")}
    assert condor.parse_job_id("812.0 - 812.2\n") == "812"
