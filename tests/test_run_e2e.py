"""End to end through the real CLI, manager and worker: tiny projects, each run twice."""

import os
import random
import shutil
import signal
import subprocess
import sys

import pytest

from vinemake.core.filestate import FileState
from vinemake.core.journal import Journal

CHAIN = """\
a.txt: in.txt
\ttr a-z A-Z < in.txt > a.txt; echo a >> {log}

b.txt: a.txt
\tcat a.txt a.txt > b.txt; echo b >> {log}

c.txt: in.txt
\twc -c < in.txt > c.txt; echo c >> {log}

d.txt: b.txt c.txt
\tLOCAL cat b.txt c.txt > d.txt; echo d >> {log}
"""


def vinemake(root, *args, check=True, timeout=60):
    proc = subprocess.run([sys.executable, "-m", "vinemake", *args], cwd=root,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def started(proc) -> list[str]:
    """Rules the run started, from the plain (non-TTY) progress lines."""
    return [line.split()[-1] for line in proc.stderr.splitlines() if " start " in line]


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "wf"
    root.mkdir()
    log = tmp_path / "ran.log"
    (root / "in.txt").write_text("hello\n")
    (root / "Vinefile").write_text(CHAIN.format(log=log))
    return root, log


def test_second_run_does_nothing(project):
    root, log = project
    first = vinemake(root)
    assert sorted(started(first)) == ["a.txt", "b.txt", "c.txt", "d.txt"]
    assert (root / "d.txt").read_text() == "HELLO\nHELLO\n6\n"
    second = vinemake(root)
    assert second.stderr == "vinemake: nothing to do, 4 rules up to date\n"
    assert sorted(log.read_text().split()) == ["a", "b", "c", "d"]


def test_touch_reruns_nothing_and_content_change_reruns_dependents(project):
    root, _ = project
    vinemake(root)
    st = os.stat(root / "in.txt")
    os.utime(root / "in.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
    assert started(vinemake(root)) == []
    (root / "in.txt").write_text("bye\n")
    assert sorted(started(vinemake(root))) == ["a.txt", "b.txt", "c.txt", "d.txt"]
    assert (root / "d.txt").read_text() == "BYE\nBYE\n4\n"


def test_edited_command_reruns_it_and_dependents_reordering_reruns_nothing(project):
    root, log = project
    vinemake(root)
    text = (root / "Vinefile").read_text()
    (root / "Vinefile").write_text(text.replace("cat a.txt a.txt", "cat a.txt a.txt a.txt"))
    assert sorted(started(vinemake(root))) == ["b.txt", "d.txt"]
    blocks = (root / "Vinefile").read_text().strip().split("\n\n")
    (root / "Vinefile").write_text("# reordered\n\n\n" + "\n\n".join(reversed(blocks)) + "\n")
    assert started(vinemake(root)) == []


def test_explain_names_the_reason(project):
    root, _ = project
    vinemake(root)
    (root / "c.txt").unlink()
    proc = vinemake(root, "--explain")
    assert "vinemake explain: run c.txt: output 'c.txt' missing" not in proc.stderr
    assert "vinemake explain: restore c.txt: restored from cache (output 'c.txt' missing)" \
        in proc.stderr.splitlines()
    assert "vinemake explain: skip a.txt: outputs current" in proc.stderr.splitlines()


def test_failed_rule_exits_1_with_info_and_summary(tmp_path):
    (tmp_path / "Vinefile").write_text("ok.txt:\n\techo ok > ok.txt\n\n"
                                       "bad.txt: ok.txt\n\techo oops >&2; exit 3\n\n"
                                       "after.txt: bad.txt\n\ttouch after.txt\n")
    proc = vinemake(tmp_path, check=False)
    assert proc.returncode == 1
    assert "vinemake: ran 1, restored 0, up to date 0, failed 1 (bad.txt), not run 1" \
        in proc.stderr
    info = (tmp_path / ".vinemake" / "failed" / "bad.txt" / "INFO").read_text()
    assert "exit code: 3" in info.splitlines() and "oops" in info
    assert not (tmp_path / "bad.txt").exists() and not (tmp_path / "after.txt").exists()
    assert started(vinemake(tmp_path, check=False)) == ["bad.txt"]


def test_after_a_failure_nothing_more_starts_unless_keep_going(tmp_path):
    # Every rule is ready at once and submitted together; as with make, a failure without -k
    # starts nothing more: what had not started is withdrawn, what runs finishes.
    slow = "".join(f"s.{i}:\n\tsleep 1; touch s.{i}\n\n" for i in range(8))
    (tmp_path / "Vinefile").write_text("bad:\n\texit 3\n\n" + slow)
    proc = vinemake(tmp_path, "--cores", "2", check=False, timeout=120)
    made = sorted(p.name for p in tmp_path.glob("s.*"))
    assert proc.returncode == 1, proc.stderr
    assert len(made) <= 3, (made, proc.stderr)  # the one beside bad, a slot refilled at most
    assert f"failed 1 (bad), not run {8 - len(made)}" in proc.stderr
    proc = vinemake(tmp_path, "-k", "--cores", "2", check=False, timeout=120)
    assert proc.returncode == 1
    assert len(list(tmp_path.glob("s.*"))) == 8


def test_rule_bigger_than_any_worker_is_refused(tmp_path):
    (tmp_path / "Vinefile").write_text("@resources cores=512\nx:\n\techo > x\n")
    proc = vinemake(tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-3:] == [
        f"Vinefile:2:1: rule 'x' needs cores 512 but the largest worker offers {os.cpu_count()}",
        "x:", "^"]


def test_shared_cache_restores_a_fresh_copy_without_running(project, tmp_path):
    root, log = project
    cache = tmp_path / "shared"
    vinemake(root, "--cache-dir", str(cache))
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(root / "in.txt", copy)
    shutil.copy(root / "Vinefile", copy)
    before = log.read_text()
    proc = vinemake(copy, "--cache-dir", str(cache))
    assert started(proc) == [] and log.read_text() == before
    assert (copy / "d.txt").read_text() == (root / "d.txt").read_text()
    assert "restored 4" in proc.stderr


def test_clean_outputs_then_rerun_brings_them_back(project):
    root, _ = project
    vinemake(root)
    vinemake(root, "--clean=outputs")
    assert not (root / "d.txt").exists() and (root / "a.txt").exists()
    assert (root / "in.txt").exists()
    vinemake(root)
    assert (root / "d.txt").read_text() == "HELLO\nHELLO\n6\n"
    vinemake(root, "--clean=all")
    # only the workflow lock stays: an flock file, never stale, so never removed
    assert sorted(os.listdir(root)) == [".vinemake", "Vinefile", "in.txt"]
    assert os.listdir(root / ".vinemake") == ["lock"]


def _prev(i):
    return f"s{i - 1}.txt" if i else "in.txt"


SLOW = "".join(f"s{i}.txt: {_prev(i)}\n\tsleep 0.05; cat {_prev(i)} > s{i}.txt; "
               f"echo {i} >> s{i}.txt\n\n" for i in range(12))


@pytest.mark.slow
def test_kill_9_then_rerun_runs_only_incomplete_rules(tmp_path):
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "in.txt").write_text("x\n")
    (ref / "Vinefile").write_text(SLOW)
    vinemake(ref)
    rng = random.Random(7)
    resumed = []
    for trial, point in enumerate(rng.sample(range(2, 11), 3)):
        root = tmp_path / f"t{trial}"
        root.mkdir()
        shutil.copy(ref / "in.txt", root)
        shutil.copy(ref / "Vinefile", root)
        proc = subprocess.Popen([sys.executable, "-m", "vinemake"], cwd=root,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        for line in proc.stderr:  # kill -9 once rule s<point> has started
            if line.rstrip().endswith(f"start   s{point}.txt"):
                break
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        done = {r.name for r in Journal(str(root / ".vinemake" / "journal")).state.done.values()}
        again = vinemake(root)
        assert not set(started(again)) & done
        cached = [ln.split()[-1] for ln in again.stderr.splitlines() if " cached " in ln]
        # Finished but not yet journaled at the kill: their outputs come back from the store.
        assert sorted(started(again) + cached + sorted(done)) == sorted(
            f"s{i}.txt" for i in range(12))
        resumed.append(len(done))
        for i in range(12):
            assert (root / f"s{i}.txt").read_text() == (ref / f"s{i}.txt").read_text()
    assert max(resumed) > 0  # some run was cut after work was recorded, and kept it


def test_sigterm_cancels_and_exits_143(tmp_path):
    (tmp_path / "Vinefile").write_text("x:\n\tsleep 30; touch x\n")
    proc = subprocess.Popen([sys.executable, "-m", "vinemake"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # plain progress lines: wait until the rule is running
        if " start " in line:
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 143
    assert "(interrupted)" in err
    assert not (tmp_path / "x").exists()


def test_dry_run_prints_only_what_would_run_and_explain_prints_all(project):
    import io

    from vinemake.core.graph import BuildGraph
    from vinemake.face.options import RunOptions
    from vinemake.face.run import dry_run
    from vinemake.language.parser import parse_file

    root, log = project
    vinemake(root)
    (root / "c.txt").write_text("changed by hand\n")
    wf = parse_file(str(root / "Vinefile"))
    graph = BuildGraph.build(wf, str(root))
    out = io.StringIO()
    assert dry_run(wf, graph, RunOptions(vinefile=wf.path, root=str(root)), out) == 0
    text = out.getvalue()
    assert "#   why: run, output 'c.txt' modified since it was built\n" in text
    assert [line for line in text.splitlines() if line.startswith("#   why")] == [
        "#   why: run, output 'c.txt' modified since it was built"]
    out = io.StringIO()
    dry_run(wf, graph, RunOptions(vinefile=wf.path, root=str(root), explain=True), out)
    assert [line for line in out.getvalue().splitlines() if line.startswith("#   why")] == [
        "#   why: skip, outputs current", "#   why: skip, outputs current",
        "#   why: run, output 'c.txt' modified since it was built",
        "#   why: skip, outputs current"]
    assert (root / "c.txt").read_text() == "changed by hand\n"
    assert sorted(log.read_text().split()) == ["a", "b", "c", "d"]


def test_temp_gc_and_subworkflow_then_nothing_to_do(tmp_path):
    (tmp_path / "in.txt").write_text("data\n")
    (tmp_path / "sub.vf").write_text("sub.out: in.txt\n\ttr a-z A-Z < in.txt > sub.out\n")
    (tmp_path / "Vinefile").write_text(
        "@temp\nt.txt: in.txt\n\tcat in.txt in.txt > t.txt\n\n"
        "mid.txt: t.txt\n\twc -l < t.txt > mid.txt\n\n"
        "final.txt: mid.txt\n\tcat mid.txt > final.txt\n\n"
        "sub.out: sub.vf in.txt\n\tMAKEFLOW sub.vf\n")
    vinemake(tmp_path, "-g", "ref_cnt")
    assert (tmp_path / "final.txt").read_text().strip() == "2"
    assert (tmp_path / "sub.out").read_text() == "DATA\n"
    assert not (tmp_path / "t.txt").exists()  # @temp: stays on the worker
    assert not (tmp_path / "mid.txt").exists()  # collected after its last consumer
    assert vinemake(tmp_path).stderr == "vinemake: nothing to do, 4 rules up to date\n"
    (tmp_path / "final.txt").unlink()
    again = vinemake(tmp_path, "--explain")
    assert "vinemake explain: run mid.txt: intermediate 't.txt' needed by 'final.txt'" \
        not in again.stderr  # final.txt comes back from the store; nothing upstream reruns
    assert started(again) == [] and (tmp_path / "final.txt").read_text().strip() == "2"


def test_unusable_cache_dir_is_an_input_error(project, tmp_path):
    root, _ = project
    (tmp_path / "afile").write_text("")
    proc = vinemake(root, "--cache-dir", str(tmp_path / "afile" / "cache"), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith(f"--cache-dir {tmp_path}/afile/cache: Not a directory")


def test_clean_run_leaves_a_snapshot_that_skips_parsing_until_something_changes(project):
    import io

    from vinemake.face.options import RunOptions
    from vinemake.face.run import nothing_to_do

    root, _ = project
    options = RunOptions(vinefile=str(root / "Vinefile"), root=str(root))
    assert not nothing_to_do(options, io.StringIO())
    vinemake(root)
    out = io.StringIO()
    assert nothing_to_do(options, out)  # the sources' ctime, moved by the sandbox links, kept
    assert out.getvalue() == "vinemake: nothing to do, 4 rules up to date\n"
    memo = FileState(str(root / ".vinemake" / "filestate"))
    memo.key(str(root / "in.txt"))
    assert memo.reads == 0
    assert not nothing_to_do(RunOptions(vinefile=options.vinefile, root=str(root),
                                        targets=("a.txt",)), out)
    (root / "in.txt").write_text("changed\n")
    assert not nothing_to_do(options, out)
    vinemake(root)
    assert nothing_to_do(options, out)
    (root / "Vinefile").write_text((root / "Vinefile").read_text() + "\n# a comment\n")
    assert not nothing_to_do(options, out)
    vinemake(root)
    vinemake(root, "--clean=outputs")
    assert not nothing_to_do(options, out)


def test_library_call_reruns_when_the_library_changes(tmp_path):
    (tmp_path / "model.py").write_text(
        "def double(src, dst):\n    with open(src) as f, open(dst, 'w') as g:\n"
        "        g.write(f.read() * 2)\n")
    (tmp_path / "a.txt").write_text("hi\n")
    (tmp_path / "Vinefile").write_text("@library ml slots=2\n: model.py\n"
                                       "\tpython3 -m vinemake.library model.py\n\n"
                                       "@call ml\nb.txt: a.txt\n\tdouble a.txt b.txt\n")
    vinemake(tmp_path)
    assert (tmp_path / "b.txt").read_text() == "hi\nhi\n"
    assert started(vinemake(tmp_path)) == []
    (tmp_path / "model.py").write_text((tmp_path / "model.py").read_text().replace("2", "3"))
    again = vinemake(tmp_path, "--explain")
    assert "vinemake explain: run b.txt: library changed" in again.stderr.splitlines()
    assert (tmp_path / "b.txt").read_text() == "hi\nhi\nhi\n"


def test_keep_intermediates_remote_brings_back_only_workflow_outputs(project):
    root, _ = project
    vinemake(root, "--keep-intermediates-remote")
    assert not (root / "a.txt").exists()  # read only by b.txt's rule, on a worker
    assert (root / "b.txt").exists() and (root / "c.txt").exists()  # read by a LOCAL rule
    assert (root / "d.txt").read_text() == "HELLO\nHELLO\n6\n"
    again = vinemake(root, "--keep-intermediates-remote")
    assert again.stderr == "vinemake: nothing to do, 4 rules up to date\n"


def test_a_temp_output_read_by_a_local_rule_reaches_it_and_a_rerun_does_nothing(tmp_path):
    root = tmp_path / "wf"
    root.mkdir()
    (root / "in.txt").write_text("one\ntwo\n")
    (root / "Vinefile").write_text("@temp\nmid.txt: in.txt\n\tcat in.txt in.txt > mid.txt\n\n"
                                   "out.txt: mid.txt\n\tLOCAL wc -l < mid.txt > out.txt\n")
    first = vinemake(root)
    assert sorted(started(first)) == ["mid.txt", "out.txt"]
    assert (root / "out.txt").read_text().strip() == "4"
    os.unlink(root / ".vinemake" / "uptodate")  # past the snapshot: the plan itself decides
    assert vinemake(root).stderr == "vinemake: nothing to do, 2 rules up to date\n"


def test_a_made_subworkflow_that_runs_its_parent_stops_one_level_down(tmp_path):
    # sub.vf does not exist before the run, so only the child can see the loop: it refuses
    # to start, naming the chain, and the parent's rule fails.
    (tmp_path / "Vinefile").write_text(
        "sub.vf:\n\tprintf 'again:\\\\n\\\\tMAKEFLOW Vinefile\\\\n' > sub.vf\n"
        "out: sub.vf\n\tMAKEFLOW sub.vf\n")
    proc = vinemake(tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr
    info = (tmp_path / ".vinemake" / "failed" / "out" / "INFO").read_text()
    assert ("sub.vf:2:2: sub-workflow loop: Vinefile runs sub.vf runs Vinefile\n"
            "\tMAKEFLOW Vinefile\n\t^\n") in info


@pytest.mark.parametrize("targets", ["mydir mydir/1.txt", "mydir/1.txt mydir",
                                     "mydir/1.txt mydir mydir/sub mydir/sub/2.txt",
                                     # outputs that go through the worker's cache, as remote
                                     # workers' do, instead of being renamed into place
                                     "@cache forever\nmydir mydir/1.txt"])
def test_a_directory_and_files_inside_it_are_targets_of_one_rule(tmp_path, targets):
    (tmp_path / "Vinefile").write_text(
        f"{targets}:\n\tmkdir -p mydir/sub && echo hi > mydir/1.txt && echo 2 > mydir/sub/2.txt\n"
        "list.txt: mydir\n\tfind mydir | sort > list.txt\n"
        "one.txt: mydir/1.txt\n\tcp mydir/1.txt one.txt\n")
    vinemake(tmp_path)
    assert (tmp_path / "list.txt").read_text() == \
        "mydir\nmydir/1.txt\nmydir/sub\nmydir/sub/2.txt\n"
    assert (tmp_path / "one.txt").read_text() == "hi\n"
    assert sorted(os.listdir(tmp_path / "mydir")) == ["1.txt", "sub"]
    assert started(vinemake(tmp_path)) == []


# The command's parent is the worker: its command line, then its parent's pid.
WHO = ('who: in\n\ttr "\\\\0" " " < /proc/\\$PPID/cmdline > who; echo >> who; '
       'grep ^PPid: /proc/\\$PPID/status >> who\n')


def runs_on_a_worker_forked_from_vinemake_logging_on_its_own(root) -> None:
    """A run of WHO's rule in `root`, its worker a fork of vinemake itself (common/forked.py):
    the command's parent (the worker) has vinemake's command line and vinemake as its parent,
    and vinemake's -o debug file gets vinemake's lines only, as with an exec'd worker."""
    argv = [sys.executable, "-m", "vinemake", "-d", "all", "-o", "debug.log"]
    run = subprocess.Popen(argv, cwd=root, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    cmdline, ppid = (root / "who").read_text().splitlines()
    assert cmdline == " ".join(argv) + " "
    assert ppid.split() == ["PPid:", str(run.pid)]
    logged = (root / "debug.log").read_text().splitlines()
    assert logged and all(f" vinemake[{run.pid}] vinemake." in line for line in logged)
    assert "worker local joined from 127.0.0.1 (same host)" in "\n".join(logged)


def built_then_changed(root) -> None:
    """WHO's rule built in `root`, then its input changed: a rebuild has it to run again."""
    (root / "Vinefile").write_text(WHO)
    (root / "in").write_text("1\n")
    vinemake(root)
    (root / "in").write_text("2\n")


def test_a_first_build_runs_on_a_worker_forked_from_vinemake_logging_on_its_own(tmp_path):
    # The standby worker of a first build, forked before the workflow is read.
    (tmp_path / "Vinefile").write_text(WHO)
    (tmp_path / "in").write_text("1\n")
    runs_on_a_worker_forked_from_vinemake_logging_on_its_own(tmp_path)


def test_a_rebuild_that_runs_a_rule_forks_its_worker_once_the_plan_says_so(tmp_path):
    # No standby ahead on a rebuild (its plan may run nothing): the worker is forked from
    # vinemake as the manager starts it, not a new interpreter.
    built_then_changed(tmp_path)
    runs_on_a_worker_forked_from_vinemake_logging_on_its_own(tmp_path)


def test_a_rebuild_in_a_large_vinemake_starts_a_new_worker_interpreter(tmp_path):
    # Above the size limit a fork would hold (and copy) vinemake's pages while it lives.
    built_then_changed(tmp_path)
    program = ("import vinemake.backends.local as local; local._FORK_LIMIT_MB = 0; "
               "from vinemake.face.cli import main; main()")
    run = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    cmdline, _ = (tmp_path / "who").read_text().splitlines()
    assert cmdline.startswith(f"{sys.executable} -m vinemake.worker.cli 127.0.0.1 ")
