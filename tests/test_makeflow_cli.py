"""Makeflow's command line: every makeflow flag is taken with its meaning or refused with why.

Accepted flags are run for real where what they do can be seen (the garbage collector's
choices are watched by a LOCAL rule that lists which intermediates still exist when it runs);
the others are checked on the RunOptions they produce.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import types
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from test_outside_sources import run_with_a_worker
from test_run_e2e import vinemake

from vinemake.core.collection import Collection
from vinemake.face import makeflow
from vinemake.face.cli import command

DOCS = Path(__file__).resolve().parent.parent / "docs" / "makeflow.md"

# Every flag of cctools makeflow (makeflow/src/makeflow.c: its option string and long options,
# and the man page's older names). The JX flags belong to the JX reader.
MAKEFLOW_SHORT = "aABcCdfFgGhjJlLmMNoOpPrRStTuvWXzZ"
MAKEFLOW_LONG = """
advertise allocation argv auth batch-log batch-options batch-type cache cache-mode
catalog-server clean debug debug-file debug-rotate-max disable-afs-check disable-cache
disable-heartbeat email enable_hook_example wait-for-files-upto gc gc-size gc-count help
ignore-memory-spec batch-mem-type local-cores local-memory local-disk makeflow-log max-local
max-remote monitor monitor-exe monitor-interval monitor-log-name monitor-log-fmt
monitor-measure-dir monitor-with-opened-files monitor-with-time-series mounts password port
port-file priority project-name retry retry-count do-not-save-failed-output safe-submit-mode
sandbox send-environment shared-fs show-output ssl-key ssl-cert storage-type storage-limit
storage-print submission-timeout summary-log tickets vc3-builder vc3-exe vc3-log vc3-options
version log-verbose working-dir skip-file-check umbrella-binary umbrella-log-prefix
umbrella-mode umbrella-spec work-queue-preferred-connection fast-abort keepalive-interval
keepalive-timeout schedule wait-queue-size wrapper wrapper-input wrapper-output
zero-length-error change-directory docker docker-tar docker-opt amazon-config lambda-config
amazon-batch-img amazon-batch-config enforcement parrot-path env-replace-path singularity
singularity-opt archive archive-s3 archive-s3-no-check s3-hostname s3-keyid s3-secretkey
archive-dir archive-read archive-write mesos-master mesos-path mesos-preload k8s-image
verbose-jobnames keep-wrapper-stdout mpi-cores mpi-memory tlq file-status file-status-interval
chdir verbose wq-fast-abort wq-keepalive-timeout wq-keepalive-interval wq-schedule
preferred-connection archive-read-only archive-write-only mpi-task-working-dir
""".split()
JX_FLAGS = ("--json", "--jx", "--jx-args", "--jx-define", "--jx-context")


def invoke(*args: str):
    return CliRunner().invoke(command, list(args), prog_name="vinemake", catch_exceptions=False)




def usage_error(message: str) -> str:
    return ("Usage: vinemake [OPTIONS] [VINEFILE] [TARGETS]...\n"
            "Try 'vinemake --help' for help.\n\n"
            f"Error: {message}\n")


def known_spellings() -> set[str]:
    ctx = click.Context(command, help_option_names=["-h", "--help"])
    return {opt for p in command.get_params(ctx) for opt in getattr(p, "opts", ())}


# --- every flag is accounted for ------------------------------------------------------------


def test_every_makeflow_flag_is_taken_or_refused():
    known = known_spellings()
    flags = [f"-{c}" for c in MAKEFLOW_SHORT] + [f"--{name}" for name in MAKEFLOW_LONG]
    assert [f for f in flags if f not in known] == []


def test_docs_table_names_every_makeflow_flag():
    text = DOCS.read_text()
    rows = re.findall(r"^\| (`[^|]+`) \|", text, re.M)
    documented = {flag for row in rows for flag in re.findall(r"`(-[-\w]+)", row)}
    flags = {f"-{c}" for c in MAKEFLOW_SHORT} | {f"--{name}" for name in MAKEFLOW_LONG}
    assert sorted(flags - documented) == []
    assert sorted(set(JX_FLAGS) - documented) == []
    refused = {flag for r in makeflow.REFUSED for flag in r.flags}
    assert sorted(refused - documented) == []


REFUSALS = [(flag, r) for r in makeflow.REFUSED for flag in r.flags]


@pytest.mark.parametrize("flag,refusal", REFUSALS, ids=[f for f, _ in REFUSALS])
def test_a_refused_flag_stops_with_its_reason(tmp_path, monkeypatch, flag, refusal):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Vinefile").write_text("out:\n\techo hi > out\n")
    args = [flag] if refusal.value == "none" else \
        [f"{flag}=x"] if refusal.value == "optional" else [flag, "x"]
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.output == usage_error(
        f"{'/'.join(refusal.flags)} (Makeflow) is not supported: {refusal.why}")
    assert sorted(os.listdir(tmp_path)) == ["Vinefile"]  # nothing written, nothing ran


def test_a_refused_flag_names_its_reason_exactly():
    result = invoke("-N", "myproject")
    assert result.exit_code == 2
    assert result.output == usage_error(
        "-N/-M/--project-name (Makeflow) is not supported: vinemake has no catalog server: "
        "workers connect to the manager by host and port (vinemake-worker HOST PORT)")


@pytest.mark.parametrize("name", sorted(makeflow.OTHER_BATCH_TYPES))
def test_makeflows_other_batch_types_are_refused_with_why(name):
    result = invoke("-T", name)
    assert result.exit_code == 2
    assert result.output == usage_error(
        f"Invalid value for '-T' / '--batch-type': {name!r}: "
        f"{makeflow.OTHER_BATCH_TYPES[name]} (choose from local, workers, slurm, pbs, sge, "
        "condor; wq and vine mean workers, torque means pbs)")


def test_dryrun_points_to_dash_n():
    result = invoke("-T", "dryrun")
    assert "'dryrun': vinemake's dry run is -n, which prints the commands instead of a " \
           "shell script" in result.output


def test_a_debug_subsystem_vinemake_has_not_is_refused():
    result = invoke("-d", "tcp")
    assert result.exit_code == 2
    assert result.output == usage_error(
        "Invalid value for '-d' / '--debug': 'tcp': vinemake has no debug output for it "
        "(choose from all, makeflow, wq, vine, batch)")


def test_makeflows_catalog_C_is_explained(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("-C", "catalog.example.org:9097")
    assert result.exit_code == 2
    assert result.output == (
        "vinemake: -C catalog.example.org:9097: No such file or directory (Makeflow's -C "
        "names a catalog server, which vinemake has no use for; here -C changes directory, as "
        "make's)\n")


def test_shared_fs_must_be_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Vinefile").write_text("out:\n\techo hi > out\n")
    result = invoke("--shared-fs", "data")
    assert result.exit_code == 2
    assert result.output == "vinemake: --shared-fs data: must be an absolute path\n"


# --- flags that shape the options -----------------------------------------------------------


@pytest.fixture
def seen(tmp_path, monkeypatch):
    """The RunOptions the command line hands to run()."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Vinefile").write_text("out:\n\techo hi > out\n")
    got = {}

    def run(workflow, graph, options):
        got["options"] = options
        return 0

    monkeypatch.setitem(sys.modules, "vinemake.face.run",
                        types.SimpleNamespace(run=run))
    return got


