"""Nothing lost, nothing corrupted, no traceback: real vinemake runs against faults (issue 15)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import require

from vinemake.common.names import MAX_NAME, fit, flat, quoted
from vinemake.core.journal import Journal


def vinemake(root, *args, timeout=60, **kw):
    return subprocess.run([sys.executable, "-m", "vinemake", *args], cwd=root,
                          capture_output=True, text=True, timeout=timeout, **kw)


def no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr


# -- 12: long rule names ------------------------------------------------------------------------

LONG = "数" * 60 + ".txt"
DEEP = "/".join(["d" * 40] * 6) + "/" + "x" * 200 + ".txt"


@pytest.mark.parametrize("local", ["", "LOCAL "], ids=["remote", "local"])
@pytest.mark.parametrize("target", [LONG, "a" * 300, DEEP], ids=["cjk", "300", "deep"])
def test_a_failing_rule_with_a_long_name_leaves_its_info_record(tmp_path, target, local):
    mkdir = f"mkdir -p {os.path.dirname(target)}; " if "/" in target else ""
    (tmp_path / "Vinefile").write_text(f"{target}:\n\t{local}{mkdir}echo half > {target}; "
                                       f"echo oops >&2; exit 3\n")
    proc = vinemake(tmp_path)
    no_traceback(proc)
    assert proc.returncode == 1
    where = tmp_path / ".vinemake" / "failed" / quoted(target)
    assert (where / "INFO").read_text().splitlines()[0] == f"rule: {target}"
    if len(os.path.basename(target)) <= 255:  # else no filesystem lets the command make it
        assert (where / flat(target)).read_text() == "half\n"
        assert not os.path.lexists(tmp_path / target)
    assert f"  see .vinemake/failed/{quoted(target)}/INFO\n" in proc.stderr


def test_fitted_names_keep_a_readable_head_and_differ_by_a_hash():
    assert fit("short.txt") == "short.txt"
    a, b = fit("数" * 100 + "a"), fit("数" * 100 + "b")
    assert a != b and a.startswith("数" * 40) and len(a.encode()) <= MAX_NAME
    head = quoted("数" * 60).rsplit("-", 1)[0]
    assert head.startswith("%E6%95%B0") and len(head) % 3 == 0  # no escape cut in half
    assert flat("sub/x.txt") == "sub_x.txt"


# -- 2: LOCAL commands die with vinemake, and write their outputs under a temporary name --------

def wait_for(predicate, what: str, limit_s: float = 30.0) -> None:
    """Poll until `predicate()` holds (a wait for an event, not a timing assertion)."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def lines(path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_local_command_orphaned_by_kill_9_never_writes_into_the_next_run(tmp_path):
    """The issue's reproduction, made deterministic: the command waits for `go`, which is
    created only once the rerun's own command is running beside the orphan."""
    root, marks, go = tmp_path / "wf", tmp_path / "pids", tmp_path / "go"
    root.mkdir()
    (root / "src").write_text("src\n")
    (root / "Vinefile").write_text(
        f"out: src\n\tLOCAL echo begin > out; echo \\$\\$ >> {marks}; "
        f"while [ ! -e {go} ]; do sleep 0.02; done; cat src >> out; echo end >> out\n")
    first = subprocess.Popen([sys.executable, "-m", "vinemake"], cwd=root,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(lines(marks)) == 1, "the first run's command to start")
    assert not (root / "out").exists()  # half-written, but not at the target path
    first.kill()
    first.wait()
    orphan = int(lines(marks)[0])
    wait_for(lambda: not alive(orphan), "the orphaned command to die with vinemake")
    second = subprocess.Popen([sys.executable, "-m", "vinemake"], cwd=root,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(lines(marks)) == 2, "the rerun's command to start")
    go.touch()
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert (root / "out").read_text() == "begin\nsrc\nend\n"
    assert os.listdir(root / ".vinemake" / "local") == []  # the killed run's shadow swept
    assert vinemake(root).stderr == "vinemake: nothing to do, 1 rule up to date\n"


