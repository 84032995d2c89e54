"""`-T slurm`: vinemake workers as SLURM job arrays (sbatch, squeue every 30 s at most, scancel)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from vinemake.backends.batch import (
    BatchWorkers,
    JobStatus,
    QueueSystem,
    WorkerJob,
    WorkerLaunch,
    shell_line,
    wall_minutes,
)

__all__ = ["Slurm", "SlurmWorkers"]

# squeue states in which a worker has not started yet / is running; anything else is ending.
_PENDING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING",
            "RESV_DEL_HOLD", "SIGNALING", "STAGE_OUT"}
_RUNNING = {"RUNNING", "SUSPENDED"}
# sbatch refusals that no amount of waiting fixes. Busy controllers and QOS/association
# submit limits are deliberately absent: those clear up, so they are retried.
_PERMANENT = ("requested node configuration is not available", "invalid partition",
              "invalid account", "invalid qos", "unrecognized option", "invalid option",
              "invalid generic resource", "invalid feature specification",
              "more processors requested than permitted", "memory required by task is not",
              "requested time limit is invalid", "invalid job array specification")


class Slurm(QueueSystem):
    """The SLURM dialect: an sbatch script with #SBATCH lines; user options on the command line.

    The user's BATCH_OPTIONS/--batch-options go on sbatch's command line, where they override
    the script's own lines (so `-o logs/%A_%a.out` keeps worker logs that default to /dev/null).
    """

    name = "SLURM"
    cancel_program = "scancel"
    permanent = _PERMANENT

    def submit_script(self, launch: WorkerLaunch) -> str:
        res = launch.resources
        lines = ["#!/bin/sh", f"#SBATCH --job-name={launch.job_name}",
                 f"#SBATCH --array=1-{launch.count}", "#SBATCH --nodes=1", "#SBATCH --ntasks=1",
                 f"#SBATCH --cpus-per-task={int(res.cores or 1)}"]
        if res.memory_mb:
            lines.append(f"#SBATCH --mem={res.memory_mb}M")
        minutes = wall_minutes(res, launch.timeout_s)
        if minutes:
            lines.append(f"#SBATCH --time={minutes}")
        if res.gpus:
            lines.append(f"#SBATCH --gres=gpu:{res.gpus}")
        lines += ["#SBATCH --output=/dev/null",
                  "# A vinemake worker pilot: it serves rules until idle for --timeout seconds.",
                  f"exec {shell_line(launch.worker_argv)} "
                  '--name "slurm-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}'
                  f'{launch.worker_tag}"', ""]
        return "\n".join(lines)

    def submit_argv(self, launch: WorkerLaunch, script_path: str) -> list[str]:
        return ["sbatch", "--parsable", *shlex.split(launch.batch_options), script_path]

    def parse_job_id(self, stdout: str) -> str:
        """`--parsable` prints `JOBID` or `JOBID;CLUSTER`."""
        first = stdout.strip().split(";")[0] if stdout.strip() else ""
        return first if first.isdigit() else ""

    def status_argv(self, jobs: Sequence[WorkerJob]) -> list[str]:
        # By name, not by id: squeue fails outright on an id it has already forgotten.
        names = ",".join(j.name for j in jobs)
        return ["squeue", "--noheader", "--array", f"--name={names}", "--format=%F %K %T %r"]

    def parse_status(self, stdout: str) -> dict[str, JobStatus]:
        status: dict[str, JobStatus] = {}
        for line in stdout.splitlines():
            fields = line.split(None, 3)
            if len(fields) < 3:
                continue
            job, state, reason = fields[0], fields[2], (fields[3] if len(fields) > 3 else "")
            now = status.get(job, JobStatus())
            if state in _PENDING:
                status[job] = JobStatus(now.pending + 1, now.running, reason)
            elif state in _RUNNING:
                status[job] = JobStatus(now.pending, now.running + 1, now.reason)
        return status


class SlurmWorkers(BatchWorkers):
    """`-T slurm`."""

    system_class = Slurm