def options_of(seen, *args):
    assert invoke(*args).exit_code == 0
    return seen["options"]


@pytest.mark.parametrize("name,provider", [("wq", "workers"), ("vine", "workers"),
                                           ("torque", "pbs"), ("slurm", "slurm")])
def test_makeflows_batch_type_names(seen, name, provider):
    assert options_of(seen, "-T", name).batch_type == provider


def test_max_remote_caps_workers_and_max_local_this_machine(seen):
    o = options_of(seen, "-T", "wq", "-j", "2", "-J", "5")
    assert (o.max_local, o.manager.max_tasks) == (2, 5)
    o = options_of(seen, "-T", "wq", "-j", "2")
    assert (o.max_local, o.manager.max_tasks) == (2, 2)  # as before -J existed


def test_with_local_either_cap_means_both_and_the_smaller_wins(seen):
    o = options_of(seen, "-J", "3")
    assert (o.max_local, o.manager.max_tasks) == (3, 3)
    o = options_of(seen, "--max-remote", "3", "--max-local", "2")
    assert (o.max_local, o.manager.max_tasks) == (2, 2)


def test_retry_is_100_and_retry_count_is_r(seen):
    assert options_of(seen, "-R").retries == 100
    assert options_of(seen, "--retry").retries == 100
    assert options_of(seen, "--retry-count", "4").retries == 4
    assert options_of(seen, "-R", "-r", "2").retries == 2


