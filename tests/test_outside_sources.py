"""Sources outside the workflow directory (issue 14 item 4): absolute ones read in place, `..`
ones laid out above the command's directory; both hashed into the provenance keys.

Real runs: on this machine (-T local, LOCAL rules) and on workers started by hand (-T wq,
real vinemake-worker processes over TCP), with and without --shared-fs.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_run_e2e import vinemake

from vinemake.common.task import TaskFile
from vinemake.core.outside import arrange, climb, climbing_links, command_dir, unseen_by_workers

WORKER = [sys.executable, "-c", "from vinemake.worker.cli import main; main()"]




@pytest.fixture
def tree(tmp_path):
    """tmp/shared/data.txt, tmp/tools/tag.txt and a workflow in tmp/proj/wf reading both."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data.txt").write_text("shared\n")
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "tag.txt").write_text("tag\n")
    wf = tmp_path / "proj" / "wf"
    wf.mkdir(parents=True)
    (wf / "in.txt").write_text("in\n")
    tag = tmp_path / "tools" / "tag.txt"
    (wf / "Vinefile").write_text(
        f"both.txt: ../../shared/data.txt {tag} in.txt\n"
        f"\tcat ../../shared/data.txt {tag} in.txt > both.txt\n\n"
        f"local.txt: ../../shared/data.txt {tag}\n"
        f"\tLOCAL cat ../../shared/data.txt {tag} > local.txt\n")
    return tmp_path, wf


def test_local_run_reads_absolute_and_dotdot_sources_then_does_nothing(tree):
    tmp, wf = tree
    vinemake(wf)
    assert (wf / "both.txt").read_text() == "shared\ntag\nin\n"
    assert (wf / "local.txt").read_text() == "shared\ntag\n"
    assert vinemake(wf).stderr == "vinemake: nothing to do, 2 rules up to date\n"


def test_their_content_is_part_of_the_keys(tree):
    tmp, wf = tree
    vinemake(wf)
    (tmp / "shared" / "data.txt").write_text("changed\n")
    proc = vinemake(wf, "--explain")
    assert "vinemake explain: run both.txt: input '../../shared/data.txt' changed" in proc.stderr
    assert (wf / "both.txt").read_text() == "changed\ntag\nin\n"
    (tmp / "tools" / "tag.txt").write_text("other tag\n")
    proc = vinemake(wf, "--explain")
    assert f"vinemake explain: run local.txt: input '{tmp / 'tools' / 'tag.txt'}' changed" \
        in proc.stderr
    assert (wf / "local.txt").read_text() == "changed\nother tag\n"


