"""Tasks held on a worker for the tasks that make their inputs (Task.after): real worker
processes over TCP, and the worker's bookkeeping (vinemake/worker/holding.py) on its own."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import threading

import test_manager
from test_manager import task, wait_for

from vinemake.common.spec import Resources
from vinemake.common.task import Task
from vinemake.core.events import read_events, runs
from vinemake.core.statedir import StateDir
from vinemake.worker.holding import BACK, START, WAIT, Holds

cluster = test_manager.cluster  # the fixture: a manager here, real worker processes


def gated(tmp_path, i, name, outputs=(), inputs=(), **kw):
    """Task `i`: touches started.NAME, waits for gate.NAME, then writes `name` (its output)."""
    command = (f"touch {tmp_path}/started.{name}; while [ ! -e {tmp_path}/gate.{name} ]; do "
               f"sleep 0.01; done; cat {' '.join(s for _, s, *_ in inputs) or '/dev/null'} "
               f"> {name}; echo {name} >> {name}")
    return task(i, command, inputs=inputs,
                outputs=outputs or [(f"out-{name}", name, str(tmp_path / name))], **kw)


def reader(tmp_path, i, name, of, **kw):
    """Task `i` reading the output of the task that makes `of`, held for task `after`."""
    return gated(tmp_path, i, name, inputs=[(f"out-{of}", of, str(tmp_path / of))], **kw)


def blocked(c):
    """Block the manager's loop until the returned event is set: it then sends nothing."""
    stop, inside = threading.Event(), threading.Event()

    def hold():
        inside.set()
        stop.wait(60)

    c.m.mailbox.post(hold)
    wait_for(inside.is_set, "the manager's loop to block")
    return stop


def held_chain(c, tmp_path, p):
    """Submit `p` (task 1, making `a`), task 2 reading `a` and task 3 reading task 2's output,
    each held for the one before; (task 2, task 3, the worker) once both are held there."""
    d = reader(tmp_path, 2, "b", "a", after=(1,))
    e = reader(tmp_path, 3, "c", "b", after=(2,))
    for t in (p, d, e):
        c.m.submit(t)
    w = c.m.workers["w1"]
    wait_for(lambda: sorted(w.held) == [2, 3], "tasks 2 and 3 to be held on w1")
    return d, e, w


def test_a_held_task_starts_on_the_worker_when_its_producer_succeeds(cluster, tmp_path):
    c = cluster()
    c.worker("w1", cores=2)
    p = gated(tmp_path, 1, "a")
    d, e, w = held_chain(c, tmp_path, p)
    assert w.held == {2: {1}, 3: {2}}
    assert w.free.amounts()[0] == 1.0  # held tasks take no core
    assert not (tmp_path / "started.b").exists()
    # With the manager unable to send anything, the worker starts 2, then 3, by itself.
    go = blocked(c)
    (tmp_path / "gate.a").touch()
    wait_for((tmp_path / "started.b").exists, "the worker to start task 2 by itself")
    (tmp_path / "gate.b").touch()
    wait_for((tmp_path / "started.c").exists, "the worker to start task 3 by itself")
    go.set()
    (tmp_path / "gate.c").touch()
    assert [r.status for r in c.collect(p, d, e)] == ["ok", "ok", "ok"]
    assert (tmp_path / "c").read_text() == "a\nb\nc\n"
    assert (w.held, c.m.running_total, w.free.amounts()[0]) == ({}, 0, 2.0)


def test_a_held_task_takes_no_slot_on_the_worker_until_it_is_released(cluster, tmp_path):
    # One core for the producer, one free: the held task does not take it, another does.
    c = cluster(worker_queue=0)
    c.worker("w1", cores=2)
    p = gated(tmp_path, 1, "a")
    d = reader(tmp_path, 2, "b", "a", after=(1,))
    other = gated(tmp_path, 3, "x")
    c.m.submit(p)
    c.m.submit(d)
    wait_for(lambda: 2 in c.m.workers["w1"].held, "task 2 to be held on w1")
    c.m.submit(other)
    wait_for((tmp_path / "started.x").exists, "task 3 to start beside task 1")
    assert not (tmp_path / "started.b").exists()
    (tmp_path / "gate.a").touch()
    wait_for((tmp_path / "started.b").exists, "task 2 to start in task 1's slot")
    for name in "bx":
        (tmp_path / f"gate.{name}").touch()
    assert [r.status for r in c.collect(p, d, other)] == ["ok", "ok", "ok"]


