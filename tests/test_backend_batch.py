"""Batch providers without a cluster: scaling, polling rate, backoff, cleanup, sbatch text."""

from __future__ import annotations

import re
import socket
import threading

import pytest

from vinemake.backends import (
    Demand,
    ManagerAddress,
    ProviderOptions,
    options_tag,
    worker_options_tag,
)
from vinemake.backends.batch import (
    ArrayRequest,
    CommandResult,
    FakeClock,
    FakeRunner,
    WorkerJob,
    WorkerLaunch,
    backoff_s,
    join_options,
    plan_workers,
    reachable_host,
    worker_shape,
)
from vinemake.backends.condor import Condor
from vinemake.backends.pbs import Pbs
from vinemake.backends.sge import Sge
from vinemake.backends.slurm import SlurmWorkers
from vinemake.common.errors import InfrastructureError
from vinemake.common.spec import Resources

ONE = Resources(cores=1)
OPTS = ProviderOptions(worker_timeout_s=60)
ADDR = ManagerAddress("10.0.0.5", 9123)


def job(job_id: str, alive: int, resources: Resources = ONE, at: float = 0.0) -> WorkerJob:
    return WorkerJob(job_id, resources, alive, alive, at)


# ---------------------------------------------------------------- plan_workers (pure)


def test_one_array_for_tasks_of_one_shape():
    demand = Demand(waiting=(ONE,) * 3)
    assert plan_workers(demand, [], OPTS, 100) == [ArrayRequest(3, ONE)]


def test_one_array_per_shape_in_arrival_order():
    big = Resources(cores=4, memory_mb=8000, gpus=1, wall_time_s=600)
    demand = Demand(waiting=(ONE, big, ONE, big, big))
    assert plan_workers(demand, [], OPTS, 100) == [ArrayRequest(2, ONE), ArrayRequest(3, big)]


def test_workers_still_starting_are_not_submitted_again():
    demand = Demand(waiting=(ONE,) * 3, connected_workers=0)
    assert plan_workers(demand, [job("7", 3)], OPTS, 100) == []
    # more work arrived: only the difference
    assert plan_workers(Demand(waiting=(ONE,) * 5), [job("7", 3)], OPTS, 100) == [
        ArrayRequest(2, ONE)]


def test_connected_workers_no_longer_count_as_starting():
    # 3 submitted, 3 connected and busy: 2 more waiting tasks need 2 more workers
    demand = Demand(waiting=(ONE,) * 2, connected_workers=3)
    assert plan_workers(demand, [job("7", 3)], OPTS, 100) == [ArrayRequest(2, ONE)]


def test_starting_workers_are_the_newest_submissions():
    big = Resources(cores=2)
    jobs = [job("1", 2, ONE, at=1.0), job("2", 2, big, at=2.0)]
    # 2 of the 4 connected: the older (1-core) array is assumed up, the 2-core one starting
    demand = Demand(waiting=(big, big, ONE), connected_workers=2)
    assert plan_workers(demand, jobs, OPTS, 100) == [ArrayRequest(1, ONE)]


def test_idle_workers_take_waiting_tasks_first():
    demand = Demand(waiting=(ONE,) * 3, connected_workers=2, idle_workers=2)
    assert plan_workers(demand, [job("1", 2)], OPTS, 100) == [ArrayRequest(1, ONE)]


def test_max_workers_caps_what_is_alive():
    demand = Demand(waiting=(ONE,) * 50, connected_workers=8)
    assert plan_workers(demand, [job("1", 8)], OPTS, 10) == [ArrayRequest(2, ONE)]
    assert plan_workers(demand, [job("1", 10)], OPTS, 10) == []


def test_min_workers_are_kept_without_work():
    opts = ProviderOptions(min_workers=3)
    assert plan_workers(Demand(), [], opts, 100) == [ArrayRequest(3, ONE)]
    assert plan_workers(Demand(), [job("1", 2)], opts, 100) == [ArrayRequest(1, ONE)]
    assert plan_workers(Demand(waiting=(ONE,) * 4), [], opts, 100) == [ArrayRequest(4, ONE)]


