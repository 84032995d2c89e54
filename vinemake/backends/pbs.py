"""`-T pbs`: vinemake workers as PBS/Torque job arrays (qsub -t, qstat every 30 s at most, qdel)."""

from __future__ import annotations

import getpass
import re
import shlex
from collections.abc import Sequence

from vinemake.backends.batch import (
    BatchWorkers,
    JobStatus,
    QueueSystem,
    WorkerJob,
    WorkerLaunch,
    hms,
    shell_line,
    wall_minutes,
)

__all__ = ["Pbs", "PbsWorkers"]

_JOB_ID = re.compile(r"^\d+(\[\d*\])?(\.[\w.-]+)?$")
_PENDING, _RUNNING = set("QHWT"), set("RS")
_PERMANENT = ("requested node configuration is not available", "unknown queue",
              "more processors requested than permitted", "illegal attribute or resource",
              "unknown resource", "job exceeds queue resource limits", "unknown option",
              "unrecognized option", "invalid partition")


class Pbs(QueueSystem):
    """Torque-style qsub: resources as `-l nodes=1:ppn=N,mem=..,walltime=..`, arrays as `-t`.

    Everything goes on qsub's command line, the user's options last, so they win; the script
    only starts the worker. Status comes from `qstat -u USER`, matched by job name, because
    the array's tasks can be listed under ids of their own.
    """

    name = "PBS"
    cancel_program = "qdel"
    permanent = _PERMANENT

    def submit_script(self, launch: WorkerLaunch) -> str:
        return ("#!/bin/sh\n"
                "# A vinemake worker pilot: it serves rules until idle for --timeout seconds.\n"
                f'exec {shell_line(launch.worker_argv)} '
                f'--name "pbs-${{PBS_JOBID}}{launch.worker_tag}"\n')

    def submit_argv(self, launch: WorkerLaunch, script_path: str) -> list[str]:
        res = launch.resources
        nodes = f"nodes=1:ppn={int(res.cores or 1)}" + (f":gpus={res.gpus}" if res.gpus else "")
        limits = [nodes]
        if res.memory_mb:
            limits.append(f"mem={res.memory_mb}mb")
        minutes = wall_minutes(res, launch.timeout_s)
        if minutes:
            limits.append(f"walltime={hms(minutes)}")
        return ["qsub", "-N", launch.job_name, "-t", f"1-{launch.count}", "-l", ",".join(limits),
                "-o", "/dev/null", "-j", "oe", "-V", *shlex.split(launch.batch_options),
                script_path]

    def parse_job_id(self, stdout: str) -> str:
        lines = stdout.strip().splitlines()
        last = lines[-1].strip() if lines else ""
        return last if _JOB_ID.match(last) else ""

    def status_argv(self, jobs: Sequence[WorkerJob]) -> list[str]:
        return ["qstat", "-u", getpass.getuser()]

    def parse_status(self, stdout: str) -> dict[str, JobStatus]:
        """Rows of `qstat -u`: id user queue name ... state elapsed; counted by job name."""
        status: dict[str, JobStatus] = {}
        for line in stdout.splitlines():
            fields = line.split()
            if len(fields) < 6 or not fields[0][:1].isdigit():
                continue
            name, state = fields[3], fields[-2]
            now = status.get(name, JobStatus())
            if state in _PENDING:
                status[name] = JobStatus(now.pending + 1, now.running)
            elif state in _RUNNING:
                status[name] = JobStatus(now.pending, now.running + 1)
        return status

    def status_key(self, job: WorkerJob) -> str:
        return job.name


class PbsWorkers(BatchWorkers):
    """`-T pbs`."""

    system_class = Pbs