def test_the_local_worker_and_its_command_die_with_a_killed_vinemake(tmp_path):
    """Found by bench/chaos.py (R1): the -T local worker outlived a kill -9 of vinemake by a
    minute, retrying a manager that was gone, its command still running and its run directory
    made again under .vinemake/ after the user had removed the workflow."""
    root, marks = tmp_path / "wf", tmp_path / "pids"
    root.mkdir()
    (root / "Vinefile").write_text(f"out:\n\techo \\$\\$ >> {marks}; sleep 600; echo x > out\n")
    run = subprocess.Popen([sys.executable, "-m", "vinemake"], cwd=root,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(lines(marks)) == 1, "the command to start on the local worker")
    workers = [int(p) for p in subprocess.run(["pgrep", "-P", str(run.pid)], text=True,
                                              capture_output=True).stdout.split()]
    assert len(workers) == 1
    run.kill()
    run.wait()
    command = int(lines(marks)[0])
    wait_for(lambda: not alive(workers[0]) and not alive(command),
             "the worker and its command to die with vinemake")
    assert os.listdir(root / ".vinemake" / "worker") == ["forever"]  # its run-PID dir gone


def test_what_a_local_command_started_is_killed_before_the_next_run_starts(tmp_path):
    """The parent-death signal kills the command's shell; what the shell started in the
    background survives it, and the next run kills it before running anything."""
    root, marks, go, late = tmp_path / "wf", tmp_path / "pids", tmp_path / "go", tmp_path / "late"
    root.mkdir()
    (root / "Vinefile").write_text(
        f"out:\n\tLOCAL (while [ ! -e {go} ]; do sleep 0.02; done; echo late >> {late}) & "
        f"echo \\$! >> {marks}; wait; echo done > out\n")
    first = subprocess.Popen([sys.executable, "-m", "vinemake"], cwd=root,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(lines(marks)) == 1, "the background command to start")
    first.kill()
    first.wait()
    background = int(lines(marks)[0])
    assert alive(background)  # an orphan now
    second = subprocess.Popen([sys.executable, "-m", "vinemake"], cwd=root,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: not alive(background), "the next run to kill the orphan")
    finally:
        if alive(background):  # the test failed: leave nothing behind
            os.kill(background, signal.SIGKILL)
        go.touch()
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert (root / "out").read_text() == "done\n"
    assert late.read_text() == "late\n"  # the rerun's own command; the orphan never wrote


def test_local_outputs_appear_only_when_the_command_succeeds_and_side_files_stay(tmp_path):
    (tmp_path / "in.txt").write_text("x\n")
    (tmp_path / "Vinefile").write_text(
        "sub/out.txt: in.txt\n\tLOCAL mkdir -p sub; cat in.txt > sub/out.txt; echo log > "
        "side.log; ls > listing\n\n"
        "bad.txt: in.txt\n\tLOCAL echo half > bad.txt; exit 1\n")
    proc = vinemake(tmp_path, "-k")
    no_traceback(proc)
    assert proc.returncode == 1
    assert (tmp_path / "sub" / "out.txt").read_text() == "x\n"
    assert (tmp_path / "side.log").read_text() == "log\n"  # undeclared: where it would be
    assert (tmp_path / "listing").read_text().split() == \
        ["Vinefile", "in.txt", "listing", "side.log", "sub"]
    assert not (tmp_path / "bad.txt").exists()
    assert (tmp_path / ".vinemake" / "failed" / "bad.txt" / "bad.txt").read_text() == "half\n"
    assert os.listdir(tmp_path / ".vinemake" / "local") == []


# -- 6 and 4: early cutoff by content, hand-edited outputs kept ---------------------------------

MID = "mid.txt:\n\tdate +%s%N > mid.txt\n\nfinal.txt: mid.txt\n\tcp mid.txt final.txt\n"


def ran(proc) -> list[str]:
    return sorted(line.split()[-1] for line in proc.stderr.splitlines() if " start " in line)


def test_a_rerun_with_new_bytes_reruns_what_reads_them_and_keeps_the_edit(tmp_path):
    (tmp_path / "Vinefile").write_text(MID)
    assert ran(vinemake(tmp_path)) == ["final.txt", "mid.txt"]
    made = (tmp_path / "mid.txt").read_text()
    (tmp_path / "mid.txt").write_text("edited by hand\n")
    proc = vinemake(tmp_path, "--cache-dir", str(tmp_path / "nostore"))  # nothing to restore
    assert ran(proc) == ["final.txt", "mid.txt"]
    assert (tmp_path / "final.txt").read_text() == (tmp_path / "mid.txt").read_text() != made
    kept = tmp_path / ".vinemake" / "edited" / "mid.txt"
    assert kept.read_text() == "edited by hand\n"
    assert ("vinemake: mid.txt was changed since vinemake made it: the changed copy is kept "
            f"as {kept}\n") in proc.stderr
    assert vinemake(tmp_path, "--cache-dir", str(tmp_path / "nostore")).stderr == \
        "vinemake: nothing to do, 2 rules up to date\n"


