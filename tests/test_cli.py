"""The command line: modes, default Vinefile discovery, -C, exit codes, nothing written."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import types

import pytest
from click.testing import CliRunner

from vinemake import __version__
from vinemake.backends import ProviderOptions
from vinemake.common.spec import Resources
from vinemake.face.cli import command
from vinemake.face.options import RunOptions
from vinemake.manager.config import ManagerConfig

VINEFILE = """\
CATEGORY=align
a.txt: in.txt
\tcp in.txt a.txt
@resources cores=2 memory=1GB
b.txt: a.txt->input
\tcp input b.txt
CATEGORY=merge
all.txt: a.txt b.txt
\tcat a.txt b.txt > all.txt
"""


def invoke(*args: str):
    # Click 8.2 keeps stderr apart; older versions mix it into output.
    return CliRunner().invoke(command, list(args), prog_name="vinemake")


def stderr(result) -> str:
    try:
        return result.stderr
    except ValueError:
        return result.output


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A tiny workflow directory, made the current directory."""
    (tmp_path / "Vinefile").write_text(VINEFILE)
    (tmp_path / "in.txt").write_text("hello\n")
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    gc.unfreeze()  # a run froze everything alive: hand it back to the collector


def snapshot(root) -> dict[str, float]:
    return {os.path.join(d, n): os.stat(os.path.join(d, n)).st_mtime_ns
            for d, dirs, files in os.walk(root) for n in dirs + files}


# --- without a Vinefile ---------------------------------------------------------------------


def test_version():
    result = invoke("--version")
    assert (result.exit_code, result.output) == (0, f"vinemake {__version__}\n")


def test_help_speaks_makeflow():
    result = invoke("-h")
    assert result.exit_code == 0
    for option in ("-T, --batch-type", "-j, --max-local", "-r, --retries", "--clean",
                   "-g, --gc", "-p, --port", "--port-file", "--password", "--check",
                   "-n, --dry-run", "--graph FORMAT", "-C DIR"):
        assert option in result.output


def test_no_vinefile_here_is_exit_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("--check")
    assert result.exit_code == 2
    assert stderr(result) == (f"vinemake: no Vinefile or Makeflow in {tmp_path} "
                              "(name one: vinemake FILE)\n")


def test_a_named_vinefile_that_is_missing_hints_at_targets(project):
    result = invoke("all.txt")
    assert result.exit_code == 2
    assert stderr(result) == ("vinemake: all.txt: no such Vinefile (to build targets of "
                              "./Vinefile, name it first: vinemake Vinefile all.txt)\n")


def test_minus_C_to_a_missing_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("-C", "nope", "--check")
    assert result.exit_code == 2
    assert stderr(result) == "vinemake: -C nope: No such file or directory\n"


def test_modes_do_not_combine(project):
    result = invoke("--check", "-n")
    assert result.exit_code == 2
    assert "Error: --check and --dry-run cannot be combined" in stderr(result)


def test_clean_followed_by_a_file_name_explains(project):
    result = invoke("--clean", "Vinefile")
    assert result.exit_code == 2
    assert ("'Vinefile' is not one of all, outputs, intermediates, cache (to clean a named "
            "Vinefile, write: vinemake --clean=all Vinefile)") in stderr(result)


def test_bad_size_is_a_usage_error(project):
    result = invoke("--memory", "lots")
    assert result.exit_code == 2
    assert "Invalid value for '--memory' / '--local-memory': not a size: 'lots'" in stderr(result)


# --- with a Vinefile ------------------------------------------------------------------------


def test_check_prints_counts(project):
    result = invoke("--check")
    assert (result.exit_code, result.output) == (
        0, "Vinefile: 3 rules, 4 files (1 source), 2 categories\n")


def test_check_with_targets_counts_what_they_need(project):
    result = invoke("--check", "Vinefile", "b.txt")
    assert (result.exit_code, result.output) == (
        0, "Vinefile: 2 rules, 3 files (1 source), 1 category\n")


def test_makeflow_is_the_second_default(project):
    (project / "Vinefile").rename(project / "Makeflow")
    result = invoke("--check")
    assert (result.exit_code, result.output) == (
        0, "Makeflow: 3 rules, 4 files (1 source), 2 categories\n")


def test_minus_C(project, monkeypatch):
    monkeypatch.chdir(project.parent)
    result = invoke("-C", project.name, "--check")
    assert (result.exit_code, result.output) == (
        0, "Vinefile: 3 rules, 4 files (1 source), 2 categories\n")