def test_a_failed_producer_sends_its_held_tasks_back_unstarted(cluster, tmp_path):
    c = cluster()
    c.worker("w1", cores=2)
    p = task(1, f"while [ ! -e {tmp_path}/gate ]; do sleep 0.01; done; exit 3",
             outputs=[("out-a", "a", str(tmp_path / "a"))])
    d, e, w = held_chain(c, tmp_path, p)
    (tmp_path / "gate").touch()
    rp, rd, re_ = c.collect(p, d, e)
    assert (rp.status, rp.exit_code) == ("failed", 3)
    assert [(r.status, r.reason) for r in (rd, re_)] == [
        ("held_back", "not started: a task it waited for did not succeed here")] * 2
    assert not list(tmp_path.glob("started.*"))
    assert (w.held, c.m.running_total, w.free.amounts()[0]) == ({}, 0, 2.0)


def test_a_task_held_on_a_lost_worker_comes_back_and_its_producer_runs_again(cluster,
                                                                            tmp_path):
    c = cluster()
    c.worker("w1")
    p = gated(tmp_path, 1, "a")
    d = reader(tmp_path, 2, "b", "a", after=(1,))
    c.m.submit(p)
    c.m.submit(d)
    wait_for(lambda: 2 in c.m.workers["w1"].held, "task 2 to be held on w1")
    wait_for((tmp_path / "started.a").exists, "task 1 to start on w1")
    c.worker("w2")
    os.kill(c.procs["w1"].pid, signal.SIGKILL)
    rd, = c.collect(d)
    assert (rd.status, rd.reason) == ("held_back", "not started: lost with worker w1")
    (tmp_path / "gate.a").touch()
    rp, = c.collect(p)
    assert (rp.status, rp.worker) == ("ok", "w2")
    assert not (tmp_path / "started.b").exists()


def test_a_task_is_held_only_where_all_it_waits_for_runs(cluster, tmp_path):
    c = cluster()
    c.worker("w1")
    c.worker("w2")
    p1, p2 = gated(tmp_path, 1, "a"), gated(tmp_path, 2, "b")
    both = gated(tmp_path, 3, "c", inputs=[("out-a", "a", str(tmp_path / "a")),
                                           ("out-b", "b", str(tmp_path / "b"))], after=(1, 2))
    for t in (p1, p2, both):
        c.m.submit(t)
    r, = c.collect(both)  # its producers run on two workers: it waits for them in the engine
    assert (r.status, r.reason) == (
        "held_back", "not held: the tasks it waits for are not all running on one worker")
    (tmp_path / "gate.a").touch()
    (tmp_path / "gate.b").touch()
    assert [r.status for r in c.collect(p1, p2)] == ["ok", "ok"]
    # Ended, even well, they hold nothing back: the engine submits it when it has their
    # results (their outputs delivered), as an ordinary task.
    del c.results[3]
    r, = c.run(both)
    assert (r.status, r.reason) == (
        "held_back", "not held: the tasks it waits for are not all running on one worker")
    (tmp_path / "gate.c").touch()
    del c.results[3]
    r, = c.run(dataclasses.replace(both, after=()))
    assert r.status == "ok" and (tmp_path / "c").read_text() == "a\nb\nc\n"


def test_a_task_waits_in_the_queue_behind_its_producer_then_is_held_where_it_goes(cluster,
                                                                                 tmp_path):
    c = cluster(worker_queue=0)
    c.worker("w1", cores=1)
    first = gated(tmp_path, 1, "x")
    p = gated(tmp_path, 2, "a")
    d = reader(tmp_path, 3, "b", "a", after=(2,))
    for t in (first, p, d):
        c.m.submit(t)
    wait_for((tmp_path / "started.x").exists, "task 1 to start")
    assert ([t.id for t in c.m.queue], c.m.workers["w1"].held) == ([2, 3], {})
    (tmp_path / "gate.x").touch()
    wait_for(lambda: c.m.workers["w1"].held == {3: {2}}, "task 3 to be held for task 2")
    (tmp_path / "gate.a").touch()
    (tmp_path / "gate.b").touch()
    assert [r.status for r in c.collect(first, p, d)] == ["ok", "ok", "ok"]