def test_a_touched_output_with_the_same_bytes_is_up_to_date(tmp_path):
    (tmp_path / "Vinefile").write_text(MID)
    vinemake(tmp_path)
    st = os.stat(tmp_path / "mid.txt")
    os.utime(tmp_path / "mid.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
    proc = vinemake(tmp_path)
    assert ran(proc) == [] and proc.returncode == 0
    assert not (tmp_path / ".vinemake" / "edited").exists()
    assert vinemake(tmp_path).stderr == "vinemake: nothing to do, 2 rules up to date\n"


def test_an_edited_output_the_store_still_holds_is_restored_and_nothing_reruns(tmp_path):
    store = tmp_path / "store"
    (tmp_path / "Vinefile").write_text(MID)
    vinemake(tmp_path, "--cache-dir", str(store))
    made = (tmp_path / "mid.txt").read_text()
    os.unlink(tmp_path / "mid.txt")  # edited the way editors save: a new file, not in place
    (tmp_path / "mid.txt").write_text("edited by hand\n")
    proc = vinemake(tmp_path, "--cache-dir", str(store))
    assert ran(proc) == []
    assert (tmp_path / "mid.txt").read_text() == made == (tmp_path / "final.txt").read_text()
    assert (tmp_path / ".vinemake" / "edited" / "mid.txt").read_text() == "edited by hand\n"


# -- 3: --clean never deletes what it did not make ---------------------------------------------

WHOLE = "whole:\n\tmkdir whole; echo w > whole/w.txt; echo v > whole/v.txt\n\nsingle.txt:\n" \
        "\techo s > single.txt\n"


@pytest.mark.parametrize("mode", ["all", "outputs"])
def test_clean_keeps_and_names_a_file_edited_inside_a_directory_output(tmp_path, mode):
    (tmp_path / "Vinefile").write_text(WHOLE)
    assert vinemake(tmp_path).returncode == 0
    with open(tmp_path / "whole" / "w.txt", "a") as f:
        f.write("edit\n")
    proc = vinemake(tmp_path, f"--clean={mode}")
    no_traceback(proc)
    assert (tmp_path / "whole" / "w.txt").read_text() == "w\nedit\n"
    assert "kept whole: its content changed since vinemake made it (whole/w.txt)\n" \
        in proc.stderr
    assert not (tmp_path / "single.txt").exists()


def test_clean_of_one_vinefile_leaves_another_s_outputs_in_the_same_directory(tmp_path):
    (tmp_path / "a.vf").write_text("a.txt:\n\techo a > a.txt\n")
    (tmp_path / "b.vf").write_text("b.txt:\n\techo b > b.txt\n")
    assert vinemake(tmp_path, "a.vf").returncode == 0
    assert vinemake(tmp_path, "b.vf").returncode == 0
    proc = vinemake(tmp_path, "--clean=all", "a.vf")
    no_traceback(proc)
    assert proc.stderr.startswith("removed a.txt\n")
    assert not (tmp_path / "a.txt").exists()
    assert (tmp_path / "b.txt").read_text() == "b\n"
    assert vinemake(tmp_path, "b.vf").stderr == "vinemake: nothing to do, 1 rule up to date\n"
    assert vinemake(tmp_path, "--clean=all", "b.vf").stderr.startswith("removed b.txt\n")
    assert not (tmp_path / "b.txt").exists()
    assert os.listdir(tmp_path / ".vinemake") == ["lock"]  # the last workflow's state went


# -- 1: a shared store is emptied only by `vinemake cache prune`, never under a running workflow

SHARED = "a.txt: in.txt\n\tcat in.txt in.txt > a.txt\n\nb.txt: a.txt\n\tcat a.txt a.txt > b.txt\n"


def workflow(path, text=SHARED):
    path.mkdir()
    (path / "in.txt").write_text("x\n")
    (path / "Vinefile").write_text(text)
    return path


def test_a_clean_in_one_workflow_never_empties_a_shared_store(tmp_path):
    store = str(tmp_path / "store")
    a, b = workflow(tmp_path / "a"), workflow(tmp_path / "b")
    assert ran(vinemake(a, "--cache-dir", store)) == ["a.txt", "b.txt"]
    first = vinemake(b, "--cache-dir", store)
    assert ran(first) == [] and "vinemake: ran 0, restored 2, up to date 0" in first.stderr
    proc = vinemake(b, "--clean", "--cache-dir", store)
    assert proc.stderr == (f"removed a.txt\nremoved b.txt\nkept the entries of the shared store "
                           f"{store}: other workflows may restore from it (evict with: vinemake "
                           f"cache prune)\n")
    os.unlink(a / "b.txt")
    assert ran(vinemake(a, "--cache-dir", store)) == []  # restored, not recomputed
    assert (a / "b.txt").read_text() == "x\n" * 4


def test_prune_evicts_by_age_and_size_but_never_what_a_running_workflow_holds(tmp_path):
    store, go = str(tmp_path / "store"), tmp_path / "go"
    a = workflow(tmp_path / "a")
    vinemake(a, "--cache-dir", store)
    keep = vinemake(tmp_path, "cache", "prune", "--cache-dir", store, "--older-than", "30d")
    assert keep.returncode == 0
    assert keep.stderr == (f"vinemake cache prune: removed 0 entries (0.0 MB) from {store}; "
                           "kept 2 (0.0 MB), 0 of them held by running workflows\n")
    # b restores a.txt and b.txt, then waits in a LOCAL rule while the store is pruned.
    b = workflow(tmp_path / "b", SHARED + f"c.txt: b.txt\n\tLOCAL while [ ! -e {go} ]; do "
                                          "sleep 0.02; done; cp b.txt c.txt\n")
    run = subprocess.Popen([sys.executable, "-m", "vinemake", "--cache-dir", store], cwd=b,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (b / "b.txt").exists(), "b's restore")
    held = vinemake(tmp_path, "cache", "prune", "--cache-dir", store, "--max-size", "0")
    assert held.stderr.endswith("kept 2 (0.0 MB), 2 of them held by running workflows\n")
    go.touch()
    assert run.wait(timeout=60) == 0, run.communicate()[1]
    gone = vinemake(tmp_path, "cache", "prune", "--cache-dir", store, "--max-size", "0")
    assert gone.stderr.startswith("vinemake cache prune: removed 3 entries")
    assert os.listdir(os.path.join(store, "leases")) == []


def test_bad_prune_options_are_usage_errors(tmp_path):
    proc = vinemake(tmp_path, "cache", "prune")
    assert proc.returncode == 2
    assert proc.stderr.endswith("Error: say what to remove: --older-than TIME, --max-size SIZE "
                                "or both\n")
    proc = vinemake(tmp_path, "cache", "prune", "--max-size", "lots")
    assert proc.returncode == 2 and "Invalid value for '--max-size': not a size" in proc.stderr
    proc = vinemake(tmp_path, "cache", "prune", "--older-than", "1x")
    assert proc.returncode == 2 and proc.stderr.endswith(
        "Error: Invalid value for '--older-than': not a duration: '1x' (use a number with s, "
        "m, h or d)\n")


def test_concurrent_writers_and_a_pruner_share_one_store(tmp_path):
    """Four workflows fill and restore from one store at once while it is pruned to nothing
    over and over: every output is right, and a rerun of each is correct too."""
    store = str(tmp_path / "store")
    os.mkdir(store)
    text = "".join(f"o{i}.txt: in.txt\n\tcat in.txt > o{i}.txt; echo {i} >> o{i}.txt\n\n"
                   for i in range(12))
    roots = [workflow(tmp_path / f"w{n}", text) for n in range(4)]
    runs = [subprocess.Popen([sys.executable, "-m", "vinemake", "--cache-dir", store], cwd=r,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for r in roots]
    prunes = 0
    while any(p.poll() is None for p in runs):
        proc = vinemake(tmp_path, "cache", "prune", "--cache-dir", store, "--max-size", "0")
        assert proc.returncode == 0, proc.stderr
        prunes += 1
    assert [p.wait() for p in runs] == [0, 0, 0, 0], [p.stderr.read() for p in runs]
    assert prunes >= 1
    for r in roots:
        for i in range(12):
            os.unlink(r / f"o{i}.txt")
    reruns = [subprocess.Popen([sys.executable, "-m", "vinemake", "--cache-dir", store], cwd=r,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
              for r in roots]
    assert [p.wait(timeout=120) for p in reruns] == [0, 0, 0, 0]
    for r in roots:
        assert [(r / f"o{i}.txt").read_text() for i in range(12)] == \
            [f"x\n{i}\n" for i in range(12)]


# -- 5: a target under a symbolic link that leads out of the workflow directory ----------------

@pytest.mark.parametrize("local", ["", "LOCAL "], ids=["remote", "local"])
def test_a_target_under_a_link_leading_outside_is_refused_before_anything_runs(tmp_path, local):
    root, outside = tmp_path / "wf", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "lnk")
    (root / "Vinefile").write_text(f"ok.txt:\n\techo ok > ok.txt\n\nlnk/x:\n\t{local}echo x > x\n")
    proc = vinemake(root)
    no_traceback(proc)
    assert proc.returncode == 2
    assert proc.stderr.startswith(
        f"Vinefile:4:1: target 'lnk/x' is outside the workflow directory: its real path is "
        f"{outside}/x (a symbolic link on the way leads out)\n")
    assert os.listdir(outside) == [] and not (root / "ok.txt").exists()


def test_a_link_made_during_the_run_is_refused_for_the_rules_after_it(tmp_path):
    root, outside = tmp_path / "wf", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "Vinefile").write_text(f"made:\n\tln -s {outside} made\n\n"
                                   "made/x: made\n\tLOCAL echo x > made/x\n")
    proc = vinemake(root)
    no_traceback(proc)
    assert proc.returncode == 1
    assert os.listdir(outside) == []
    info = (root / ".vinemake" / "failed" / quoted("made/x") / "INFO").read_text()
    assert f"reason: target 'made/x' is outside the workflow directory: its real path is " \
           f"{outside}/x" in info


def test_clean_never_removes_a_target_whose_real_path_is_outside(tmp_path):
    root, outside = tmp_path / "wf", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "Vinefile").write_text("d/x:\n\tmkdir -p d; echo x > d/x\n")
    assert vinemake(root).returncode == 0
    os.rename(root / "d", outside / "d")
    os.symlink(outside / "d", root / "d")
    proc = vinemake(root, "--clean")
    assert (outside / "d" / "x").read_text() == "x\n"
    assert f"kept d/x: target 'd/x' is outside the workflow directory: its real path is " \
           f"{outside}/d/x" in proc.stderr