def test_fixed_worker_size_packs_tasks():
    opts = ProviderOptions(worker_resources=Resources(cores=4, memory_mb=4000))
    four = Resources(cores=4, memory_mb=4000)
    demand = Demand(waiting=(Resources(cores=1, memory_mb=1000),) * 10)
    assert plan_workers(demand, [], opts, 100) == [ArrayRequest(3, four)]
    # memory is the tighter limit here: 2 per worker
    demand = Demand(waiting=(Resources(cores=1, memory_mb=2000),) * 10)
    assert plan_workers(demand, [], opts, 100) == [ArrayRequest(5, four)]


def test_worker_shape_rounds_cores_up_and_defaults_to_one():
    assert worker_shape(Resources(), OPTS) == ONE
    assert worker_shape(Resources(cores=1.5, gpus=0), OPTS) == Resources(cores=2)
    assert worker_shape(Resources(cores=2, wall_time_s=60), OPTS) == Resources(
        cores=2, wall_time_s=60)


def test_rules_with_batch_options_get_their_own_arrays():
    demand = Demand(waiting=(ONE, ONE, ONE, ONE),
                    waiting_batch_options=("", "--comment=x", "", "--comment=x"))
    assert plan_workers(demand, [], OPTS, 100) == [
        ArrayRequest(2, ONE), ArrayRequest(2, ONE, "--comment=x")]


def test_idle_workers_take_only_tasks_without_batch_options():
    demand = Demand(waiting=(ONE, ONE, ONE), waiting_batch_options=("--comment=x", "", ""),
                    connected_workers=2, idle_workers=2)
    assert plan_workers(demand, [job("1", 2)], OPTS, 100) == [
        ArrayRequest(1, ONE, "--comment=x")]


def test_starting_workers_count_only_for_their_own_batch_options():
    starting = WorkerJob("7", ONE, 2, 2, 0.0, batch_options="--comment=x")
    demand = Demand(waiting=(ONE,) * 3, waiting_batch_options=("--comment=x", "", ""))
    assert plan_workers(demand, [starting], OPTS, 100) == [ArrayRequest(2, ONE)]


def test_workers_are_never_told_to_connect_to_a_wildcard_address():
    assert reachable_host("10.1.2.3") == "10.1.2.3"
    assert reachable_host("0.0.0.0", lambda: "login1.hpc.example.org") == "login1.hpc.example.org"
    assert reachable_host("::", lambda: "localhost") == socket.gethostname()


def test_backoff_doubles_to_five_minutes():
    assert [backoff_s(n) for n in (1, 2, 3, 4, 7, 20)] == [5, 10, 20, 40, 300, 300]


# ---------------------------------------------------------------- the provider, with fakes


def squeue_lines(*lines: str) -> CommandResult:
    return CommandResult(0, "".join(line + "\n" for line in lines))


def make(responders=None, **options):
    runner = FakeRunner(dict(responders or {}))
    runner.responders.setdefault("sbatch", CommandResult(0, "42\n"))
    clock, messages = FakeClock(), []
    provider = SlurmWorkers(runner, clock, log=messages.append, background=False)
    opts = ProviderOptions(**{"worker_timeout_s": 60, **options})
    provider.start(ADDR, opts)
    provider.worker_program = "/opt/bin/vinemake-worker"  # stable text for assertions
    return provider, runner, clock, messages


def test_sbatch_script_asks_for_what_the_rules_need():
    provider, runner, _, _ = make(batch_options="-p short --qos=low")
    big = Resources(cores=3.5, memory_mb=2048, disk_mb=500, gpus=1, wall_time_s=3600)
    provider.scale(Demand(waiting=(big, big)))
    assert runner.calls[0][:-1] == ["sbatch", "--parsable", "-p", "short", "--qos=low"]
    assert runner.scripts == [
        "#!/bin/sh\n"
        f"#SBATCH --job-name={provider.run_name}-1\n"
        "#SBATCH --array=1-2\n"
        "#SBATCH --nodes=1\n"
        "#SBATCH --ntasks=1\n"
        "#SBATCH --cpus-per-task=4\n"
        "#SBATCH --mem=2048M\n"
        "#SBATCH --time=61\n"
        "#SBATCH --gres=gpu:1\n"
        "#SBATCH --output=/dev/null\n"
        "# A vinemake worker pilot: it serves rules until idle for --timeout seconds.\n"
        "exec /opt/bin/vinemake-worker 10.0.0.5 9123 --cores 4 --memory 2048 --disk 500 "
        '--gpus 1 --timeout 60 --name "slurm-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"\n']
    assert provider.submitted == ["42"]