def test_a_held_task_runs_on_a_remote_worker_from_its_cache(cluster, tmp_path):
    # The producer's output is in that worker's cache, not at a path here: the held task
    # links it from there, and both outputs come back over the wire.
    c = cluster()
    c.worker("w1", 2, 1000, 1000, "--as-remote")
    p = gated(tmp_path, 1, "a")
    d = reader(tmp_path, 2, "b", "a", after=(1,))
    c.m.submit(p)
    c.m.submit(d)
    wait_for(lambda: 2 in c.m.workers["w1"].held, "task 2 to be held on w1")
    (tmp_path / "gate.a").touch()
    (tmp_path / "gate.b").touch()
    assert [r.status for r in c.collect(p, d)] == ["ok", "ok"]
    assert (tmp_path / "b").read_text() == "a\nb\n"
    assert [(t["source"], t["dest"]) for t in c.transfers()] == [("w1", "manager")] * 2


def test_withdrawing_after_a_failure_sends_held_tasks_back(cluster, tmp_path):
    # A failure that ends the run (no -k): what is held goes back as never submitted, not
    # "withdrawn" (the engine counts those as submitted and taken back).
    c = cluster()
    c.worker("w1", cores=2)
    stopper = task(9, f"while [ ! -e {tmp_path}/gate ]; do sleep 0.01; done; exit 1",
                   stops_run=True)
    p = gated(tmp_path, 1, "a")
    d = reader(tmp_path, 2, "b", "a", after=(1,))
    for t in (stopper, p, d):
        c.m.submit(t)
    wait_for(lambda: 2 in c.m.workers["w1"].held, "task 2 to be held on w1")
    (tmp_path / "gate").touch()
    rs, rd = c.collect(stopper, d)
    assert (rs.status, rd.status, rd.reason) == (
        "failed", "held_back", "not started: an earlier rule failed")
    (tmp_path / "gate.a").touch()
    assert c.collect(p)[0].status == "ok"
    assert not (tmp_path / "started.b").exists()


def test_a_held_task_withdrawn_as_it_ran_to_its_end_leaves_nothing_and_stays_withdrawn(
        cluster, tmp_path):
    # The run's end withdraws task 2, held on w1 as far as the manager knows, while on w1
    # what it waited for ended and it ran to its end (the manager has not read that yet).
    # The engine was told "held_back": the run that did happen must not count later, nor
    # leave its output at its path unrecorded.
    c = cluster()
    c.worker("w1", cores=2)
    p = gated(tmp_path, 1, "a")
    d = reader(tmp_path, 2, "b", "a", after=(1,))
    c.m.submit(p)
    c.m.submit(d)
    wait_for(lambda: 2 in c.m.workers["w1"].held, "task 2 to be held on w1")
    stop, inside = threading.Event(), threading.Event()

    def hold_then_withdraw():  # on the manager's loop: it reads nothing from w1 meanwhile
        inside.set()
        stop.wait(60)
        c.m._withdraw()

    c.m.mailbox.post(hold_then_withdraw)
    wait_for(inside.is_set, "the manager's loop to block")
    (tmp_path / "gate.a").touch()
    (tmp_path / "gate.b").touch()
    wait_for((tmp_path / "b").exists, "task 2 to run to its end on w1")
    stop.set()
    rp, rd = c.collect(p, d)
    assert (rp.status, rd.status) == ("ok", "held_back")
    wait_for(lambda: not (tmp_path / "b").exists(), "task 2's output to be removed", 10)
    assert [r.task_id for r in c.m.wait(0.5)] == []  # and task 2 reported once
    assert c.results[2].status == "held_back"