# -- 7: the state directory deleted during a run -------------------------------------------------

def test_deleting_the_state_directory_mid_run_ends_the_run_clearly(tmp_path):
    """(That the lock survives the deletion is tests/test_lock.py's: this run stops within
    half a second of it, so a second run here would race its end.)"""
    root, go, marks = tmp_path / "wf", tmp_path / "go", tmp_path / "marks"
    root.mkdir()
    (root / "Vinefile").write_text(
        f"remote.txt:\n\techo r > remote.txt; echo r >> {marks}; "
        f"while [ ! -e {go} ]; do sleep 0.02; done\n\n"
        f"local.txt:\n\tLOCAL echo l > local.txt; echo l >> {marks}; "
        f"while [ ! -e {go} ]; do sleep 0.02; done\n")
    first = subprocess.Popen([sys.executable, "-m", "vinemake"], cwd=root,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(lines(marks)) == 2, "both commands to start")
    subprocess.run(["rm", "-rf", str(root / ".vinemake")], check=True)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 1
    assert err.endswith(f"vinemake: the state directory {root}/.vinemake was deleted during "
                        f"the run, and with it the record of what was built: stopped (run "
                        f"vinemake again; it remakes what it can no longer vouch for)\n")
    assert "Traceback" not in out + err
    go.touch()
    third = vinemake(root)
    no_traceback(third)
    assert third.returncode == 0, third.stderr
    assert (root / "remote.txt").read_text() == "r\n" and (root / "local.txt").read_text() == "l\n"