def test_a_rules_batch_options_follow_the_users_and_tag_the_worker_name():
    provider, runner, _, _ = make(batch_options="-p short")
    provider.scale(Demand(waiting=(ONE, ONE), waiting_batch_options=("", "--comment='a b'")))
    plain, tagged = runner.calls
    assert plain[:-1] == ["sbatch", "--parsable", "-p", "short"]
    assert tagged[:-1] == ["sbatch", "--parsable", "-p", "short", "--comment=a b"]
    tag = options_tag("--comment='a b'")
    assert re.fullmatch(r"@bo-[0-9a-f]{10}", tag)
    assert runner.scripts[0].endswith(
        '--name "slurm-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"\n')
    assert runner.scripts[1].endswith(
        f'--name "slurm-${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}{tag}"\n')
    assert [j.batch_options for j in provider.jobs] == ["", "--comment='a b'"]


def test_a_worker_name_says_which_batch_options_it_was_submitted_with():
    tag = options_tag("--comment=x")
    assert options_tag("") == ""
    assert tag != options_tag("--comment=y")
    assert worker_options_tag(f"slurm-42_1{tag}") == tag
    assert worker_options_tag(f"slurm-42_1{tag}#2") == tag  # a namesake's manager id
    assert worker_options_tag("slurm-42_1") == ""
    assert worker_options_tag(f"{tag}x") == ""


def test_password_and_ssl_reach_the_worker():
    provider, runner, _, _ = make()
    provider.manager = ManagerAddress("h", 1, password_file="/s/pw", ssl=True)
    provider.scale(Demand(waiting=(ONE,)))
    assert "--timeout 60 --password /s/pw --ssl --name" in runner.scripts[0]


def test_one_sbatch_for_the_same_demand_seen_every_second():
    provider, runner, clock, _ = make({"squeue": squeue_lines(*[f"42 {i} PENDING Priority"
                                                                 for i in range(1, 5)])})
    for _ in range(60):
        provider.scale(Demand(waiting=(ONE,) * 4))
        clock.advance(1)
    assert runner.programs() == ["sbatch", "squeue"]


def test_status_is_queried_at_most_every_30_seconds():
    provider, runner, clock, _ = make(
        {"squeue": squeue_lines("42 1 RUNNING None", "42 2 RUNNING None")})
    provider.scale(Demand(waiting=(ONE,) * 2))
    for _ in range(95):  # 95 s of once-a-second calls
        clock.advance(1)
        provider.scale(Demand(connected_workers=2))
    # not at once (job 42 was just submitted): at 30, 60 and 90 s
    assert runner.programs() == ["sbatch", "squeue", "squeue", "squeue"]
    assert runner.calls[1] == ["squeue", "--noheader", "--array",
                               f"--name={provider.run_name}-1", "--format=%F %K %T %r"]


def test_no_status_query_while_nothing_was_submitted():
    provider, runner, clock, _ = make()
    for _ in range(100):
        provider.scale(Demand(connected_workers=1))
        clock.advance(1)
    assert runner.calls == []


def test_a_worker_killed_by_slurm_is_replaced():
    provider, runner, clock, _ = make()
    provider.scale(Demand(waiting=(ONE,) * 2))
    runner.responders["squeue"] = squeue_lines("42 2 RUNNING None")  # task 1 was scancelled
    runner.responders["sbatch"] = CommandResult(0, "43\n")
    clock.advance(30)
    # the manager re-queued the lost worker's task
    provider.scale(Demand(waiting=(ONE,), connected_workers=1))
    assert runner.programs() == ["sbatch", "squeue", "sbatch"]
    assert "#SBATCH --array=1-1\n" in runner.scripts[1]
    assert [(j.job_id, j.alive) for j in provider.jobs] == [("42", 1), ("43", 1)]