def test_a_command_started_as_a_slot_frees_is_reported_while_it_runs(cluster, tmp_path):
    # Its start may wait a moment on the worker for an outcome to leave with (the command
    # before it died of SIGTERM here, so its outcome waits to learn whether the worker is
    # stopping): it still reaches the manager while the command runs.
    c = cluster()
    c.worker("w1", cores=1)
    first = task(1, "kill -TERM $$")
    second = gated(tmp_path, 2, "b")
    for t in (first, second):
        c.m.submit(t)
    wait_for(lambda: 2 in c.m._started, "task 2's start")
    assert not (tmp_path / "b").exists()  # still running: its gate is closed
    (tmp_path / "gate.b").touch()
    assert [r.status for r in c.collect(first, second)] == ["signaled", "ok"]


# --- whole runs -----------------------------------------------------------------------------

def vinemake(root, *args):
    return subprocess.run([sys.executable, "-m", "vinemake", *args], cwd=root,
                          capture_output=True, text=True, timeout=120)


def chain_file(root, n, first="") -> None:
    """c.0 ... c.N-1, each reading the one before; `first` runs before c.0's command."""
    (root / "Vinefile").write_text("".join(
        f"c.{i}: {f'c.{i - 1}' if i else ''}\n\t{first if not i else ''}"
        f"{f'cat c.{i - 1} > c.{i}; ' if i else ''}echo {i} >> c.{i}\n\n" for i in range(n)))


def record(root):
    return read_events(StateDir(str(root)).events(runs(str(root))[-1]))


def test_a_chain_runs_each_rule_held_for_the_one_before_and_says_so_in_order(tmp_path):
    chain_file(tmp_path, 4)
    proc = vinemake(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "c.3").read_text() == "0\n1\n2\n3\n"
    # each start after the end of the rule it read, though the worker did not wait for it
    *lines, last = proc.stderr.splitlines()
    assert [re.sub(r" \(.*\)$", "", line[9:]) for line in lines] == [
        "4 rules to run, 0 to restore, 0 up to date",
        *(f"{what}   c.{i}" if what == "start" else f"{what}    c.{i}"
          for i in range(4) for what in ("start", "done"))]
    assert last.startswith("vinemake: ran 4, restored 0, up to date 0 in ")
    events = record(tmp_path)
    assert [(e["rule"], e.get("after")) for e in events if e["ev"] == "submit"] == [
        (0, None), (1, [0]), (2, [1]), (3, [2])]
    assert vinemake(tmp_path).stderr == "vinemake: nothing to do, 4 rules up to date\n"


def test_a_kill_while_rules_are_held_then_a_rerun_redoes_only_what_ran(tmp_path):
    gate = tmp_path / "gate"
    root = tmp_path / "wf"
    root.mkdir()
    chain_file(root, 4, first=f"touch {tmp_path}/started; while [ ! -e {gate} ]; do "
                              "sleep 0.01; done; ")
    run = subprocess.Popen([sys.executable, "-m", "vinemake"], cwd=root,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for((tmp_path / "started").exists, "c.0 to start")
    wait_for(lambda: runs(str(root)) and any(
        e["ev"] == "submit" and e.get("after") == [1] for e in record(root)),
        "c.2 to be submitted ahead (and recorded)")
    run.kill()  # kill -9 of vinemake: its worker and c.0's command die with it
    run.wait()
    killed = record(root)
    assert {e["rule"] for e in killed if e["ev"] == "start"} == {0}
    assert not any(e["ev"] == "end" for e in killed)
    gate.touch()
    again = vinemake(root)
    assert again.returncode == 0, again.stderr
    plans = [(e["label"], e["reason"]) for e in record(root) if e["ev"] == "plan"]
    # only c.0 ran (and was cut): the held rules never started, and say so
    assert plans == [("c.0", "interrupted last time"), ("c.1", "never built"),
                     ("c.2", "never built"), ("c.3", "never built")]
    assert (root / "c.3").read_text() == "0\n1\n2\n3\n"
    assert vinemake(root).stderr == "vinemake: nothing to do, 4 rules up to date\n"


def empty_first_time(root) -> None:
    """A 4-rule chain whose first rule makes an empty c.0 on its first run only."""
    chain_file(root, 4)
    vinefile = root / "Vinefile"
    vinefile.write_text(vinefile.read_text().replace(
        "echo 0 >> c.0", f"if [ -e {root}/again ]; then echo 0 > c.0; "
                         f"else touch {root}/again c.0; fi", 1))


def test_rules_run_ahead_on_an_output_refused_after_leave_nothing_at_their_paths(tmp_path):
    # -z refuses c.0's empty output once the worker has started the rules held for it: what
    # they made from it is not theirs to keep, and a failed run leaves no output behind it.
    empty_first_time(tmp_path)
    failed = vinemake(tmp_path, "-z")
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[-1].startswith(
        "vinemake: ran 0, restored 0, up to date 0, failed 1 (c.0), not run 3 in ")
    assert list(tmp_path.glob("c.*")) == []
    again = vinemake(tmp_path, "-z")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "c.3").read_text() == "0\n1\n2\n3\n"