# -- 13: a full disk while vinemake writes its own state ------------------------------------------

@pytest.fixture
def full_disk(tmp_path):
    """A 1 MB tmpfs: a filesystem that really fills (root only)."""
    require(os.geteuid() == 0, "root, to mount a tmpfs")
    fs = tmp_path / "fs"
    fs.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(fs)], check=True)
    try:
        yield fs
    finally:
        subprocess.run(["umount", "-l", str(fs)], check=True)


def journal_lines(root) -> list[dict]:
    with open(root / ".vinemake" / "journal") as f:
        return [json.loads(line) for line in f]  # every line whole: none torn


def test_a_disk_filled_by_a_rule_ends_the_run_with_one_clear_message(tmp_path, full_disk):
    small = tmp_path / "small"  # outside the full disk: it decides what the rule writes
    (full_disk / "Vinefile").write_text(
        "a.txt:\n\techo a > a.txt\n\n"
        f"big.bin: a.txt\n\tLOCAL if [ -e {small} ]; then echo b > big.bin; else "
        "head -c 2000000 /dev/zero > big.bin; fi\n")
    proc = vinemake(full_disk)
    no_traceback(proc)
    assert proc.returncode == 1
    # Which write meets the full disk first (the rule's stderr kept, its INFO record, the
    # journal) depends on the order of small writes; the message is the same but for it.
    last = proc.stderr.splitlines()[-1]
    assert last.startswith("vinemake: cannot go on: ")
    assert last.endswith("No space left on device (free some space and run again)")
    journal_lines(full_disk)
    os.unlink(full_disk / ".vinemake" / "failed" / "big.bin" / "big.bin")
    small.touch()
    again = vinemake(full_disk)
    assert again.returncode == 0, again.stderr
    assert ran(again) == ["big.bin"]
    assert (full_disk / "big.bin").read_text() == "b\n"
    journal_lines(full_disk)