def test_a_missing_outside_source_is_located(tree):
    tmp, wf = tree
    (tmp / "shared" / "data.txt").unlink()
    proc = vinemake(wf, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith(
        "Vinefile:1:11: source '../../shared/data.txt' does not exist and no rule makes it")


@pytest.mark.parametrize("target,why", [("/tmp/x.out", "is absolute"),
                                        ("../x.out", "contains a '..' component")])
def test_outside_targets_stay_refused(tmp_path, target, why):
    (tmp_path / "Vinefile").write_text(f"{target}:\n\techo hi > {target}\n")
    proc = vinemake(tmp_path, check=False)
    assert (proc.returncode, proc.stderr) == (2, (
        f"Vinefile:1:1: target '{target}' {why}: a rule's outputs must be inside the "
        f"workflow directory\n{target}:\n^\n"))


# --- workers started by hand ----------------------------------------------------------------


def run_with_a_worker(wf: Path, *flags: str) -> subprocess.CompletedProcess:
    """vinemake -T wq FLAGS (a later -T wins) with one real vinemake-worker over TCP."""
    port_file = wf / "port"
    port_file.unlink(missing_ok=True)
    manager = subprocess.Popen([sys.executable, "-m", "vinemake", "-T", "wq", "-Z",
                                str(port_file), *flags], cwd=wf, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if manager.poll() is not None or time.monotonic() > deadline:
                out, err = manager.communicate()
                return subprocess.CompletedProcess(manager.args, manager.returncode, out, err)
            time.sleep(0.05)
        worker = subprocess.Popen([*WORKER, "127.0.0.1", port_file.read_text().strip(),
                                   "--cores", "2", "--workdir", str(wf.parent / "worker"),
                                   "--timeout", "60"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out, err = manager.communicate(timeout=120)
        return subprocess.CompletedProcess(manager.args, manager.returncode, out, err)
    finally:
        for proc in (manager, worker):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def test_workers_read_absolute_sources_under_shared_fs_and_get_dotdot_ones_sent(tree):
    tmp, wf = tree
    proc = run_with_a_worker(wf, "--shared-fs", str(tmp / "tools"))
    assert proc.returncode == 0, proc.stderr
    assert (wf / "both.txt").read_text() == "shared\ntag\nin\n"
    assert (wf / "local.txt").read_text() == "shared\ntag\n"


def test_workers_without_shared_fs_refuse_an_absolute_source_before_starting(tree):
    tmp, wf = tree
    tag = tmp / "tools" / "tag.txt"
    proc = run_with_a_worker(wf)
    assert proc.returncode == 2
    line = f"both.txt: ../../shared/data.txt {tag} in.txt"
    col = line.index(str(tag))
    assert proc.stderr == (
        f"Vinefile:1:{col + 1}: source '{tag}' is read in place, and workers started by hand may "
        f"not have it: give --shared-fs DIR for a directory every worker sees, or send it "
        f"into the task as '{tag}->tag.txt'\n{line}\n{' ' * col}^\n")
    assert not (wf / "both.txt").exists()


def test_renamed_into_the_task_an_absolute_source_travels_to_workers(tree):
    tmp, wf = tree
    tag = tmp / "tools" / "tag.txt"
    (wf / "Vinefile").write_text(f"out.txt: {tag}->tag.txt\n\tcat tag.txt > out.txt\n")
    proc = run_with_a_worker(wf)
    assert proc.returncode == 0, proc.stderr
    assert (wf / "out.txt").read_text() == "tag\n"


# --- the layout, as plain data --------------------------------------------------------------


def test_climb_and_command_dir():
    assert [climb(n) for n in ("a", "../a", "../../a/b", "a/../../b", "..")] == [0, 1, 2, 1, 1]
    assert command_dir(["in", "../../s.txt", "/abs"], "/home/u/proj/wf") == "proj/wf"
    assert command_dir(["../../../s"], "/a/b") == "_/a/b"
    assert command_dir(["in", "/abs"], "/home/u/wf") == ""


def test_arrange_puts_dotdot_sources_above_and_leaves_absolute_ones_out():
    inputs = (TaskFile("k1", "in.txt", "/w/proj/wf/in.txt"),
              TaskFile("k2", "../../shared/data.txt", "/w/shared/data.txt"),
              TaskFile("k3", "/opt/tag.txt", "/opt/tag.txt"),
              TaskFile("k1", "../wf/in.txt", "/w/proj/wf/in.txt"))
    outputs = (TaskFile("o1", "out.txt", "/w/proj/wf/out.txt"),)
    got_in, got_out, command = arrange(inputs, outputs, "cat x > out.txt", "/w/proj/wf")
    assert [f.sandbox for f in got_in] == ["proj/wf/in.txt", "shared/data.txt"]
    assert [f.sandbox for f in got_out] == ["proj/wf/out.txt"]
    assert command == "mkdir -p proj/wf && cd proj/wf || exit 1\ncat x > out.txt"


def test_arrange_without_a_climb_changes_only_the_inputs():
    inputs = (TaskFile("k1", "in.txt"), TaskFile("k3", "/opt/tag.txt", "/opt/tag.txt"))
    outputs = (TaskFile("o1", "out.txt"),)
    assert arrange(inputs, outputs, "c", "/w") == ((inputs[0],), outputs, "c")


def test_climbing_links_for_a_local_rules_shadow():
    inputs = (TaskFile("k1", "in.txt", "/w/wf/in.txt"),
              TaskFile("k2", "../shared.txt", "/w/shared.txt"))
    assert climbing_links(inputs, "/w/wf") == ("wf", [("shared.txt", "/w/shared.txt")])
    assert climbing_links(inputs[:1], "/w/wf") == ("", [])


def test_unseen_by_workers_is_what_no_shared_dir_holds():
    assert unseen_by_workers(["/data/a", "/datab/c", "/home/x", "../y"], ["/data", "/home/"]) \
        == ["/datab/c"]


def test_a_variable_naming_an_absolute_program_is_a_source(tmp_path):
    tool = tmp_path / "bin" / "shout"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\ntr a-z A-Z < \"$1\"\n")
    tool.chmod(0o755)
    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "in.txt").write_text("hi\n")
    (wf / "Vinefile").write_text(f"SHOUT={tool}\nout.txt: $(SHOUT) in.txt\n"
                                 "\t$(SHOUT) in.txt > out.txt\n")
    vinemake(wf)
    assert (wf / "out.txt").read_text() == "HI\n"
    tool.write_text("#!/bin/sh\ncat \"$1\" \"$1\"\n")  # a new version of the program reruns
    proc = vinemake(wf, "--explain")
    assert f"vinemake explain: run out.txt: input '{tool}' changed" in proc.stderr
    assert (wf / "out.txt").read_text() == "hi\nhi\n"
