"""`-T sge`: vinemake workers as Grid Engine array jobs (qsub -t, qstat at most every 30 s)."""

from __future__ import annotations

import getpass
import math
import re
import shlex
from collections.abc import Sequence

from vinemake.backends import ManagerAddress, ProviderOptions
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

__all__ = ["Sge", "SgeWorkers"]

_TASKS = re.compile(r"^(\d+)(?:-(\d+):(\d+))?$")
_PERMANENT = ("unknown resource", "parallel environment", "does not exist", "invalid option",
              "unknown option", "job rejected")


class Sge(QueueSystem):
    """Grid Engine's qsub: `-pe <pe> N` for more than one core, `h_vmem` per slot, `-t 1-N`.

    The parallel environment's name is site-specific (`smp` by default; set it with
    `--batch-options` or the provider's `sge_pe` option).
    """

    name = "SGE"
    cancel_program = "qdel"
    permanent = _PERMANENT

    def __init__(self, pe: str = "smp"):
        self.pe = pe

    def submit_script(self, launch: WorkerLaunch) -> str:
        return ("#!/bin/sh\n"
                "# A vinemake worker pilot: it serves rules until idle for --timeout seconds.\n"
                f"exec {shell_line(launch.worker_argv)} "
                f'--name "sge-${{JOB_ID}}.${{SGE_TASK_ID}}{launch.worker_tag}"\n')

    def submit_argv(self, launch: WorkerLaunch, script_path: str) -> list[str]:
        res = launch.resources
        cores = int(res.cores or 1)
        argv = ["qsub", "-terse", "-N", launch.job_name, "-t", f"1-{launch.count}",
                "-S", "/bin/sh", "-cwd", "-V", "-o", "/dev/null", "-j", "y"]
        if cores > 1:
            argv += ["-pe", self.pe, str(cores)]
        limits = []
        if res.memory_mb:  # h_vmem counts per slot
            limits.append(f"h_vmem={math.ceil(res.memory_mb / cores)}M")
        minutes = wall_minutes(res, launch.timeout_s)
        if minutes:
            limits.append(f"h_rt={hms(minutes)}")
        if res.gpus:
            limits.append(f"gpu={res.gpus}")
        if limits:
            argv += ["-l", ",".join(limits)]
        return [*argv, *shlex.split(launch.batch_options), script_path]

    def parse_job_id(self, stdout: str) -> str:
        """`-terse` prints `123` or, for an array, `123.1-4:1`."""
        first = stdout.strip().split(".")[0] if stdout.strip() else ""
        return first if first.isdigit() else ""

    def status_argv(self, jobs: Sequence[WorkerJob]) -> list[str]:
        return ["qstat", "-u", getpass.getuser()]

    def parse_status(self, stdout: str) -> dict[str, JobStatus]:
        """Rows: id prior name user state date time [queue] slots [tasks]; keyed by job id."""
        status: dict[str, JobStatus] = {}
        for line in stdout.splitlines():
            fields = line.split()
            if len(fields) < 8 or not fields[0].isdigit():
                continue
            job, state, rest = fields[0], fields[4], fields[7:]
            if rest and "@" in rest[0]:
                rest = rest[1:]  # the queue instance of a running task
            tasks = _count_tasks(rest[1]) if len(rest) > 1 else 1
            now = status.get(job, JobStatus())
            if "E" in state or "d" in state:
                continue  # in error or being deleted: it will not serve work
            if "r" in state or "t" in state or "s" in state.lower():
                status[job] = JobStatus(now.pending, now.running + tasks)
            else:
                status[job] = JobStatus(now.pending + tasks, now.running)
        return status


def _count_tasks(spec: str) -> int:
    """`3` → 1, `1-5:1` → 5, `2-10:2` → 5, `1,4` → 2."""
    total = 0
    for part in spec.split(","):
        m = _TASKS.match(part)
        if not m:
            return 1
        first, last, step = int(m[1]), int(m[2] or m[1]), int(m[3] or 1)
        total += (last - first) // step + 1
    return total


class SgeWorkers(BatchWorkers):
    """`-T sge`."""

    system_class = Sge

    def start(self, manager: ManagerAddress, options: ProviderOptions) -> None:
        self.system = Sge(pe=dict(options.extra).get("sge_pe", "smp"))
        super().start(manager, options)