def test_batch_options_port_file_and_local_resources(seen):
    o = options_of(seen, "-T", "slurm", "-B", "-p debug", "-Z", "port.txt",
                   "--local-cores", "2", "--local-memory", "1000", "--local-disk", "2GB")
    assert o.workers.batch_options == "-p debug"
    assert o.manager.port_file == "port.txt"
    w = o.workers.worker_resources
    assert (w.cores, w.memory_mb, w.disk_mb) == (2.0, 1000, 2000)


def test_a_key_and_a_certificate_mean_tls_as_in_makeflow(seen):
    o = options_of(seen, "--ssl-cert", "c.pem", "--ssl-key", "k.pem")
    assert (o.manager.ssl, o.manager.ssl_cert, o.manager.ssl_key) == (True, "c.pem", "k.pem")
    assert options_of(seen, "--ssl-cert", "c.pem").manager.ssl is False


def test_gc_flags_make_one_collection_policy(seen):
    assert options_of(seen, "-g", "on_demand", "-G", "5", "--gc-size", "2GB").gc == \
        Collection("on_demand", 5, 2_000_000_000)
    assert options_of(seen, "--gc", "all", "--gc-count", "0").gc == Collection("all", 0)


def test_sandbox_and_disable_afs_check_are_what_vinemake_always_does(seen):
    assert options_of(seen, "--sandbox", "-A") == options_of(seen)
    assert options_of(seen, "--disable-afs-check") == options_of(seen)


def test_v_is_the_version():
    from vinemake import __version__

    assert invoke("-v").output == f"vinemake {__version__}\n"


# --- real runs ------------------------------------------------------------------------------


CHAIN = """\
a:
\techo a > a
b: a
\tcat a > b
c: b
\tcat b > c
seen: c
\tLOCAL for f in a b c; do [ -e \\$f ] && echo \\$f; done > seen; true
"""

FAN_IN = """\
x1:
\techo 1 > x1
x2:
\techo 2 > x2
x3:
\techo 3 > x3
m: x1 x2 x3
\tcat x1 x2 x3 > m
seen: m
\tLOCAL for f in x1 x2 x3; do [ -e \\$f ] && echo \\$f; done > seen; true
"""


def collected(tmp_path: Path, vinefile: str, *flags: str) -> tuple[str, list[str]]:
    """What the LOCAL rule saw still there, and the files left after the run."""
    (tmp_path / "Vinefile").write_text(vinefile)
    vinemake(tmp_path, *flags)
    left = sorted(p for p in os.listdir(tmp_path) if p not in ("Vinefile", ".vinemake"))
    return (tmp_path / "seen").read_text(), left


def test_on_demand_waits_until_more_than_G_made_files_exist(tmp_path):
    # a, b and c made: 3 > 2, so a and b (whose readers are done) go before `seen` runs.
    assert collected(tmp_path, CHAIN, "-g", "on_demand", "-G", "2") == ("c\n", ["seen"])


def test_on_demand_below_its_count_collects_only_when_the_run_ends(tmp_path):
    assert collected(tmp_path, CHAIN, "-g", "on_demand", "-G", "3") == ("a\nb\nc\n", ["seen"])
    shutil.rmtree(tmp_path / ".vinemake")
    # Makeflow's default count is 16.
    assert collected(tmp_path, CHAIN, "-g", "on_demand") == ("a\nb\nc\n", ["seen"])


def test_on_demand_collects_at_once_when_the_disk_is_low(tmp_path):
    # Every disk has less than 1000 TB free: as low as --gc-size says.
    assert collected(tmp_path, CHAIN, "-g", "on_demand", "-G", "100", "--gc-size",
                     "1000000TB") == ("c\n", ["seen"])


def test_ref_cnt_deletes_at_most_G_files_at_a_time(tmp_path):
    assert collected(tmp_path, FAN_IN, "-g", "ref_cnt", "-G", "1") == ("x2\nx3\n", ["seen"])


