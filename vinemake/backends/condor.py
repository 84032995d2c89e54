"""`-T condor`: vinemake workers as HTCondor clusters (condor_submit, condor_q, condor_rm)."""

from __future__ import annotations

from collections.abc import Sequence

from vinemake.backends.batch import (
    BatchWorkers,
    JobStatus,
    QueueSystem,
    WorkerJob,
    WorkerLaunch,
    wall_minutes,
)

__all__ = ["Condor", "CondorWorkers", "condor_arguments"]

# JobStatus: 1 idle, 2 running, 3 removed, 4 completed, 5 held, 6 transferring output,
# 7 suspended. A held job runs again only if someone releases it: counted as waiting.
_PENDING, _RUNNING = {"1", "5"}, {"2", "7"}
_PERMANENT = ("parse error", "unknown option", "invalid", "no such file")


def condor_arguments(argv: Sequence[str]) -> str:
    """A submit file's `arguments` in the new syntax: all in "...", `'` groups, quotes doubled."""
    words = []
    for arg in argv:
        arg = arg.replace('"', '""')
        if any(c in arg for c in " \t'"):
            arg = "'" + arg.replace("'", "''") + "'"
        words.append(arg)
    return '"' + " ".join(words) + '"'


class Condor(QueueSystem):
    """A vanilla-universe submit description with `queue N`; BATCH_OPTIONS are submit lines.

    The worker binary is expected on a shared file system (transfer_executable = false) and
    the environment comes along (getenv), as for the other batch systems.
    """

    name = "HTCondor"
    cancel_program = "condor_rm"
    permanent = _PERMANENT

    def submit_script(self, launch: WorkerLaunch) -> str:
        res = launch.resources
        program, *args = launch.worker_argv
        args += ["--name", f"condor-$(Cluster).$(Process){launch.worker_tag}"]
        lines = ["# A vinemake worker pilot: it serves rules until idle for --timeout seconds.",
                 "universe = vanilla",
                 f"executable = {program}",
                 "transfer_executable = false",
                 f"arguments = {condor_arguments(args)}",
                 f"request_cpus = {int(res.cores or 1)}"]
        if res.memory_mb:
            lines.append(f"request_memory = {res.memory_mb}")
        if res.disk_mb:
            lines.append(f"request_disk = {res.disk_mb * 1024}")  # KiB
        if res.gpus:
            lines.append(f"request_gpus = {res.gpus}")
        minutes = wall_minutes(res, launch.timeout_s)
        if minutes:
            lines.append(f"periodic_remove = JobStatus == 2 && "
                         f"time() - EnteredCurrentStatus > {minutes * 60}")
        lines += ["getenv = true", "output = /dev/null", "error = /dev/null",
                  f"JobBatchName = {launch.job_name}"]
        lines += [ln.strip() for ln in launch.batch_options.splitlines() if ln.strip()]
        lines += [f"queue {launch.count}", ""]
        return "\n".join(lines)

    def submit_argv(self, launch: WorkerLaunch, script_path: str) -> list[str]:
        return ["condor_submit", "-terse", script_path]

    def parse_job_id(self, stdout: str) -> str:
        """`-terse` prints `123.0 - 123.3`: the cluster id is what condor_q/condor_rm take."""
        first = stdout.strip().split(".")[0] if stdout.strip() else ""
        return first if first.isdigit() else ""

    def status_argv(self, jobs: Sequence[WorkerJob]) -> list[str]:
        return ["condor_q", *(j.job_id for j in jobs), "-af", "ClusterId", "ProcId", "JobStatus"]

    def parse_status(self, stdout: str) -> dict[str, JobStatus]:
        status: dict[str, JobStatus] = {}
        for line in stdout.splitlines():
            fields = line.split()
            if len(fields) != 3:
                continue
            cluster, state = fields[0], fields[2]
            now = status.get(cluster, JobStatus())
            if state in _PENDING:
                status[cluster] = JobStatus(now.pending + 1, now.running,
                                            "held" if state == "5" else now.reason)
            elif state in _RUNNING:
                status[cluster] = JobStatus(now.pending, now.running + 1, now.reason)
        return status


class CondorWorkers(BatchWorkers):
    """`-T condor`."""

    system_class = Condor