def test_dry_run_lists_commands_in_order_with_files_and_resources(project):
    result = invoke("-n")
    assert result.exit_code == 0
    assert stderr(result).splitlines()[-1] == "vinemake: would run 3, restore 0, up to date 0"
    assert result.stdout == (
        "# a.txt (line 2; category align)\n"
        "#   why: run, never built\n"
        "#   in:  in.txt\n"
        "#   out: a.txt\n"
        "cp in.txt a.txt\n"
        "# b.txt (line 5; category align; cores=2 memory=1000MB)\n"
        "#   why: run, never built\n"
        "#   in:  a.txt->input\n"
        "#   out: b.txt\n"
        "cp input b.txt\n"
        "# all.txt (line 8; category merge)\n"
        "#   why: run, never built\n"
        "#   in:  a.txt b.txt\n"
        "#   out: all.txt\n"
        "cat a.txt b.txt > all.txt\n")


def test_graph_json(project):
    result = invoke("--graph", "json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert {n["id"] for n in data["nodes"] if n["kind"] == "rule"} == {
        "rule:0", "rule:1", "rule:2"}


def test_graph_dot(project):
    result = invoke("--graph", "dot")
    assert result.exit_code == 0
    assert '  "file:a.txt" -> "rule1";\n' in result.output


def test_check_dry_run_and_graph_write_nothing(project):
    before = snapshot(project)
    for args in (["--check"], ["-n"], ["--graph", "dot"], ["--graph", "mermaid"]):
        assert invoke(*args).exit_code == 0
    assert snapshot(project) == before


def test_graph_error_is_located_and_exit_2(project):
    (project / "Vinefile").write_text("out: inptu.txt\n\tcat inptu.txt > out\n")
    (project / "input.txt").write_text("")
    result = invoke("--check")
    assert result.exit_code == 2
    assert stderr(result) == (
        "Vinefile:1:6: source 'inptu.txt' does not exist and no rule makes it "
        "(did you mean 'input.txt'?)\n"
        "out: inptu.txt\n"
        "     ^\n")


def test_unknown_target(project):
    result = invoke("-n", "Vinefile", "al.txt")
    assert result.exit_code == 2
    assert stderr(result) == "vinemake: unknown target 'al.txt' (did you mean 'all.txt'?)\n"


def test_run_receives_the_options_and_its_exit_code_is_ours(project, monkeypatch):
    seen = {}

    def run(workflow, graph, options):
        seen.update(rules=len(workflow.rules), ids=graph.rule_ids, options=options)
        return 3

    monkeypatch.setitem(sys.modules, "vinemake.face.run",
                        types.SimpleNamespace(run=run))
    result = invoke("-T", "slurm", "-j", "4", "-k", "-r", "2", "--memory", "4GB",
                    "--worker-timeout", "5m", "--no-peer-transfers", "--cores", "2",
                    "--port", "9123", "Vinefile", "a.txt")
    assert result.exit_code == 3
    assert seen["rules"] == 3 and seen["ids"] == (0,)
    assert seen["options"] == RunOptions(
        vinefile=str(project / "Vinefile"), root=str(project), targets=("a.txt",),
        batch_type="slurm", max_local=4, keep_going=True, retries=2,
        manager=ManagerConfig(host="0.0.0.0", port=9123, peer_transfers=False, max_tasks=4),
        workers=ProviderOptions(worker_timeout_s=300.0,
                                worker_resources=Resources(cores=2.0, memory_mb=4000)))


def test_ctrl_c_is_exit_130_without_traceback(project, monkeypatch):
    def run(workflow, graph, options):
        raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "vinemake.face.run",
                        types.SimpleNamespace(run=run))
    result = invoke()
    assert (result.exit_code, stderr(result)) == (130, "vinemake: interrupted\n")


def test_the_collector_is_back_on_after_reading(project):
    assert gc.isenabled()
    assert invoke("--check").exit_code == 0
    assert gc.isenabled()


def test_clean_defaults_to_all(project, monkeypatch):
    seen = {}

    def clean(workflow, graph, options):
        seen["clean"] = options.clean
        return 0

    monkeypatch.setitem(sys.modules, "vinemake.face.run", types.SimpleNamespace(clean=clean))
    assert invoke("--clean").exit_code == 0
    assert seen == {"clean": "all"}
    assert invoke("--clean=outputs").exit_code == 0
    assert seen == {"clean": "outputs"}


# --- through a real process -----------------------------------------------------------------