def test_a_worker_that_hangs_up_is_replaced_without_waiting_for_a_poll():
    provider, runner, clock, _ = make()
    provider.scale(Demand(waiting=(ONE,) * 2))
    provider.scale(Demand(connected_workers=2))
    runner.responders["sbatch"] = CommandResult(0, "43\n")
    clock.advance(1)
    # one worker's job was killed; the manager re-queued its task
    provider.scale(Demand(waiting=(ONE,), connected_workers=1))
    assert runner.programs() == ["sbatch", "sbatch"]
    assert [(j.job_id, j.alive) for j in provider.jobs] == [("42", 1), ("43", 1)]


def test_the_managers_join_and_leave_counts_catch_workers_between_two_calls():
    provider, runner, clock, messages = make({"squeue": squeue_lines()})
    provider.scale(Demand(waiting=(ONE,)))
    # the worker connected, took the task, and was killed, all since the last call
    provider.scale(Demand(waiting=(ONE,), workers_joined=1, workers_left=1))
    assert runner.programs() == ["sbatch", "sbatch"]
    clock.advance(30)
    provider.scale(Demand(connected_workers=1, workers_joined=2,
                          workers_left=1))
    assert messages == [], "a worker did connect: no 'ended before connecting' warning"


def test_busy_controller_backs_off_and_says_when_it_retries():
    busy = CommandResult(1, "", "sbatch: error: Batch job submission failed: "
                                "Socket timed out on send/recv operation\n")
    provider, runner, clock, messages = make({"sbatch": busy})
    demand = Demand(waiting=(ONE,))
    provider.scale(demand)
    assert messages == ["sbatch failed (exit 1): sbatch: error: Batch job submission failed: "
                        "Socket timed out on send/recv operation; retrying in 5 s (attempt 2)"]
    clock.advance(4.9)
    provider.scale(demand)
    assert runner.programs() == ["sbatch"]
    clock.advance(0.1)
    provider.scale(demand)
    assert runner.programs() == ["sbatch", "sbatch"]
    assert messages[-1].endswith("retrying in 10 s (attempt 3)")
    runner.responders["sbatch"] = CommandResult(0, "77;cluster\n")
    clock.advance(10)
    provider.scale(demand)
    assert provider.submitted == ["77"]


def test_qos_limit_is_retried_not_fatal():
    qos = CommandResult(1, "", "sbatch: error: QOSMaxSubmitJobPerUserLimit\nsbatch: error: "
                               "Batch job submission failed: Job violates accounting/QOS "
                               "policy (job submit limit, user's size and/or time limits)\n")
    provider, _, _, messages = make({"sbatch": qos})
    provider.scale(Demand(waiting=(ONE,)))
    assert messages[0].startswith("sbatch failed (exit 1): sbatch: error: Batch job submission "
                                  "failed: Job violates accounting/QOS policy")


def test_a_request_no_node_can_satisfy_stops_the_run():
    never = CommandResult(1, "", "sbatch: error: Batch job submission failed: Requested node "
                                 "configuration is not available\n")
    provider, _, _, _ = make({"sbatch": never})
    with pytest.raises(InfrastructureError) as raised:
        provider.scale(Demand(waiting=(Resources(cores=999),)))
    with pytest.raises(InfrastructureError) as again:  # and again, without another sbatch
        provider.scale(Demand(waiting=(Resources(cores=999),)))
    assert again.value is raised.value
    assert provider.runner.programs() == ["sbatch"]
    first, second = str(raised.value).splitlines()
    assert first == ("sbatch refused the worker jobs and retrying cannot help: sbatch: error: "
                     "Batch job submission failed: Requested node configuration is not available")
    assert re.fullmatch(r"  command: sbatch --parsable /\S+/workers-1\.sh", second)