def test_ref_cnt_G_0_leaves_everything_to_the_end_of_the_run(tmp_path):
    assert collected(tmp_path, FAN_IN, "-g", "ref_cnt", "-G", "0") == \
        ("x1\nx2\nx3\n", ["seen"])


@pytest.mark.parametrize("mode", ["ref_cnt", "all"])
def test_ref_cnt_and_all_delete_a_file_as_soon_as_it_can_go(tmp_path, mode):
    assert collected(tmp_path, FAN_IN, "-g", mode) == ("", ["seen"])


def test_without_gc_nothing_is_deleted(tmp_path):
    assert collected(tmp_path, FAN_IN, "-g", "none") == \
        ("x1\nx2\nx3\n", ["m", "seen", "x1", "x2", "x3"])


def test_a_collected_run_is_up_to_date_next_time(tmp_path):
    collected(tmp_path, CHAIN, "-g", "on_demand", "-G", "2")
    assert vinemake(tmp_path).stderr == "vinemake: nothing to do, 4 rules up to date\n"


def test_c_cleans_and_c_mode_cleans_that_part(tmp_path):
    (tmp_path / "Vinefile").write_text("mid:\n\techo m > mid\nout: mid\n\tcat mid > out\n")
    vinemake(tmp_path)
    assert vinemake(tmp_path, "-coutputs").stderr == "removed out\n"
    assert (tmp_path / "mid").exists() and not (tmp_path / "out").exists()
    vinemake(tmp_path)
    # As makeflow -c Makeflow: -c takes no separate value, the next word is the workflow.
    proc = vinemake(tmp_path, "-c", "Vinefile")
    assert {"removed mid", "removed out"} <= set(proc.stderr.splitlines())
    assert sorted(os.listdir(tmp_path)) == [".vinemake", "Vinefile"]  # .vinemake/lock


def test_summary_log_in_makeflows_layout(tmp_path):
    (tmp_path / "Vinefile").write_text("mid:\n\techo m > mid\nout: mid\n\tcat mid mid > out\n")
    vinemake(tmp_path, "-f", "summary.txt")
    lines = (tmp_path / "summary.txt").read_text().splitlines()
    assert lines[0].endswith(" -f summary.txt ")
    assert re.fullmatch(r"Workflow completed:\t .+", lines[1])
    assert re.fullmatch(r"Total runtime:\t\t 0:00:\d\d", lines[2])
    assert lines[3:] == [f"Workflow file:\t\t {tmp_path / 'Vinefile'}",
                         "Number of tasks:\t 2", "Completed tasks:\t 2/2",
                         "Output files:", "\tout\t4 B"]


def test_summary_log_names_the_failed_command(tmp_path):
    (tmp_path / "Vinefile").write_text("a:\n\texit 3\nb: a\n\tcat a > b\nc:\n\techo c > c\n")
    proc = vinemake(tmp_path, "-k", "-f", "summary.txt", check=False)
    assert proc.returncode == 1
    lines = (tmp_path / "summary.txt").read_text().splitlines()
    assert re.fullmatch(r"Workflow failed:\t .+", lines[1])
    assert lines[4:] == ["Number of tasks:\t 3", "Completed tasks:\t 1/3",
                         "Tasks not run:\t\t 1/3", "Failed tasks:\t\t 1/3", "\texit 3",
                         "Output files:", "\tb\t-", "\tc\t2 B"]