def test_a_disk_full_before_the_run_is_one_clear_message_and_nothing_torn(tmp_path, full_disk):
    (full_disk / "Vinefile").write_text("a.txt:\n\techo a > a.txt\n")
    assert vinemake(full_disk).returncode == 0
    (full_disk / "Vinefile").write_text("a.txt:\n\techo A > a.txt\n")
    pad = full_disk / "pad"
    subprocess.run(["sh", "-c", f"head -c 2000000 /dev/zero > {pad}"], check=False)
    proc = vinemake(full_disk)
    no_traceback(proc)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1].startswith("vinemake: cannot go on: ")
    assert proc.stderr.endswith(" No space left on device (free some space and run again)\n")
    journal_lines(full_disk)
    os.unlink(pad)
    again = vinemake(full_disk)
    assert again.returncode == 0, again.stderr
    assert (full_disk / "a.txt").read_text() == "A\n"
    assert vinemake(full_disk).stderr == "vinemake: nothing to do, 1 rule up to date\n"


def test_a_journal_append_on_a_full_disk_leaves_no_torn_line(full_disk):
    path = full_disk / "journal"
    journal = Journal(str(path))
    journal.open()
    journal.started("rule-1", "a")
    journal.sync()
    before = path.read_bytes()
    subprocess.run(["sh", "-c", f"head -c 2000000 /dev/zero > {full_disk / 'pad'}"],
                   check=False)
    for i in range(2000):  # more than the page left free, if any
        journal.started(f"rule-{i}", "x" * 100)
    with pytest.raises(OSError) as err:
        journal.close()
    assert (err.value.strerror, err.value.filename) == ("No space left on device", str(path))
    assert path.read_bytes() == before