def test_a_failing_sbatch_is_retried_with_a_clear_message():
    provider, _, _, messages = make({"sbatch": CommandResult(1, "", "sbatch: error: busy")})
    provider.scale(Demand(waiting=(ONE,)))
    assert messages == ["sbatch failed (exit 1): sbatch: error: busy; "
                        "retrying in 5 s (attempt 2)"]


def test_a_missing_sbatch_ends_the_run_at_once():
    provider, _, _, messages = make({"sbatch": CommandResult(127, "", "sbatch: command not found",
                                                             missing=True)})
    with pytest.raises(InfrastructureError) as raised:
        provider.scale(Demand(waiting=(ONE,)))
    assert str(raised.value) == (
        "sbatch: command not found: the batch system's submit command is not installed here "
        "(or not on PATH), so no worker can ever start; install it, or choose another -T")
    assert messages == []


def test_close_cancels_every_job_once():
    provider, runner, clock, _ = make({"squeue": squeue_lines("42 1 RUNNING None")})
    provider.scale(Demand(waiting=(ONE,)))
    runner.responders["sbatch"] = CommandResult(0, "43\n")
    provider.scale(Demand(waiting=(ONE,) * 2))
    provider.close()
    provider.close()
    assert runner.calls[-1] == ["scancel", "42", "43"]
    assert runner.programs().count("scancel") == 1
    provider.scale(Demand(waiting=(ONE,) * 9))  # late calls after close do nothing
    assert runner.programs().count("sbatch") == 2


def test_close_without_jobs_runs_nothing():
    provider, runner, _, _ = make()
    provider.close()
    assert runner.calls == []


def test_workers_that_never_connect_are_reported_then_fatal():
    provider, runner, clock, messages = make({"squeue": squeue_lines()})
    demand = Demand(waiting=(ONE,))
    provider.scale(demand)
    for _ in range(4):
        clock.advance(400)  # past the poll interval: squeue no longer lists the job
        provider.scale(demand)
        clock.advance(400)  # past the backoff: submitted again
        provider.scale(demand)
    assert runner.programs() == ["sbatch"] + ["squeue", "sbatch"] * 4
    expected = ("1 SLURM worker jobs ended before any worker connected to 10.0.0.5:9123; "
                "check that compute nodes can reach that address (--manager-host) and keep "
                "worker logs with --batch-options")
    assert messages == [expected] * 4
    clock.advance(400)
    with pytest.raises(InfrastructureError) as raised:
        provider.scale(demand)
    assert str(raised.value) == expected


def test_long_pending_workers_are_reported_once():
    provider, runner, clock, messages = make(
        {"squeue": squeue_lines("42 1 PENDING Resources", "42 2 PENDING Resources")})
    provider.scale(Demand(waiting=(ONE,) * 2))
    for _ in range(12):
        clock.advance(30)
        provider.scale(Demand(waiting=(ONE,) * 2))
    assert messages == ["SLURM job 42: 2 workers still waiting after 300 s (Resources)"]


def test_squeue_parse_counts_array_tasks_and_ignores_ending_ones():
    from vinemake.backends.slurm import Slurm

    out = ("42 1 RUNNING None\n42 2 COMPLETING None\n42 3 PENDING Priority\n"
           "43 N/A PENDING QOSMaxJobsPerUserLimit\n")
    status = Slurm().parse_status(out)
    assert {k: (v.pending, v.running, v.reason) for k, v in status.items()} == {
        "42": (1, 1, "Priority"), "43": (1, 0, "QOSMaxJobsPerUserLimit")}


# ---------------------------------------------------------------- background thread


def test_scale_returns_at_once_and_the_thread_submits():
    submitted = threading.Event()

    def sbatch(argv, script):
        submitted.set()
        return CommandResult(0, "42\n")

    runner = FakeRunner({"sbatch": sbatch})
    provider = SlurmWorkers(runner, FakeClock(), log=lambda m: None)
    provider.start(ADDR, OPTS)
    provider.scale(Demand(waiting=(ONE,)))
    assert submitted.wait(10)
    provider.close()
    assert runner.programs() == ["sbatch", "scancel"]