def test_rules_run_ahead_on_a_refused_output_run_again_on_its_retry(tmp_path):
    empty_first_time(tmp_path)
    proc = vinemake(tmp_path, "-z", "-r", "1")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "c.3").read_text() == "0\n1\n2\n3\n"
    assert vinemake(tmp_path, "-z").stderr == "vinemake: nothing to do, 4 rules up to date\n"


def test_a_rule_writing_under_an_output_being_made_waits_for_it_to_be_made(tmp_path):
    # Found by bench/chaos.py (R7): `made` turned out a link leading out, and `made/x`,
    # handed over while `made` ran, was written through it before anything could refuse it.
    outside, root = tmp_path / "outside", tmp_path / "wf"
    outside.mkdir()
    root.mkdir()
    (root / "Vinefile").write_text(f"made:\n\tln -s {outside} made\n\n"
                                   "made/x: made\n\techo x > made/x\n")
    proc = vinemake(root)
    assert proc.returncode == 1
    assert f"target 'made/x' is outside the workflow directory: its real path is " \
           f"{outside}/x (a symbolic link on the way leads out)" in proc.stderr
    assert os.listdir(outside) == []
    assert [(e["rule"], e.get("after")) for e in record(root) if e["ev"] == "submit"] == [
        (0, None)]


# --- the worker's bookkeeping ---------------------------------------------------------------

def held(i, *after):
    return Task(id=i, rule_key=f"rule-{i}", name=f"t{i}", command="true", after=after,
                resources=Resources(cores=1))


def test_holds_release_a_task_when_all_it_waits_for_succeeded():
    h = Holds()
    for i in (1, 2, 3):
        h.began(i)
    assert h.hold(held(3, 1, 2), "p3") == WAIT
    assert h.ended(1, True) == ([], [])
    assert h.ended(2, True) == ([(held(3, 1, 2), "p3")], [])
    assert h.count() == 0


def test_holds_send_back_a_chain_when_its_first_task_fails():
    h = Holds()
    for i in (1, 2, 3):
        h.began(i)
    assert (h.hold(held(2, 1), "p2"), h.hold(held(3, 2), "p3")) == (WAIT, WAIT)
    assert h.ended(1, False) == ([], [(held(2, 1), "p2"), (held(3, 2), "p3")])
    assert h.count() == 0


def test_holds_start_at_once_or_send_back_when_what_it_waits_for_has_ended():
    h = Holds(remembered=2)
    for i in (1, 2, 3, 4, 5):
        h.began(i)
    h.ended(1, True)
    h.ended(2, False)
    assert h.hold(held(4, 1), "p") == START
    assert h.hold(held(5, 2), "p") == BACK
    h.ended(3, True)
    h.ended(4, True)  # 1 is forgotten (only the last two are remembered): back, never stuck
    h.began(6)
    assert h.hold(held(6, 1), "p") == BACK
    h.began(1)  # sent again: a new attempt, which has not ended
    h.began(7)
    assert h.hold(held(7, 1), "p") == WAIT


def test_holds_cancel_a_held_task_and_send_back_what_waited_for_it():
    h = Holds()
    for i in (1, 2, 3):
        h.began(i)
    h.hold(held(2, 1), "p2")
    h.hold(held(3, 2), "p3")
    assert h.cancel(2) == ((held(2, 1), "p2"), [(held(3, 2), "p3")])
    assert h.cancel(2) == (None, [])
    assert h.ended(1, True) == ([], [])
