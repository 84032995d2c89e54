"""Makeflow's command line: its -T names, its `-cMODE` spelling, and the flags vinemake refuses.

Every flag of `makeflow` (cctools makeflow/src/makeflow.c, its long options and its man page)
is either taken by the command line with the same meaning (cli.py declares those, Makeflow's
spelling beside vinemake's own) or listed in REFUSED here with the reason it has no honest
equivalent: a refused flag stops the run with exit 2 and that reason, never silently ignored.
docs/makeflow.md is the table of both, for users.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import click

from vinemake.face.options import CLEAN_MODES

__all__ = ["BATCH_ALIASES", "OTHER_BATCH_TYPES", "REFUSED", "Refusal", "refusing_options",
           "makeflow_args", "argv_file"]

# -T names Makeflow uses for a provider vinemake has under another name.
BATCH_ALIASES = {"wq": "workers", "vine": "workers", "torque": "pbs"}

_NO_BACKEND = "vinemake has no {} backend"
# Makeflow's other -T names, and why each is refused.
OTHER_BATCH_TYPES = {
    "dryrun": "vinemake's dry run is -n, which prints the commands instead of a shell script",
    **{name: _NO_BACKEND.format(name) for name in (
        "moab", "cluster", "blue_waters", "amazon", "amazon-batch", "lambda", "mesos", "k8s",
        "mpi", "flux", "chirp", "hadoop", "remote", "uge")},
}


class Refusal(NamedTuple):
    """Makeflow flags (every spelling) that vinemake refuses, and why."""

    flags: tuple[str, ...]
    why: str
    value: str = "required"  # "required", "optional" or "none" (a flag)


_CATALOG = ("vinemake has no catalog server: workers connect to the manager by host and port "
            "(vinemake-worker HOST PORT)")
_QUEUE = "a Work Queue/TaskVine tuning knob with no counterpart in vinemake's manager"
_PILOTS = ("vinemake submits pilot workers, not one batch job per rule; give submit options "
           "with -B")
_WRAP = ("vinemake does not wrap commands in containers or tools; write the wrapper into the "
         "rule's command")
_MONITOR = ("every task is measured by its worker already (vinemake --explain and the "
            "journal); there is no separate monitor log")
_ARCHIVE = "vinemake's store of outputs by provenance key is --cache-dir DIR"
_CLOUD = "vinemake has no cloud or container-cluster backend"

REFUSED: tuple[Refusal, ...] = (
    Refusal(("-a", "--advertise"), _CATALOG, "none"),
    Refusal(("-N", "-M", "--project-name"), _CATALOG),
    Refusal(("--catalog-server",), _CATALOG),
    Refusal(("-l", "--makeflow-log"),
            "vinemake keeps its journal in .vinemake/ (--clean removes it); it takes no name"),
    Refusal(("-L", "--batch-log"), "vinemake keeps no batch system log"),
    Refusal(("-m", "--email"), "vinemake sends no mail; -f FILE writes the summary"),
    Refusal(("-S", "--submission-timeout"), _PILOTS),
    Refusal(("-F", "--fast-abort", "--wq-fast-abort"), _QUEUE),
    Refusal(("-P", "--priority"), _QUEUE),
    Refusal(("-W", "--schedule", "--wq-schedule"),
            "vinemake places tasks by data locality; choose with --placement locality|random"),
    Refusal(("--wait-queue-size",), _QUEUE),
    Refusal(("--work-queue-preferred-connection", "--preferred-connection"), _QUEUE),
    Refusal(("--cache-mode",), "workers keep what the workflow made for the run; @cache "
            "forever keeps a file across runs"),
    Refusal(("--disable-cache",), _QUEUE, "none"),
    Refusal(("--tlq",), _QUEUE),
    Refusal(("--auth",), "workers prove they know the --password secret; there is no other "
            "authentication method"),
    Refusal(("--tickets",), "vinemake has no Chirp tickets"),
    Refusal(("-O", "--show-output"), "deprecated in Makeflow, and without a meaning here",
            "none"),
    Refusal(("--debug-rotate-max",), "the -o debug file is not rotated"),
    Refusal(("--verbose",), "vinemake shows its progress on stderr already", "none"),
    Refusal(("--log-verbose",), "the journal's format is vinemake's own", "none"),
    Refusal(("--send-environment",), "a rule's command sees only the variables the Vinefile "
            "exports (export NAME), so a build does not depend on the shell it ran from",
            "none"),
    Refusal(("--wait-for-files-upto",), "outputs come back from the worker's sandbox, not "
            "through a shared filesystem: there is nothing to wait for"),
    Refusal(("--safe-submit-mode",), _PILOTS, "none"),
    Refusal(("--ignore-memory-spec",), _PILOTS, "none"),
    Refusal(("--batch-mem-type",), _PILOTS),
    Refusal(("--working-dir",), "workers choose their own working directory "
            "(vinemake-worker --workdir)"),
    Refusal(("--verbose-jobnames",), _PILOTS, "none"),
    Refusal(("--keep-wrapper-stdout",), _PILOTS, "none"),
    Refusal(("--skip-file-check",), "vinemake always checks the sources before it runs "
            "anything", "none"),
    Refusal(("--do-not-save-failed-output",), "a failed rule's outputs always go to "
            ".vinemake/failed/<rule>/, never to the target paths", "none"),
    Refusal(("--monitor",), _MONITOR),
    Refusal(("--monitor-exe",), _MONITOR),
    Refusal(("--monitor-interval",), _MONITOR),
    Refusal(("--monitor-log-name", "--monitor-log-fmt"), _MONITOR),
    Refusal(("--monitor-measure-dir",), _MONITOR, "none"),
    Refusal(("--monitor-with-opened-files",), _MONITOR, "none"),
    Refusal(("--monitor-with-time-series",), _MONITOR, "none"),
    Refusal(("--allocation",), "a rule gets what it declares (@resources, CATEGORY); "
            "vinemake does not guess allocations"),
    Refusal(("--wrapper",), _WRAP),
    Refusal(("--wrapper-input",), _WRAP),
    Refusal(("--wrapper-output",), _WRAP),
    Refusal(("--docker",), _WRAP),
    Refusal(("--docker-tar",), _WRAP),
    Refusal(("--docker-opt",), _WRAP),
    Refusal(("--singularity",), _WRAP),
    Refusal(("--singularity-opt",), _WRAP),
    Refusal(("--umbrella-binary",), _WRAP),
    Refusal(("--umbrella-log-prefix",), _WRAP),
    Refusal(("--umbrella-mode",), _WRAP),
    Refusal(("--umbrella-spec",), _WRAP),
    Refusal(("--vc3-builder",), _WRAP, "none"),
    Refusal(("--vc3-exe",), _WRAP),
    Refusal(("--vc3-log",), _WRAP),
    Refusal(("--vc3-options",), _WRAP),
    Refusal(("--enforcement",), _WRAP, "none"),
    Refusal(("--parrot-path",), _WRAP),
    Refusal(("--env-replace-path",), _WRAP),
    Refusal(("--enable_hook_example",), "Makeflow's example hook has no counterpart", "none"),
    Refusal(("--mounts",), "vinemake has no mountfile: name the inputs in the Vinefile "
            "(absolute paths are read in place)"),
    Refusal(("--cache",), "vinemake has no mountfile cache; its store of outputs is "
            "--cache-dir DIR"),
    Refusal(("--archive",), _ARCHIVE, "none"),
    Refusal(("--archive-read", "--archive-read-only"), _ARCHIVE, "none"),
    Refusal(("--archive-write", "--archive-write-only"), _ARCHIVE, "none"),
    Refusal(("--archive-dir",), _ARCHIVE),
    Refusal(("--archive-s3",), _ARCHIVE, "optional"),
    Refusal(("--archive-s3-no-check",), _ARCHIVE, "optional"),
    Refusal(("--s3-hostname",), _ARCHIVE),
    Refusal(("--s3-keyid",), _ARCHIVE),
    Refusal(("--s3-secretkey",), _ARCHIVE),
    Refusal(("--storage-type",), "vinemake does not allocate storage per rule; declare "
            "@resources disk=SIZE"),
    Refusal(("--storage-limit",), "vinemake does not allocate storage per rule; declare "
            "@resources disk=SIZE"),
    Refusal(("--storage-print",), "vinemake does not allocate storage per rule"),
    Refusal(("--amazon-config",), _CLOUD),
    Refusal(("--lambda-config",), _CLOUD),
    Refusal(("--amazon-batch-config",), _CLOUD),
    Refusal(("--amazon-batch-img",), _CLOUD),
    Refusal(("--mesos-master",), _CLOUD),
    Refusal(("--mesos-path",), _CLOUD),
    Refusal(("--mesos-preload",), _CLOUD),
    Refusal(("--k8s-image",), _CLOUD),
    Refusal(("--mpi-cores",), "vinemake has no MPI backend"),
    Refusal(("--mpi-memory",), "vinemake has no MPI backend"),
    Refusal(("--mpi-task-working-dir",), "vinemake has no MPI backend"),
    Refusal(("--file-status",), "vinemake writes no status file; -f FILE writes a summary "
            "when the run ends"),
    Refusal(("--file-status-interval",), "vinemake writes no status file"),
)


def _refuse(ctx: click.Context, param: click.Parameter, value) -> None:
    if value is None or value is False:
        return  # not given
    why = next(r.why for r in REFUSED if r.flags[0] == param.opts[0])
    raise click.UsageError(f"{'/'.join(param.opts)} (Makeflow) is not supported: {why}", ctx)


def refusing_options() -> list[click.Option]:
    """Hidden options that stop the command with the reason, for every refused flag."""
    options = []
    for r in REFUSED:
        shape = {"none": {"is_flag": True},
                 "optional": {"is_flag": False, "flag_value": ""},
                 "required": {}}[r.value]
        options.append(click.Option(r.flags, hidden=True, expose_value=False,
                                    callback=_refuse, **shape))
    return options


_CLEAN_ATTACHED = {f"-c{mode}": f"--clean={mode}" for mode in CLEAN_MODES}


def makeflow_args(args: list[str]) -> list[str]:
    """The command line with Makeflow's own spellings made plain: `-cMODE` (getopt's attached
    optional value) is `--clean=MODE` (a bare `-c` is a flag of its own, so `-c Makeflow`
    cleans Makeflow), and `--argv FILE` is the options FILE holds, in its place."""
    out: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            return out + args[i:]
        if a == "--argv" or a.startswith("--argv="):
            if a == "--argv":
                if i + 1 == len(args):
                    raise click.UsageError("Option '--argv' requires an argument.")
                i += 1
                a = "--argv=" + args[i]
            out += argv_file(a[len("--argv="):])
        else:
            out.append(_CLEAN_ATTACHED.get(a, a))
        i += 1
    return out


def argv_file(path: str) -> list[str]:
    """Makeflow's `--argv FILE`: a JSON object of long option names and their values (null
    for a flag, a list for an option given several times); its "MAKEFLOW" names the workflow."""
    try:
        with open(path, encoding="utf-8") as f:
            options = json.load(f)
    except OSError as e:
        raise click.UsageError(f"--argv {path}: {e.strerror}") from None
    except ValueError as e:
        raise click.UsageError(f"--argv {path}: not JSON: {e}") from None
    if not isinstance(options, dict):
        raise click.UsageError(f"--argv {path}: must hold a JSON object of options")
    args: list[str] = []
    workflow = options.pop("MAKEFLOW", None)
    for name, value in options.items():
        for one in value if isinstance(value, list) else [value]:
            if one is None:
                args.append(f"--{name}")
            elif isinstance(one, (bool, int, float, str)):
                text = ("true" if one else "false") if isinstance(one, bool) else str(one)
                args.append(f"--{name}={text}")
            else:
                raise click.UsageError(f"--argv {path}: the value of {name!r} must be a "
                                       "string, a number, a boolean, null or a list of them")
    if workflow is not None:
        if not isinstance(workflow, str):
            raise click.UsageError(f"--argv {path}: MAKEFLOW must be a file name")
        args.append(workflow)
    return args
