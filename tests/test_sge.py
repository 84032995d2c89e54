"""`-T sge`: the qsub command and script it writes, and how it reads qstat.

Not run against a live Grid Engine: Debian's gridengine-client conflicts with slurm-wlm-torque,
which the live PBS tests need on the same machine (see docs/cluster.md).
"""

from __future__ import annotations

import getpass

from vinemake.backends import Demand, ManagerAddress, ProviderOptions
from vinemake.backends.batch import CommandResult, FakeClock, FakeRunner, WorkerJob
from vinemake.backends.sge import Sge, SgeWorkers
from vinemake.common.spec import Resources


def submit(resources: Resources, count: int, **options):
    runner = FakeRunner({"qsub": CommandResult(0, "4711.1-3:1\n")})
    provider = SgeWorkers(runner, FakeClock(), background=False, log=lambda m: None)
    provider.start(ManagerAddress("10.0.0.5", 9123),
                   ProviderOptions(**{"worker_timeout_s": 60, **options}))
    provider.worker_program = "/opt/bin/vinemake-worker"
    provider.scale(Demand(waiting=(resources,) * count))
    return provider, runner


def test_qsub_command_and_script():
    provider, runner = submit(Resources(cores=4, memory_mb=8000, wall_time_s=540), 3,
                              batch_options="-q all.q -P proj",
                              extra=(("sge_pe", "threads"),))
    assert runner.calls[0][:-1] == [
        "qsub", "-terse", "-N", f"{provider.run_name}-1", "-t", "1-3", "-S", "/bin/sh", "-cwd",
        "-V", "-o", "/dev/null", "-j", "y", "-pe", "threads", "4",
        "-l", "h_vmem=2000M,h_rt=00:10:00", "-q", "all.q", "-P", "proj"]
    assert runner.scripts == [
        "#!/bin/sh\n"
        "# A vinemake worker pilot: it serves rules until idle for --timeout seconds.\n"
        "exec /opt/bin/vinemake-worker 10.0.0.5 9123 --cores 4 --memory 8000 --timeout 60 "
        '--name "sge-${JOB_ID}.${SGE_TASK_ID}"\n']
    assert provider.submitted == ["4711"]
    provider.close()
    assert runner.calls[-1] == ["qdel", "4711"]


def test_one_core_asks_for_no_parallel_environment():
    _, runner = submit(Resources(), 1)
    assert runner.calls[0][:-1] == [
        "qsub", "-terse", "-N", runner.calls[0][3], "-t", "1-1", "-S", "/bin/sh", "-cwd", "-V",
        "-o", "/dev/null", "-j", "y"]


def test_qstat_counts_array_tasks_by_job_id():
    out = """\
job-ID  prior  name  user   state submit/start at  queue        slots ja-task-ID
------------------------------------------------------------------------------------------
  4711 0.55500 vm-ab12-1  alice  r  11/22/2026 01:02:03 all.q@node1        1 1
  4711 0.55500 vm-ab12-1  alice  r  11/22/2026 01:02:03 all.q@node2        1 2
  4711 0.55500 vm-ab12-1  alice  qw  11/22/2026 01:02:00            1 3-7:1
  4712 0.55500 vm-ab12-2  alice  hqw  11/22/2026 01:02:00            4
  4713 0.55500 vm-ab12-3  alice  Eqw  11/22/2026 01:02:00            1
  4714 0.55500 vm-ab12-4  alice  dr  11/22/2026 01:02:03 all.q@node1        1
"""
    sge = Sge()
    status = sge.parse_status(out)
    assert {k: (v.pending, v.running) for k, v in status.items()} == {
        "4711": (5, 2), "4712": (1, 0)}
    assert sge.status_key(WorkerJob("4711", Resources(cores=1), 7, 7, 0.0, "vm-ab12-1")) == "4711"
    assert sge.status_argv([]) == ["qstat", "-u", getpass.getuser()]


def test_terse_job_ids():
    assert Sge().parse_job_id("4711.1-3:1\n") == "4711"
    assert Sge().parse_job_id("4712\n") == "4712"
    assert Sge().parse_job_id("Unable to run job: job rejected\n") == ""
