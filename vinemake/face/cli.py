"""The `vinemake` command line: options → RunOptions, then check, dry-run, graph, clean or run.

Errors are printed in one place, `_Command.invoke`: a located Vinefile error is printed as it
is (`path:line:col: message`, the line, a caret) so editors can jump to it; any other error a
user can cause gets a `vinemake: ` prefix. The exit status is the error's `exit_code`
(2 for bad input, 1 for a failed command or infrastructure), 130 after Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext

import click

from vinemake import __version__
from vinemake.backends import ProviderOptions
from vinemake.backends.local import standby_worker
from vinemake.common.collector import collector_paused
from vinemake.common.errors import (
    EXIT_FAILED,
    InputError,
    VinefileError,
    VinemakeError,
    describe_os_error,
)
from vinemake.common.spec import Resources, Workflow
from vinemake.core.collection import GC_MODES, Collection
from vinemake.core.graph import EXPORT_FORMATS, BuildGraph
from vinemake.core.lock import workflow_lock
from vinemake.core.statedir import StateDir
from vinemake.face import debuglog
from vinemake.face.cachecmd import cache
from vinemake.face.leaving import leave
from vinemake.face.listing import summary
from vinemake.face.makeflow import (
    BATCH_ALIASES,
    OTHER_BATCH_TYPES,
    makeflow_args,
    refusing_options,
)
from vinemake.face.options import BATCH_TYPES, CLEAN_MODES, RunOptions
from vinemake.face.params import duration_s, size_mb
from vinemake.face.uptodate import nothing_built, nothing_to_do
from vinemake.language.annotations import MAX_RETRIES
from vinemake.language.environment import with_environment
from vinemake.language.jxinput import jx_input
from vinemake.language.nesting import check_subworkflows
from vinemake.manager.config import PLACEMENTS, ManagerConfig
from vinemake.worker.standby import forked

__all__ = ["main", "command", "DEFAULT_FILES"]

DEFAULT_FILES = ("Vinefile", "Makeflow")
EXIT_INTERRUPTED = 130
# Makeflow's -t: how long past a missed heartbeat a peer is lost (the manager's default silence).
KEEPALIVE_TIMEOUT_S = ManagerConfig.silence_s - ManagerConfig.heartbeat_s


class _Command(click.Command):
    """A click command that turns VinemakeError, Ctrl-C and an OSError (vinemake's own
    writes failing: a full disk) into a message and an exit code, never a traceback."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, makeflow_args(args))

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except VinemakeError as e:
            prefix = "" if isinstance(e, VinefileError) else "vinemake: "
            click.echo(f"{prefix}{e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("vinemake: interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except OSError as e:  # vinemake's own state or files: a full disk, say (issue 15)
            click.echo(f"vinemake: {describe_os_error(e)}", err=True)
            ctx.exit(EXIT_FAILED)


class _CleanMode(click.Choice):
    """--clean's optional value; explains the `--clean FILE` slip instead of a bare refusal."""

    def convert(self, value, param, ctx):
        if value not in self.choices:
            self.fail(f"{value!r} is not one of {', '.join(self.choices)} (to clean a named "
                      f"Vinefile, write: vinemake --clean=all {value})", param, ctx)
        return value


class _BatchType(click.Choice):
    """-T: vinemake's provider names, Makeflow's names for them, and why Makeflow's others
    are refused."""

    def convert(self, value, param, ctx):
        if value in OTHER_BATCH_TYPES:
            self.fail(f"{value!r}: {OTHER_BATCH_TYPES[value]} (choose from "
                      f"{', '.join(BATCH_TYPES)}; wq and vine mean workers, torque means pbs)",
                      param, ctx)
        value = super().convert(value, param, ctx)
        return BATCH_ALIASES.get(value, value)


class _Subsystem(click.Choice):
    """-d: Makeflow's debug subsystems that name a part of vinemake."""

    def convert(self, value, param, ctx):
        if value not in self.choices:
            self.fail(f"{value!r}: vinemake has no debug output for it (choose from "
                      f"{', '.join(self.choices)})", param, ctx)
        return value


HELP = """Run the workflow in VINEFILE (default ./Vinefile, else ./Makeflow).

TARGETS limit the run to the files named and what they need. With no option, the
workflow runs on this machine; -T chooses how workers start, the manager always
schedules. --check, -n and --graph read the workflow and write nothing.
"""

EPILOG = """\b
Examples:
  vinemake                        run ./Vinefile on this machine
  vinemake -n Vinefile out.txt    what would run to make out.txt
  vinemake -T slurm --max-workers 50 Vinefile
  vinemake -T workers -p 9123     wait for: vinemake-worker HOST 9123
  vinemake --clean                remove what the workflow made

\b
Subcommands (each has its own --help):
  vinemake report [-o FILE]       an HTML page of the last run: timeline, resources, transfers
  vinemake status [DIR]           what the run going on in DIR is doing
  vinemake log RULE|FILE          a rule's last run: command, worker, times, resources, stderr
  vinemake history                the runs recorded here: start, duration, outcome, counts
"""


@click.command(cls=_Command, help=HELP, epilog=EPILOG,
               context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("vinefile", required=False)
@click.argument("targets", nargs=-1)
# What to do instead of running.
@click.option("--check", is_flag=True, help="Check the workflow's syntax and graph, print its "
              "size, and exit.")
@click.option("-n", "--dry-run", is_flag=True, help="Print the commands that would run, in "
              "order, with their files and resources; run nothing.")
@click.option("--graph", "graph_format", type=click.Choice(EXPORT_FORMATS), metavar="FORMAT",
              help="Print the workflow's graph as dot, mermaid or json, and exit.")
@click.option("--clean", type=_CleanMode(CLEAN_MODES), is_flag=False, flag_value="all",
              default=None, metavar="[all|outputs|intermediates|cache]",
              help="Remove what the workflow made (never a source). Default: all.")
@click.option("-c", "clean_all", is_flag=True, help="Makeflow's --clean: all (-cMODE: MODE).")
@click.option("-C", "directory", metavar="DIR", help="Change to DIR before doing anything.")
@click.option("-X", "--change-directory", "--chdir", "change_dir", metavar="DIR",
              help="Read the Vinefile here, then run it in DIR (Makeflow's -X).")
# JX workflows (docs/jx.md); a file named *.jx or *.json is one without a flag.
@click.option("--jx", is_flag=True, help="Read the workflow as JX (JSON with expressions).")
@click.option("--json", "plain_json", is_flag=True, help="Read the workflow as plain JSON.")
@click.option("--jx-args", multiple=True, metavar="FILE", help="Names for a JX workflow: the "
              "object in FILE (repeatable).")
@click.option("--jx-define", multiple=True, metavar="NAME=EXPR", help="Set NAME for a JX "
              "workflow, over its define (repeatable).")
@click.version_option(__version__, "-v", "--version", prog_name="vinemake",
                      message="%(prog)s %(version)s")
# Running.
@click.option("-T", "--batch-type", type=_BatchType(BATCH_TYPES + tuple(BATCH_ALIASES)),
              default="local", show_default=True, envvar="MAKEFLOW_BATCH_QUEUE_TYPE",
              help="How workers start: this machine, by "
              "hand (wq, vine: Makeflow's names), or as pilot jobs of a batch system.")
@click.option("-j", "--max-local", type=click.IntRange(min=1), metavar="N",
              help="Run at most N rules at once on this machine (and on workers, unless -J).")
@click.option("-J", "--max-remote", type=click.IntRange(min=1), metavar="N",
              help="Run at most N tasks at once on workers (with -T local: as -j).")
@click.option("-k", "--keep-going", is_flag=True, help="After a rule fails, keep running "
              "the rules that do not need its outputs.")
@click.option("-r", "--retries", "--retry-count", type=click.IntRange(0, MAX_RETRIES),
              metavar="N",
              help="Retry a failed rule up to N times (a rule's @retries wins).")
@click.option("-R", "--retry", is_flag=True, help="Retry a failed rule up to 100 times.")
@click.option("-z", "--zero-length-error", is_flag=True, help="An empty output file fails its "
              "rule.")
@click.option("--explain", is_flag=True, help="Say why each rule runs or is skipped.")
@click.option("--cache-dir", metavar="DIR", help="Shared cache store to restore outputs from "
              "and save them to.")
@click.option("--environment", metavar="FILE", help="Run every rule (but LOCAL ones) in this "
              "packed environment (conda-pack, venv-pack, poncho) unless it names its own.")
@click.option("--offline", is_flag=True, help="Key URL sources as the last run recorded "
              "them, without asking their servers.")
@click.option("-g", "--gc", type=click.Choice(GC_MODES), default="none", show_default=True,
              help="Delete intermediate files no rule needs any more: as soon as they can go "
              "(ref_cnt, all), or while more than -G files exist (on_demand).")
@click.option("-G", "--gc-count", type=click.IntRange(min=0), metavar="N",
              help="ref_cnt: delete at most N files at a time; on_demand: start when more "
              "than N made files exist (default 16).")
@click.option("--gc-size", callback=size_mb, metavar="SIZE", help="on_demand: also start when "
              "the disk has SIZE or less free (default 10MB).")
@click.option("--shared-fs", multiple=True, metavar="DIR", help="Absolute paths under DIR "
              "are seen by every worker: read in place, never transferred.")
@click.option("-f", "--summary-log", "summary_file", metavar="FILE",
              help="Write a summary of the run to FILE when it ends.")
@click.option("-d", "--debug", "debug", multiple=True,
              type=_Subsystem(tuple(debuglog.SUBSYSTEMS)), metavar="SUBSYSTEM",
              help="Log what a part of vinemake does: all, makeflow, wq, vine, batch.")
@click.option("-o", "--debug-file", metavar="FILE",
              help="Write -d's messages and warnings to FILE (:stderr, :stdout).")
@click.option("--keep-intermediates-remote", is_flag=True, help="Leave intermediates on the "
              "workers instead of copying them back.")
# The manager.
@click.option("-p", "--port", type=click.IntRange(0, 65535), default=0, metavar="N",
              help="Port workers connect to (default: any free port).")
@click.option("-Z", "--port-file", metavar="FILE", help="Write the port chosen to FILE.")
@click.option("--password", "password_file", metavar="FILE", help="Workers must prove they "
              "know the secret in FILE.")
@click.option("--ssl", is_flag=True, help="Encrypt connections with TLS.")
@click.option("--ssl-cert", metavar="FILE", help="TLS certificate (with --ssl-key: --ssl).")
@click.option("--ssl-key", metavar="FILE", help="TLS private key (with --ssl-cert: --ssl).")
@click.option("--manager-host", metavar="HOST", help="Name workers use to reach this "
              "machine (default: its host name).")
@click.option("--placement", type=click.Choice(PLACEMENTS), default="locality",
              show_default=True, help="Prefer the worker that already holds the most input "
              "bytes, or any worker.")
@click.option("--transfer-limit", type=click.IntRange(min=1), default=3, show_default=True,
              metavar="N", help="Transfers one source serves at once.")
@click.option("--no-peer-transfers", is_flag=True, help="Send every input from the manager, "
              "never worker to worker.")
@click.option("-u", "--keepalive-interval", "--wq-keepalive-interval", "keepalive_interval",
              type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help=f"Heartbeats between the manager and each worker every SECONDS "
              f"(default {ManagerConfig.heartbeat_s:g}).")
@click.option("-t", "--keepalive-timeout", "--wq-keepalive-timeout", "keepalive_timeout",
              type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="A worker (or manager) not heard from for SECONDS after a heartbeat was "
              f"due is lost (default {KEEPALIVE_TIMEOUT_S:g}).")
@click.option("--disable-heartbeat", is_flag=True, help="No heartbeats: a worker is lost only "
              "when its connection closes.")
# Workers.
@click.option("--max-workers", type=click.IntRange(min=1), metavar="N",
              help="Most workers to submit at once.")
@click.option("--min-workers", type=click.IntRange(min=0), default=0, metavar="N",
              help="Workers to keep even when idle.")
@click.option("--worker-timeout", callback=duration_s, metavar="TIME",
              help="Let an idle worker go after TIME (90, 30s, 5m).")
@click.option("-B", "--batch-options", default="", metavar="TEXT", envvar="BATCH_OPTIONS",
              help="Extra options for the batch system's submit command.")
@click.option("--cores", "--local-cores", type=click.FloatRange(min=0, min_open=True),
              metavar="N", help="Cores the local worker offers (default: all).")
@click.option("--memory", "--local-memory", callback=size_mb, metavar="SIZE",
              help="Memory the local worker offers (MB, or 4GB, ...).")
@click.option("--disk", "--local-disk", callback=size_mb, metavar="SIZE",
              help="Disk the local worker offers (MB, or 20GB, ...).")
@click.option("--gpus", type=click.IntRange(min=0), metavar="N",
              help="GPUs the local worker offers.")
@click.option("--argv", metavar="FILE", expose_value=False, help="Take options from the JSON "
              "object in FILE (Makeflow's --argv: long names, null for a flag).")
# Makeflow's own: accepted, because what they ask for is what vinemake always does.
@click.option("--sandbox", is_flag=True, hidden=True, expose_value=False)
@click.option("-A", "--disable-afs-check", is_flag=True, hidden=True, expose_value=False)
# Watching.
@click.option("--report", "report_file", metavar="FILE", help="Write the run's HTML report "
              "to FILE when it ends (as `vinemake report -o FILE`).")
@click.option("--trace", "trace_file", metavar="FILE", help="Write one tab-separated row "
              "per rule to FILE when the run ends: status, worker, times, resources, inputs.")
@click.option("--status-port", type=click.IntRange(0, 65535), metavar="N", help="Serve a "
              "live status page of the run on port N (0: any free port).")
@click.option("--status-host", default="127.0.0.1", show_default=True, metavar="HOST",
              help="Address the status page listens on.")
def command(vinefile, targets, check, dry_run, graph_format, clean, clean_all, directory,
            change_dir, debug, debug_file, **run) -> None:
    clean = clean or ("all" if clean_all else None)
    modes = [name for name, on in (("--check", check), ("--dry-run", dry_run),
                                   ("--graph", graph_format), ("--clean", clean)) if on]
    if len(modes) > 1:
        raise click.UsageError(f"{' and '.join(modes)} cannot be combined")
    if directory is not None:
        _chdir(directory, "-C")
    path = find_vinefile(vinefile)
    if change_dir is not None:
        # Makeflow's -X: the workflow is read from where it was named, and run over there.
        path = os.path.abspath(path)
        _chdir(change_dir, "-X")
    debuglog.configure(debug, debug_file)
    jx = jx_input(path, run.pop("jx"), run.pop("plain_json"), run.pop("jx_args"),
                  run.pop("jx_define"))
    options = dataclasses.replace(make_options(path, targets, clean, run), jx=jx)
    ctx = click.get_current_context()
    runs = not (check or dry_run or graph_format or clean)
    # A rerun with nothing changed is decided from a stat snapshot, before parsing.
    if runs and nothing_to_do(options):
        ctx.exit(0)
    # On a first build the local worker loads while the workflow is read and planned, in a
    # fork of this process (no interpreter to start, the modules both use loaded already).
    # Not ahead on a rebuild: its plan may run nothing, and a standby started for nothing
    # cost a full-path no-op rerun more than the overlap saves; its worker is forked when
    # the plan starts one.
    first = runs and nothing_built(options)
    local = runs and options.batch_type == "local"
    with standby_worker(forked, ahead=first) if local else nullcontext():
        with collector_paused():
            # A first build writes the parsed-rules cache after its run, not before its
            # first command (a rerun reads it; the run itself does not).
            workflow, save = _parse(path, options, write=runs, later=first)
            if options.environment:
                workflow = with_environment(workflow, options.environment, os.path.exists(
                    os.path.join(options.root, options.environment)))
            graph = BuildGraph.build(workflow, options.root)
            check_subworkflows(workflow, options.vinefile, options.root, os.environ)
            if targets:
                graph = graph.select(targets)
        if check:
            click.echo(summary(vinefile or path, graph))
        elif dry_run:
            ctx.exit(_entry("dry_run")(workflow, graph, options))
        elif graph_format:
            click.echo(graph.export(graph_format), nl=False)
        else:
            entry = _entry("clean" if clean else "run")
            with workflow_lock(StateDir(options.root).path):
                code = entry(workflow, graph, options)
                if save is not None:
                    save()
            ctx.exit(code)


REPORT_HELP = """Write one self-contained HTML page of a run (the newest, unless --run names
another): summary, timeline of every task on every worker slot, declared against measured
resources, workers, transfers, provenance and failed rules. It is made from the events the run
recorded, so it works for a run that was killed too, and opens with no network.
"""


@click.command(cls=_Command, help=REPORT_HELP,
               context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-o", "--output", default="report.html", show_default=True, metavar="FILE",
              help="Where to write the page.")
@click.option("--run", "run_id", metavar="RUN", help="The run-id of an earlier run.")
@click.option("-C", "directory", metavar="DIR", help="The workflow directory (default: here).")
def report_command(output, run_id, directory) -> None:
    from vinemake.face.report import write_report

    output = os.path.abspath(output)  # -o is relative to where the command was typed
    if directory is not None:
        _chdir(directory, "-C")
    view = write_report(os.getcwd(), output, run_id)
    click.echo(f"vinemake: report of run {view['run']['id']} written to {output}", err=True)


STATUS_HELP = """Print what the run going on in DIR (default: here) is doing: rules done,
running and waiting, workers with their resources and cache, transfers. It asks the run's
status page (--status-port); without one, it shows the newest run's recorded events.
"""


@click.command(cls=_Command, help=STATUS_HELP,
               context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("directory", required=False, default=".", metavar="[DIR]")
@click.option("--password", "password_file", metavar="FILE", help="The run's --password file.")
def status_command(directory, password_file) -> None:
    from vinemake.face.status import show_status

    # Cut to a terminal's width; a pipe or a file gets whole lines.
    width = os.get_terminal_size(sys.stdout.fileno()).columns if sys.stdout.isatty() \
        else sys.maxsize
    click.echo(show_status(directory, password_file, width), nl=False)


LOG_HELP = """Show the last run of RULE (a target it makes, or `Vinefile:LINE` for a rule without
targets): its command, why it ran, the worker, when it started and ended, how it ended, what it
measured against what it declared, where its inputs came from, and its stderr. Read from the
runs recorded in .vinemake/runs (the last 20).
"""


@click.command(cls=_Command, help=LOG_HELP,
               context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("rule", metavar="RULE|FILE")
@click.option("-C", "directory", metavar="DIR", help="The workflow directory (default: here).")
def log_command(rule, directory) -> None:
    from vinemake.face.rulelog import show_log

    if directory is not None:
        _chdir(directory, "-C")
    click.echo(show_log(os.getcwd(), rule), nl=False)


HISTORY_HELP = """List the runs recorded for the workflow (the last 20): when each started, how
long it took, its outcome, how many rules ran, were restored, were up to date and failed, and
the command line.
"""


@click.command(cls=_Command, help=HISTORY_HELP,
               context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-C", "directory", metavar="DIR", help="The workflow directory (default: here).")
def history_command(directory) -> None:
    from vinemake.face.history import show_history

    if directory is not None:
        _chdir(directory, "-C")
    click.echo(show_history(os.getcwd()), nl=False)


# `vinemake NAME ...` runs a subcommand; anything else is `vinemake [VINEFILE] [TARGETS]` (a
# Vinefile named like a subcommand is still run as ./NAME).
SUBCOMMANDS = {"report": report_command, "status": status_command, "cache": cache,
               "log": log_command, "history": history_command}


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: the process ends here, through leave(); a caller that
    goes on afterwards (a profiler, a test in its own process) calls command.main."""
    args = sys.argv[1:] if argv is None else argv
    sub = SUBCOMMANDS.get(args[0]) if args else None
    try:
        if sub is not None:
            sub.main(args[1:], prog_name=f"vinemake {args[0]}")
        else:
            command.main(args, prog_name="vinemake")
    except SystemExit as e:  # click ends every command so, its exit code inside
        if e.code is not None and not isinstance(e.code, int):
            raise
        leave(e.code or 0)


# --- the steps ------------------------------------------------------------------------------


def _chdir(directory: str, flag: str) -> None:
    try:
        os.chdir(directory)
    except OSError as e:
        hint = ""
        if flag == "-C" and ":" in directory:
            hint = (" (Makeflow's -C names a catalog server, which vinemake has no use for; "
                    "here -C changes directory, as make's)")
        raise InputError(f"{flag} {directory}: {e.strerror}{hint}") from None


def find_vinefile(given: str | None, isfile=os.path.isfile) -> str:
    """The Vinefile to read: the one named, else ./Vinefile, else ./Makeflow."""
    if given is not None:
        if not isfile(given):
            hint = ""
            default = next((name for name in DEFAULT_FILES if isfile(name)), None)
            if default is not None:
                hint = f" (to build targets of ./{default}, name it first: vinemake {default} " \
                       f"{given})"
            raise InputError(f"{given}: no such Vinefile{hint}")
        return given
    for name in DEFAULT_FILES:
        if isfile(name):
            return name
    raise InputError(f"no Vinefile or Makeflow in {os.getcwd()} (name one: vinemake FILE)")


def make_options(path: str, targets: Iterable[str], clean: str | None, run: dict,
                 environ: Mapping[str, str] = os.environ) -> RunOptions:
    """RunOptions from the parsed command line: each option is read here once, into the
    record of the component that uses it."""
    local = run["batch_type"] == "local"
    max_local, max_tasks = _task_caps(
        local, _capped(run["max_local"], environ, "MAKEFLOW_MAX_LOCAL_JOBS"),
        _capped(run["max_remote"], environ, "MAKEFLOW_MAX_REMOTE_JOBS"))
    manager = ManagerConfig(
        host=run["manager_host"] or ("127.0.0.1" if local else "0.0.0.0"),
        port=run["port"], port_file=run["port_file"], password_file=run["password_file"],
        # Makeflow encrypts whenever it is given a key and a certificate.
        ssl=run["ssl"] or bool(run["ssl_cert"] and run["ssl_key"]),
        ssl_cert=run["ssl_cert"], ssl_key=run["ssl_key"],
        placement=run["placement"], transfer_limit=run["transfer_limit"],
        peer_transfers=not run["no_peer_transfers"], max_tasks=max_tasks,
        **_heartbeats(run))
    workers = ProviderOptions(
        min_workers=run["min_workers"], max_workers=run["max_workers"] or 0,
        worker_timeout_s=run["worker_timeout"] or ProviderOptions.worker_timeout_s,
        batch_options=run["batch_options"],
        worker_resources=Resources(cores=run["cores"], memory_mb=run["memory"],
                                   disk_mb=run["disk"], gpus=run["gpus"]))
    retries = run["retries"] if run["retries"] is not None else (100 if run["retry"] else None)
    gc_size = None if run["gc_size"] is None else int(run["gc_size"] * 1_000_000)
    return RunOptions(
        vinefile=os.path.abspath(path), root=os.getcwd(), targets=tuple(targets), clean=clean,
        batch_type=run["batch_type"], max_local=max_local, keep_going=run["keep_going"],
        window=_capped(None, environ, "VINEMAKE_SUBMIT_WINDOW"),
        retries=retries, explain=run["explain"], cache_dir=run["cache_dir"], offline=run["offline"],
        environment=run["environment"],
        gc=Collection(run["gc"], run["gc_count"], gc_size),
        keep_intermediates_remote=run["keep_intermediates_remote"],
        shared_fs=_shared_dirs(run["shared_fs"]), summary_file=run["summary_file"],
        zero_length_error=run["zero_length_error"],
        manager=manager, workers=workers,
        report=os.path.abspath(run["report_file"]) if run["report_file"] else None,
        trace=os.path.abspath(run["trace_file"]) if run["trace_file"] else None,
        status_port=run["status_port"], status_host=run["status_host"])


def _capped(given: int | None, environ: Mapping[str, str], name: str) -> int | None:
    """-j/-J with Makeflow's MAKEFLOW_MAX_LOCAL_JOBS/MAKEFLOW_MAX_REMOTE_JOBS: the smaller of
    the two when both are set, as its man page says."""
    text = environ.get(name)
    if not text:
        return given
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"{name}={text}: not a whole number") from None
    if value < 1:
        raise InputError(f"{name}={text}: must be 1 or more")
    return value if given is None else min(given, value)


def _heartbeats(run: dict) -> dict:
    """ManagerConfig's heartbeat_s and silence_s from Makeflow's -u, -t, --disable-heartbeat:
    a peer is lost once silent for the interval plus the timeout (Work Queue's keepalive
    timeout counts from the check that went unanswered)."""
    interval, timeout = run["keepalive_interval"], run["keepalive_timeout"]
    if run["disable_heartbeat"]:
        if interval is not None or timeout is not None:
            given = "-u/--keepalive-interval" if interval is not None else \
                "-t/--keepalive-timeout"
            raise click.UsageError(f"--disable-heartbeat and {given} cannot be combined")
        return {"heartbeat_s": 0.0, "silence_s": 0.0}
    interval = ManagerConfig.heartbeat_s if interval is None else interval
    timeout = KEEPALIVE_TIMEOUT_S if timeout is None else timeout
    return {"heartbeat_s": interval, "silence_s": interval + timeout}


def _task_caps(local: bool, j: int | None, remote: int | None) -> tuple[int | None, int | None]:
    """(-j for this machine, the cap on tasks on workers). With -T local the two are one
    machine, so either flag means both and the smaller wins, as in Makeflow; otherwise -J caps
    the workers and -j, when -J is not given, caps them too."""
    if local:
        given = [n for n in (j, remote) if n is not None]
        both = min(given) if given else None
        return both, both
    return j, remote if remote is not None else j


def _shared_dirs(dirs: Iterable[str]) -> tuple[str, ...]:
    for d in dirs:
        if not os.path.isabs(d):
            raise InputError(f"--shared-fs {d}: must be an absolute path")
    return tuple(os.path.normpath(d) for d in dirs)


def _parse(path: str, options: RunOptions, write: bool,
           later: bool = False) -> tuple[Workflow, Callable[[], None] | None]:
    """The workflow, from the parsed-rules cache when it still holds (--check, -n, --graph
    and --clean read it but write nothing), and what writes the cache when `later` left
    that to the caller (else None)."""
    # Imported here: a rerun with nothing to do never loads lark, nor one read from the cache.
    if options.jx is not None:
        from vinemake.language.jxworkflow import read_jx

        if options.explain:
            click.echo("vinemake explain: read the JX workflow (JX is not cached)", err=True)
        return read_jx(path, options.jx, root=options.root), None
    from vinemake.language.rulecache import read_workflow

    parsed = read_workflow(path, StateDir(options.root).path, write=write, later=later)
    if options.explain:
        click.echo(f"vinemake explain: {parsed.note}", err=True)
    return parsed.workflow, parsed.save


def _entry(name: str):
    """vinemake.face.run's `name` function, imported only when a workflow really runs."""
    return getattr(importlib.import_module("vinemake.face.run"), name)


command.params.extend(refusing_options())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