def vinemake(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vinemake", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_process_version(tmp_path):
    done = vinemake("--version", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"vinemake {__version__}\n")


def test_process_missing_vinefile_is_exit_2_without_traceback(tmp_path):
    done = vinemake("-n", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (f"vinemake: no Vinefile or Makeflow in {tmp_path} "
                           "(name one: vinemake FILE)\n")


def test_process_check_and_located_error(project):
    done = vinemake("--check", cwd=project)
    assert (done.returncode, done.stdout, done.stderr) == (
        0, "Vinefile: 3 rules, 4 files (1 source), 2 categories\n", "")
    (project / "Vinefile").write_text("a: b\n\tx\nb: a\n\tx\n")
    done = vinemake("--check", cwd=project)
    assert done.returncode == 2
    assert done.stderr == ("Vinefile:1:1: dependency cycle: a (line 1) needs b (line 3) "
                           "needs a (line 1)\na: b\n^\n")


def test_a_run_with_several_syntax_errors_reports_them_all_and_writes_nothing(project):
    (project / "Vinefile").write_text("a: in.txt\n\tcp in.txt a\nb c\n\techo\nd = \"x\n")
    before = snapshot(project)
    result = invoke()
    assert result.exit_code == 2
    err = stderr(result)
    assert err.count("Vinefile:") == 2
    assert "Vinefile:3:4: expected ':'" in err and "Vinefile:5:5: unbalanced quote" in err
    assert snapshot(project) == before  # no .vinemake, nothing run


def test_twenty_errors_on_a_ten_megabyte_line_print_little_and_fit_in_memory(tmp_path):
    missing = " ".join(f"m{i:02}" for i in range(20))
    (tmp_path / "Vinefile").write_text(f"out: {missing} # {'x' * 10_000_000}\n\ttouch out\n")
    # A small interpreter starts vinemake and reports its peak: a child forked from this big
    # test process would count the test's own pages in its peak.
    measure = ("import os, resource, subprocess, sys\n"
               "code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL,\n"
               "                       stderr=open('stderr', 'wb'))\n"
               "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
               "print(code, peak * 1024)\n")
    out = subprocess.run([sys.executable, "-c", measure, sys.executable, "-m", "vinemake",
                          "--check"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120).stdout
    code, peak = map(int, out.split())
    text = (tmp_path / "stderr").read_text()
    assert code == 2
    assert text.count("does not exist and no rule makes it") == 20
    assert text.startswith(f"Vinefile:1:6: source 'm00' does not exist and no rule makes it\n"
                           f"out: {missing} # {'x' * 113}...\n     ^\n")
    assert len(text) < 20 * 500
    # Quoting the line in full, read anew for each error, made 20 copies of 10 MB, each three
    # times (the line, the caret's padding, the message): 1.2 GB. Now the line is read once.
    assert peak < 120_000_000


@pytest.mark.parametrize(("vinefile", "expected"), [
    ("o o:\n\ttouch o\n",
     "Vinefile:1:3: 'o' is a target of this rule twice\no o:\n  ^\n"),
    ("x .vinemake/journal:\n\ttouch x .vinemake/journal\n",
     "Vinefile:1:3: target '.vinemake/journal' is inside .vinemake/, where vinemake keeps its "
     "own state: a rule's outputs must be elsewhere\nx .vinemake/journal:\n  ^\n"),
])
def test_check_reports_targets_no_run_could_make(tmp_path, monkeypatch, vinefile, expected):
    (tmp_path / "Vinefile").write_text(vinefile)
    monkeypatch.chdir(tmp_path)
    result = invoke("--check")
    assert (result.exit_code, stderr(result)) == (2, expected)
    assert sorted(os.listdir(tmp_path)) == ["Vinefile"]


def test_a_subworkflow_loop_is_reported_at_check_with_its_chain(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Vinefile").write_text("out:\n\tMAKEFLOW Vinefile\n")
    result = invoke("--check")
    assert (result.exit_code, stderr(result)) == (2, (
        "Vinefile:2:2: sub-workflow loop: Vinefile runs Vinefile\n\tMAKEFLOW Vinefile\n\t^\n"))
    (tmp_path / "Vinefile").write_text("top:\n\tMAKEFLOW a.vf\n")
    (tmp_path / "a.vf").write_text("a:\n\tMAKEFLOW b.vf\n")
    (tmp_path / "b.vf").write_text("# b\nb:\n\tLOCAL MAKEFLOW a.vf x\n")
    result = invoke()
    assert (result.exit_code, stderr(result)) == (2, (
        "b.vf:3:2: sub-workflow loop: a.vf runs b.vf runs a.vf\n"
        "\tLOCAL MAKEFLOW a.vf x\n\t^\n"))
    assert not any((tmp_path / made).exists() for made in ("top", "a", "b", "x"))


def test_a_port_file_that_cannot_be_written_is_named_not_its_temporary(project):
    result = subprocess.run([sys.executable, "-m", "vinemake", "-Z", str(project / "no" / "port")],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == (f"vinemake: cannot start the manager: cannot write the port file "
                             f"{project / 'no' / 'port'}: No such file or directory\n")
    assert not (project / "a.txt").exists()