def test_a_summary_log_it_cannot_write_is_said_and_the_runs_exit_status_stands(tmp_path):
    (tmp_path / "Vinefile").write_text("out:\n\techo hi > out\n")
    proc = vinemake(tmp_path, "-f", "no/such/dir/summary.txt", "--trace", "t.tsv", check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.endswith("vinemake: -f no/such/dir/summary.txt: No such file or "
                                "directory\n")
    assert (tmp_path / "out").read_text() == "hi\n"
    assert (tmp_path / "t.tsv").read_text().count("\n") == 2  # as --trace and --report do


def test_debug_output_goes_to_the_debug_file(tmp_path):
    (tmp_path / "Vinefile").write_text("out:\n\techo hi > out\n")
    proc = vinemake(tmp_path, "-d", "wq", "-o", "debug.log")
    assert "vinemake" not in proc.stdout
    log = (tmp_path / "debug.log").read_text()
    assert re.search(r"^\S+ \S+ vinemake\[\d+\] vinemake\.manager: worker local joined from "
                     r"127\.0\.0\.1 \(same host\)", log, re.M), log


def test_debug_to_stderr_by_default(tmp_path):
    (tmp_path / "Vinefile").write_text("out:\n\techo hi > out\n")
    proc = vinemake(tmp_path, "-d", "all")
    assert "vinemake.manager: worker local joined from 127.0.0.1 (same host)" in proc.stderr


def test_chdir_x_reads_the_workflow_here_and_runs_it_there(tmp_path):
    (tmp_path / "Makeflow").write_text("out: in\n\tcat in in > out\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "in").write_text("x\n")
    vinemake(tmp_path, "-X", "run", "--sandbox", "-A")
    assert (run_dir / "out").read_text() == "x\nx\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["wq", "vine"])
def test_T_wq_waits_for_workers_started_by_hand(tmp_path, name):
    (tmp_path / "Vinefile").write_text("out: in\n\ttr a-z A-Z < in > out\n")
    (tmp_path / "in").write_text("hello\n")
    proc = run_with_a_worker(tmp_path, "-T", name)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out").read_text() == "HELLO\n"


def test_zero_length_error_fails_a_rule_that_leaves_an_empty_output(tmp_path):
    (tmp_path / "Vinefile").write_text("e.txt:\n\ttouch e.txt\nf.txt:\n\techo x > f.txt\n")
    proc = vinemake(tmp_path, "-z", "-k", check=False)
    assert proc.returncode == 1
    assert ("FAILED  e.txt: missing output: output 'e.txt' is empty (-z: an empty output is "
            "a failure)\n") in proc.stderr
    assert not (tmp_path / "e.txt").exists()  # set aside, not left at its path
    assert (tmp_path / ".vinemake" / "failed" / "e.txt" / "e.txt").read_text() == ""
    assert (tmp_path / "f.txt").read_text() == "x\n"
    # Without -z an empty output is an output, as in Makeflow.
    assert vinemake(tmp_path).returncode == 0 and (tmp_path / "e.txt").exists()


def test_argv_file_holds_the_options_and_the_workflow(tmp_path):
    (tmp_path / "flow.mf").write_text("e.txt:\n\ttouch e.txt\nf.txt:\n\techo x > f.txt\n")
    (tmp_path / "args.json").write_text(
        '{"MAKEFLOW": "flow.mf", "zero-length-error": null, "keep-going": null, '
        '"summary-log": "sum.txt", "shared-fs": ["/data", "/opt"]}')
    proc = vinemake(tmp_path, "--argv", "args.json", check=False)
    assert proc.returncode == 1  # -z failed e.txt; -k still made f.txt
    assert (tmp_path / "f.txt").read_text() == "x\n" and not (tmp_path / "e.txt").exists()
    assert "Failed tasks:\t\t 1/2" in (tmp_path / "sum.txt").read_text()


def test_argv_values_become_option_values(seen, tmp_path):
    (tmp_path / "a.json").write_text('{"max-remote": 3, "batch-type": "wq", "retry": null}')
    o = options_of(seen, "--argv=a.json")
    assert (o.batch_type, o.manager.max_tasks, o.retries) == ("workers", 3, 100)


@pytest.mark.parametrize("text,message", [
    (None, "--argv missing.json: No such file or directory"),
    ("[1]", "--argv missing.json: must hold a JSON object of options"),
    ('{"gc": {"a": 1}}', "--argv missing.json: the value of 'gc' must be a string, a number, "
                         "a boolean, null or a list of them"),
    ('{"keep-going": true}', "Option '--keep-going' does not take a value."),
])
def test_a_bad_argv_file_is_exit_2(tmp_path, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    if text is not None:
        (tmp_path / "missing.json").write_text(text)
    result = invoke("--argv", "missing.json")
    assert result.exit_code == 2
    assert result.output.endswith(f"Error: {message}\n")


def test_makeflows_environment_variables(seen, monkeypatch):
    monkeypatch.setenv("BATCH_OPTIONS", "-q long")
    monkeypatch.setenv("MAKEFLOW_BATCH_QUEUE_TYPE", "wq")
    monkeypatch.setenv("MAKEFLOW_MAX_REMOTE_JOBS", "4")
    monkeypatch.setenv("MAKEFLOW_MAX_LOCAL_JOBS", "3")
    o = options_of(seen)
    assert (o.batch_type, o.workers.batch_options, o.max_local, o.manager.max_tasks) == \
        ("workers", "-q long", 3, 4)
    # A flag wins over -T's and -B's variable; -j/-J and theirs: the smaller.
    o = options_of(seen, "-T", "slurm", "-B", "-p x", "-J", "9", "-j", "2")
    assert (o.batch_type, o.workers.batch_options, o.max_local, o.manager.max_tasks) == \
        ("slurm", "-p x", 2, 4)


@pytest.mark.parametrize("name,value,message", [
    ("MAKEFLOW_MAX_REMOTE_JOBS", "lots", "vinemake: MAKEFLOW_MAX_REMOTE_JOBS=lots: not a whole "
                                        "number\n"),
    ("MAKEFLOW_MAX_LOCAL_JOBS", "0", "vinemake: MAKEFLOW_MAX_LOCAL_JOBS=0: must be 1 or more\n"),
])
def test_a_bad_job_count_variable_is_exit_2(seen, monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    result = invoke()
    assert (result.exit_code, result.output) == (2, message)


def test_a_batch_type_variable_vinemake_has_not_is_refused(seen, monkeypatch):
    monkeypatch.setenv("MAKEFLOW_BATCH_QUEUE_TYPE", "moab")
    result = invoke()
    assert result.exit_code == 2
    assert "Error: Invalid value for '-T' / '--batch-type': 'moab': vinemake has no moab " \
           "backend" in result.output


# --- heartbeats: -u, -t, --disable-heartbeat -------------------------------------------------


def manager_of(tmp_path, monkeypatch, *args: str):
    """The ManagerConfig a run of `args` would get (the run itself replaced)."""
    seen = {}

    def run(workflow, graph, options):
        seen["manager"] = options.manager
        return 0

    monkeypatch.chdir(tmp_path)
    (tmp_path / "Vinefile").write_text("out:\n\techo hi > out\n")
    monkeypatch.setitem(sys.modules, "vinemake.face.run", types.SimpleNamespace(run=run))
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return seen["manager"]


@pytest.mark.parametrize("args,beats", [
    ((), (5.0, 60.0)),
    (("-u", "120"), (120.0, 175.0)),
    (("-t", "30"), (5.0, 35.0)),
    (("--wq-keepalive-interval", "2", "--wq-keepalive-timeout", "8"), (2.0, 10.0)),
    (("--keepalive-interval=0.5", "--keepalive-timeout=1"), (0.5, 1.5)),
    (("--disable-heartbeat",), (0.0, 0.0)),
])
def test_keepalive_flags_set_the_heartbeat_and_the_silence_that_loses_a_worker(
        tmp_path, monkeypatch, args, beats):
    m = manager_of(tmp_path, monkeypatch, *args)
    assert (m.heartbeat_s, m.silence_s) == beats


@pytest.mark.parametrize("args,error", [
    (("-u", "0"), "Invalid value for '-u' / '--keepalive-interval' / '--wq-keepalive-interval': "
                  "0.0 is not in the range x>0."),
    (("-t", "-3"), "Invalid value for '-t' / '--keepalive-timeout' / '--wq-keepalive-timeout': "
                   "-3.0 is not in the range x>0."),
    (("--disable-heartbeat", "-t", "3"),
     "--disable-heartbeat and -t/--keepalive-timeout cannot be combined"),
    (("-u", "3", "--disable-heartbeat"),
     "--disable-heartbeat and -u/--keepalive-interval cannot be combined"),
])
def test_bad_keepalive_flags_stop_before_anything_runs(tmp_path, monkeypatch, args, error):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Vinefile").write_text("out:\n\techo hi > out\n")
    result = invoke(*args)
    assert (result.exit_code, result.output) == (2, usage_error(error))
    assert sorted(os.listdir(tmp_path)) == ["Vinefile"]