def test_an_error_on_the_thread_is_raised_by_the_next_scale():
    failed = threading.Event()

    def sbatch(argv, script):
        failed.set()
        return CommandResult(1, "", "sbatch: error: Invalid partition name specified\n")

    provider = SlurmWorkers(FakeRunner({"sbatch": sbatch}), FakeClock(), log=lambda m: None)
    provider.start(ADDR, OPTS)
    provider.scale(Demand(waiting=(ONE,)))
    assert failed.wait(10)
    provider.close()  # joins the thread, so the error is recorded
    with pytest.raises(InfrastructureError, match="Invalid partition name specified"):
        provider.scale(Demand(waiting=(ONE,)))


def test_a_worker_that_came_and_went_while_the_thread_was_busy_still_counts():
    release, calls = threading.Event(), []
    first, second = threading.Event(), threading.Event()

    def sbatch(argv, script):
        calls.append(argv)
        if len(calls) == 1:
            first.set()
            assert release.wait(10)
        else:
            second.set()
        return CommandResult(0, f"{41 + len(calls)}\n")

    provider = SlurmWorkers(FakeRunner({"sbatch": sbatch}), FakeClock(), log=lambda m: None)
    provider.start(ADDR, OPTS)
    provider.scale(Demand(waiting=(ONE,)))
    assert first.wait(10)
    provider.scale(Demand(connected_workers=1))  # never seen by the thread
    provider.scale(Demand(waiting=(ONE,), connected_workers=0))  # that worker was killed
    release.set()
    assert second.wait(10), "no replacement was submitted"
    provider.close()
    assert provider.submitted == ["42", "43"]


def test_min_workers_are_submitted_at_start():
    provider, runner, _, _ = make(min_workers=2)
    assert runner.programs() == ["sbatch"]
    assert "#SBATCH --array=1-2\n" in runner.scripts[0]


@pytest.mark.parametrize("system, name, options", [
    (Pbs(), '--name "pbs-${PBS_JOBID}@bo-0123456789"\n', ["-l", "host=a b"]),
    (Sge(), '--name "sge-${JOB_ID}.${SGE_TASK_ID}@bo-0123456789"\n', ["-l", "host=a b"]),
])
def test_pbs_and_sge_tag_the_worker_name_and_pass_the_options(system, name, options):
    launch = WorkerLaunch(1, ONE, "vm-ab12-1", ("w", "h", "1"), batch_options="-l 'host=a b'",
                          worker_tag="@bo-0123456789")
    assert system.submit_script(launch).endswith(name)
    argv = system.submit_argv(launch, "/tmp/s.sh")
    assert argv[-3:] == [*options, "/tmp/s.sh"]


def test_condor_tags_the_worker_name_and_writes_one_option_per_line():
    launch = WorkerLaunch(1, ONE, "vm-ab12-1", ("w", "h", "1"),
                          batch_options=join_options("+A = 1", "+B = 2"),
                          worker_tag="@bo-0123456789")
    text = Condor().submit_script(launch)
    assert 'arguments = "h 1 --name condor-$(Cluster).$(Process)@bo-0123456789"\n' in text
    assert text.endswith("JobBatchName = vm-ab12-1\n+A = 1\n+B = 2\nqueue 1\n")


@pytest.mark.parametrize("batch", ["condor", "slurm", "pbs", "sge"])
def test_a_run_whose_submit_command_is_not_installed_ends_with_the_reason(tmp_path, batch):
    """A real `vinemake -T BATCH` on a PATH without the batch system's programs."""
    import os
    import subprocess
    import sys

    (tmp_path / "empty").mkdir()
    (tmp_path / "Vinefile").write_text("out:\n\techo hi > out\n")
    r = subprocess.run([sys.executable, "-m", "vinemake", "-T", batch], cwd=tmp_path,
                       env={**os.environ, "PATH": str(tmp_path / "empty")},
                       capture_output=True, text=True, timeout=120)
    program = {"condor": "condor_submit", "slurm": "sbatch", "pbs": "qsub", "sge": "qsub"}[batch]
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == (
        f"vinemake: {program}: command not found: the batch system's submit command is not "
        "installed here (or not on PATH), so no worker can ever start; install it, or choose "
        "another -T")
    assert not (tmp_path / "out").exists()