def test_directories_made_in_a_shared_store_are_as_writable_as_the_store(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    os.chmod(store, 0o2775)  # a group's store: setgid, group-writable
    old = os.umask(0o022)
    try:
        a = workflow(tmp_path / "a")
        assert vinemake(a, "--cache-dir", str(store)).returncode == 0
        os.unlink(a / "b.txt")
        run = subprocess.Popen([sys.executable, "-m", "vinemake", "--cache-dir", str(store)],
                               cwd=a, stderr=subprocess.PIPE, text=True)
        assert run.wait(timeout=60) == 0, run.stderr.read()
    finally:
        os.umask(old)
    made = [d for d in os.listdir(store) if (store / d).is_dir()]
    assert "leases" in made and len(made) >= 3
    assert {oct((store / d).stat().st_mode & 0o7777) for d in made} == {"0o2775"}


def test_a_store_this_user_cannot_lease_in_is_not_restored_from_but_the_rule_runs(tmp_path):
    store = tmp_path / "store"
    a = workflow(tmp_path / "a")
    vinemake(a, "--cache-dir", str(store))
    # Root ignores modes, so the store is broken another way (no lease was made yet).
    (store / "leases").write_text("not a directory")
    os.unlink(a / "b.txt")
    proc = vinemake(a, "--cache-dir", str(store))
    no_traceback(proc)
    assert proc.returncode == 0 and ran(proc) == ["b.txt"]


def test_a_file_edited_inside_a_directory_output_is_kept_and_the_directory_remade(tmp_path):
    (tmp_path / "Vinefile").write_text(WHOLE)
    assert vinemake(tmp_path).returncode == 0
    with open(tmp_path / "whole" / "w.txt", "a") as f:
        f.write("edit\n")
    proc = vinemake(tmp_path)
    assert proc.returncode == 0
    kept = tmp_path / ".vinemake" / "edited" / "whole"
    assert f"vinemake: whole was changed since vinemake made it: the changed copy is kept " \
           f"as {kept}\n" in proc.stderr
    assert (kept / "w.txt").read_text() == "w\nedit\n"
    assert (tmp_path / "whole" / "w.txt").read_text() == "w\n"
    assert vinemake(tmp_path).stderr == "vinemake: nothing to do, 2 rules up to date\n"


def test_an_edit_in_place_in_one_workflow_never_reaches_another_sharing_its_store(tmp_path):
    store = str(tmp_path / "store")
    a, b = workflow(tmp_path / "a"), workflow(tmp_path / "b")
    vinemake(a, "--cache-dir", store)
    assert ran(vinemake(b, "--cache-dir", store)) == []  # restored
    with open(a / "b.txt", "a") as f:  # in place: the same inode as a's store entry
        f.write("edit\n")
    assert (b / "b.txt").read_text() == "x\n" * 4
    proc = vinemake(a, "--cache-dir", store)
    assert ran(proc) == ["b.txt"]  # the store's entry went with the edit: made again
    assert (a / "b.txt").read_text() == (b / "b.txt").read_text() == "x\n" * 4


def test_a_rule_waits_for_a_reader_that_other_bytes_upstream_may_make_run(tmp_path):
    """a is edited by hand and c's command changed: b (up to date by key) runs again once a
    comes out with other bytes, and c, which reads b, must wait for that, not start at once."""
    (tmp_path / "Vinefile").write_text(
        "a.txt:\n\tdate +%s%N > a.txt\n\nb.txt: a.txt\n\tcp a.txt b.txt\n\n"
        "c.txt: b.txt\n\tcp b.txt c.txt\n")
    vinemake(tmp_path)
    (tmp_path / "a.txt").write_text("edited\n")
    (tmp_path / "Vinefile").write_text(
        "a.txt:\n\tdate +%s%N > a.txt\n\nb.txt: a.txt\n\tcp a.txt b.txt\n\n"
        "c.txt: b.txt\n\tcp b.txt c.txt; true\n")
    proc = vinemake(tmp_path, "--cache-dir", str(tmp_path / "nostore"))
    assert proc.returncode == 0, proc.stderr
    assert ran(proc) == ["a.txt", "b.txt", "c.txt"]
    assert (tmp_path / "c.txt").read_text() == (tmp_path / "b.txt").read_text() == \
        (tmp_path / "a.txt").read_text()


def test_prune_refuses_a_directory_that_is_not_a_store_and_removes_nothing(tmp_path):
    project = tmp_path / "project"
    (project / "db").mkdir(parents=True)
    (project / "db" / "dbdump.sql").write_text("precious\n")  # its shard would be 'db'
    proc = vinemake(tmp_path, "cache", "prune", "--cache-dir", str(project), "--max-size", "0")
    no_traceback(proc)
    assert proc.returncode == 2
    assert proc.stderr.endswith(f"Error: Invalid value for --cache-dir: {project} is not a "
                                "vinemake store (it holds 'db/dbdump.sql')\n")
    assert (project / "db" / "dbdump.sql").read_text() == "precious\n"
    assert sorted(os.listdir(project)) == ["db"]  # not even a lock file left behind


def test_a_store_prune_cannot_lock_is_one_line_and_exit_1(tmp_path):
    store = tmp_path / "store"
    (store / ".lock").mkdir(parents=True)  # root ignores modes: break the store so
    proc = vinemake(tmp_path, "cache", "prune", "--cache-dir", str(store), "--max-size", "0")
    no_traceback(proc)
    assert proc.returncode == 1
    assert proc.stderr == f"Error: cannot go on: {store}/.lock: Is a directory\n"
