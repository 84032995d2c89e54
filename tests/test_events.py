"""The run-event record: the writer, its readers, and real runs whose records must add up."""

import collections
import json
import os
import subprocess
import sys
import time
import tracemalloc

from test_urls import barrier

from vinemake.core.events import EventLog, read_events, run_id_for, runs, start_run
from vinemake.core.statedir import RUNS_KEPT, StateDir
from vinemake.face.runview import run_view

# -------------------------------------------------------------------------- writer, readers


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_events_are_json_lines_flushed_each_second_and_at_close(tmp_path):
    clock = Clock()
    log = EventLog(str(tmp_path / "events.jsonl"), clock=clock)
    log.emit("plan", rule=1, kind="command")
    assert read_events(tmp_path / "events.jsonl") == []  # buffered
    clock.now += 1.0
    log.tick()
    assert read_events(tmp_path / "events.jsonl") == [
        {"t": 1000.0, "ev": "plan", "rule": 1, "kind": "command"}]
    log.emit("start", t=999.5, rule=1)  # an event that brings its own time keeps it
    log.close()
    assert read_events(tmp_path / "events.jsonl")[-1] == {"t": 999.5, "ev": "start", "rule": 1}


def test_an_event_made_whole_is_written_and_heard_as_the_same_event_emitted(tmp_path):
    clock = Clock()
    seen = {}
    for how in ("emit", "emit_event"):
        log = EventLog(str(tmp_path / f"{how}.jsonl"), clock=clock)
        log.subscribe(seen.setdefault(how, []).append)
        if how == "emit":
            log.emit("end", rule=3, status="ok", cached=None)
            log.emit("start", t=999.5, rule=3)
        else:
            log.emit_event({"t": None, "ev": "end", "rule": 3, "status": "ok", "cached": None})
            log.emit_event({"t": 999.5, "ev": "start", "rule": 3})
        log.close()
    assert (tmp_path / "emit_event.jsonl").read_bytes() == \
        (tmp_path / "emit.jsonl").read_bytes() == \
        b'{"t":1000.0,"ev":"end","rule":3,"status":"ok","cached":null}\n' \
        b'{"t":999.5,"ev":"start","rule":3}\n'
    assert seen["emit_event"] == seen["emit"]


def test_a_second_of_buffered_events_holds_about_their_bytes_not_a_buffer_each(tmp_path):
    # orjson returns each line in a bytes object the size of its working buffer (1-4 KiB by
    # version): kept whole until the flush, 10k null rules' run grew by ~100 MB
    clock = Clock()
    log = EventLog(str(tmp_path / "events.jsonl"), clock=clock)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for rule in range(2000):
            log.emit("end", rule=rule, status="ok", worker="w1")
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 2000 * 200  # ~70 bytes a line
    log.close()
    assert len(read_events(tmp_path / "events.jsonl")) == 2000


def test_a_reader_skips_a_truncated_last_line_and_keeps_unknown_kinds(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"t": 1, "ev": "run_start"}\n{"t": 2, "ev": "someday", "x": 1}\n'
                    '[1, 2]\n{"t": 3, "ev": "end", "rul')
    assert read_events(path) == [{"t": 1, "ev": "run_start"}, {"t": 2, "ev": "someday", "x": 1}]
    assert read_events(tmp_path / "nothing.jsonl") == []


def test_a_reader_skips_events_whose_time_or_kind_is_not_one(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"t": "x", "ev": "run_start"}\n{"t": 1, "ev": 5}\n{"ev": "end"}\n'
                    '{"t": 2, "ev": "end", "rule": 0}\n')
    assert read_events(path) == [{"t": 2, "ev": "end", "rule": 0}]


def test_a_reader_takes_what_json_allows_beyond_what_the_runs_write(tmp_path):
    # A hand-edited record: NaN (which orjson refuses), a byte that is not UTF-8.
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"t": 1, "ev": "end", "wall_s": NaN}\n'
                     b'{"t": 3, "ev": "end", "message": "caf\xe9"}\n')
    first, second = read_events(path)
    assert first["wall_s"] != first["wall_s"]  # NaN
    assert second["message"] == "caf\ufffd"


def test_only_run_ids_are_runs_and_a_damaged_record_gives_no_traceback(tmp_path):
    (tmp_path / "Vinefile").write_text("a.txt:\n\techo a > a.txt\n")
    subprocess.run([sys.executable, "-m", "vinemake"], cwd=tmp_path, check=True,
                   capture_output=True, timeout=120)
    real, = runs(str(tmp_path))
    junk = StateDir(str(tmp_path)).run("zzz-junk")
    os.makedirs(junk)
    with open(os.path.join(junk, "events.jsonl"), "w") as f:
        f.write('{"t": "x", "ev": "run_start"}\n')
    with open(StateDir(str(tmp_path)).events(real), "a") as f:
        f.write('{"t": "later", "ev": "run_end", "exit": 0}\n')
    assert runs(str(tmp_path)) == [real]
    for command in ("history", "status", "report"):
        proc = subprocess.run([sys.executable, "-m", "vinemake", command], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "zzz-junk" not in proc.stderr and real in proc.stderr  # the report's run


def test_listeners_see_every_event_as_it_is_emitted():
    log = EventLog()
    seen = []
    log.subscribe(seen.append)
    log.emit("worker_join", worker="w1", host="h")
    assert [e["ev"] for e in seen] == ["worker_join"] and log.kept == seen


def test_a_late_watcher_of_workers_hears_of_those_that_joined_and_left_before_it_only():
    """The manager of a first build starts before the engine that listens for its workers:
    the local worker may have joined already (a failure then said `worker local` without
    its address)."""
    log = EventLog()
    log.emit("worker_join", worker="local", host="127.0.0.1")
    log.emit("submit", rule=0)
    log.emit("worker_join", worker="w2", host="10.0.0.2")
    log.emit("worker_leave", worker="w2")
    plain, late = [], []
    log.subscribe(plain.append)
    log.watch_workers(late.append)
    log.emit("worker_join", worker="w3", host="10.0.0.3")
    assert [(e["ev"], e["worker"]) for e in plain] == [("worker_join", "w3")]
    log.emit("submit", rule=1)
    log.emit("worker_leave", worker="w3")
    assert [(e["ev"], e["worker"]) for e in late] == [
        ("worker_join", "local"), ("worker_join", "w2"), ("worker_leave", "w2"),
        ("worker_join", "w3"), ("worker_leave", "w3")]


def test_run_ids_sort_by_start_and_only_the_last_runs_are_kept(tmp_path):
    assert run_id_for(0.0, 42) == "19700101T000000-42"
    state = StateDir(str(tmp_path))
    for i in range(RUNS_KEPT + 3):
        os.makedirs(state.run(run_id_for(1e9 + i, 7)))
        open(state.events(run_id_for(1e9 + i, 7)), "w").close()
    log = start_run(str(tmp_path), clock=lambda: 2e9)
    log.close()
    kept = runs(str(tmp_path))
    assert len(kept) == RUNS_KEPT and kept[-1] == log.run_id == run_id_for(2e9, os.getpid())
    assert kept[0] == run_id_for(1e9 + 4, 7)
    assert runs(state.path) == kept  # the state directory itself names the same runs
    again = start_run(str(tmp_path), clock=lambda: 2e9)  # same second, same process
    assert again.run_id == log.run_id + "-2"
    again.close()


def test_runs_begun_in_one_second_sort_by_their_start_not_by_their_pids_as_text(tmp_path):
    # Pids go 999 -> 1000 and wrap from pid_max (32768 here) to 300: as text "1000" and "300"
    # sort before "999" and "32767", yet those runs began later (a rerun within the second
    # made `history`, `report` and the tests' last_run() read the run before it).
    state = StateDir(str(tmp_path))
    started = [(999, 1e9 + 0.1), (1000, 1e9 + 0.2), (32767, 1e9 + 0.3), (300, 1e9 + 0.4),
               (9, 1e9 + 1.5)]
    made = []
    for pid, t in started:
        made.append(run_id_for(t, pid))
        os.makedirs(state.run(made[-1]))
        with open(state.events(made[-1]), "w") as f:
            f.write(json.dumps({"t": t, "ev": "run_start", "run": made[-1]}) + "\n")
    fresh = run_id_for(1e9 + 1.7, 8)  # begun, its first event not flushed yet: the newest
    os.makedirs(state.run(fresh))
    open(state.events(fresh), "w").close()
    assert runs(str(tmp_path)) == [*made, fresh]


def test_keep_stderr_writes_the_end_of_a_rules_stderr_and_nothing_for_none(tmp_path):
    log = EventLog(str(tmp_path / "e"), str(tmp_path / "stderr"))
    log.keep_stderr("a.txt", "x" * 10000 + "the end\n")
    log.keep_stderr("quiet", "")
    assert os.listdir(tmp_path / "stderr") == ["a.txt"]
    assert (tmp_path / "stderr" / "a.txt").read_text().endswith("the end\n")
    assert len((tmp_path / "stderr" / "a.txt").read_text()) == 8192


# -------------------------------------------------------------------------- real runs

CHAIN = """\
a.txt: in.txt
\ttr a-z A-Z < in.txt > a.txt; echo made a >&2

b.txt: a.txt
\tcat a.txt a.txt > b.txt

c.txt: in.txt
\twc -c < in.txt > c.txt

d.txt: b.txt c.txt
\tLOCAL cat b.txt c.txt > d.txt
"""


def vinemake(root, *args, check=True):
    proc = subprocess.run([sys.executable, "-m", "vinemake", *args], cwd=root,
                          capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def last_run(root) -> list[dict]:
    return read_events(StateDir(str(root)).events(runs(str(root))[-1]))


def by_kind(events) -> dict[str, list[dict]]:
    out = collections.defaultdict(list)
    for e in events:
        out[e["ev"]].append(e)
    return out


def check_consistent(events) -> dict[str, list[dict]]:
    """What every record must satisfy: run_start first, run_end last, the plan's counts, one
    plan per rule (before any other event of it), and for each rule that ran one submit,
    start and end per attempt, in that order."""
    assert events[0]["ev"] == "run_start" and events[-1]["ev"] == "run_end"
    k = by_kind(events)
    plans = {e["rule"]: e for e in k["plan"]}
    assert len(plans) == len(k["plan"]) == k["planned"][0]["rules"]
    assert {a: k["planned"][0][a] for a in ("run", "restore", "skip")} == {
        a: sum(1 for p in plans.values() if p["action"] == a) for a in ("run", "restore", "skip")}
    first = {}
    for e in events:
        if "rule" in e:
            first.setdefault(e["rule"], e["ev"])
    assert set(first.values()) == {"plan"}
    for kind in ("submit", "start", "end"):
        assert {e["rule"] for e in k[kind]} <= set(plans)
    for rid in {e["rule"] for e in k["submit"]}:
        submits = [e for e in k["submit"] if e["rule"] == rid]
        starts = [e for e in k["start"] if e["rule"] == rid]
        ends = [e for e in k["end"] if e["rule"] == rid]
        assert len(submits) == len(ends)
        for s, e in zip(starts, ends, strict=False):  # an attempt may end unstarted
            assert submits[0]["t"] <= s["t"] + 0.05 and s["t"] <= e["t"]
    counts = k["run_end"][0]["counts"]
    ok = {e["rule"] for e in k["end"] if e["status"] == "ok"}
    assert counts["ran"] == len(ok)
    assert counts["restored"] == len(k["restore"])
    assert counts["failed"] == len({e["rule"] for e in k["end"] if e["status"] == "failed"})
    assert counts["skipped"] == sum(1 for p in plans.values() if p["action"] == "skip")
    return k


def summary(proc) -> str:
    return proc.stderr.splitlines()[-1]


def test_a_real_run_records_every_rule_once_and_its_counts_equal_the_summary(tmp_path):
    (tmp_path / "in.txt").write_text("hello\n")
    (tmp_path / "Vinefile").write_text(CHAIN)
    proc = vinemake(tmp_path)
    events = last_run(tmp_path)
    k = check_consistent(events)
    start = k["run_start"][0]
    assert (start["run"], start["rules"], start["batch_type"]) == (runs(tmp_path)[-1], 4, "local")
    assert summary(proc).startswith("vinemake: ran 4, restored 0, up to date 0 in ")
    assert k["run_end"][0]["counts"] == {"ran": 4, "restored": 0, "skipped": 0, "failed": 0,
                                        "withdrawn": 0}
    assert (k["run_end"][0]["outcome"], k["run_end"][0]["exit"]) == ("ok", 0)
    plans = {e["label"]: e for e in k["plan"]}
    assert plans["d.txt"]["inputs"] == ["b.txt", "c.txt"] and plans["d.txt"]["kind"] == "local"
    assert plans["a.txt"]["reason"] == "never built" and plans["a.txt"]["kind"] == "command"
    assert plans["a.txt"]["command"].startswith("tr a-z A-Z")
    assert len(k["start"]) == len(k["end"]) == 4
    ends = {e["rule"]: e for e in k["end"]}
    assert all(e["status"] == "ok" and e["exit"] == 0 and e["wall_s"] >= 0 for e in ends.values())
    assert [e["worker"] for e in k["worker_join"]] == ["local"]
    a = plans["a.txt"]["rule"]
    # a tiny command's peak may be below what the monitor could see: unknown then, never 0
    assert ends[a]["mem_peak_mb"] is None or ends[a]["mem_peak_mb"] > 0
    assert ends[a]["worker"] == "local"
    # every rule's stderr is kept, not only a failure's
    stderr = StateDir(str(tmp_path)).stderr(runs(tmp_path)[-1], "a.txt")
    assert open(stderr).read() == "made a\n"


def test_restored_rules_are_recorded_as_restored_and_counted_so(tmp_path):
    (tmp_path / "in.txt").write_text("hello\n")
    (tmp_path / "Vinefile").write_text(CHAIN)
    vinemake(tmp_path)
    os.unlink(tmp_path / "b.txt")
    os.unlink(tmp_path / "d.txt")
    proc = vinemake(tmp_path)
    k = check_consistent(last_run(tmp_path))
    labels = {e["rule"]: e["label"] for e in k["plan"]}
    assert sorted(labels[e["rule"]] for e in k["restore"]) == ["b.txt", "d.txt"]
    assert k["start"] == [] and k["end"] == []
    assert summary(proc).startswith("vinemake: ran 0, restored 2, up to date 2 in ")
    assert len(runs(tmp_path)) == 2


def test_a_failed_rule_ends_failed_with_its_stderr_and_the_run_ends_failed(tmp_path):
    (tmp_path / "Vinefile").write_text("x.txt:\n\techo no such luck >&2; exit 3\n\n"
                                       "y.txt:\n\tsleep 0.2; touch y.txt\n")
    proc = vinemake(tmp_path, "-k", check=False)
    assert proc.returncode == 1
    k = check_consistent(last_run(tmp_path))
    failed = [e for e in k["end"] if e["status"] == "failed"]
    assert len(failed) == 1
    assert (failed[0]["exit"], failed[0]["signal"], failed[0]["stderr"]) == (3, None,
                                                                              "no such luck")
    assert failed[0]["message"] == "exit code 3"
    assert failed[0]["info"] == str(tmp_path / ".vinemake" / "failed" / "x.txt" / "INFO")
    assert k["run_end"][0]["outcome"] == "failed" and k["run_end"][0]["exit"] == 1


def test_a_run_stopped_by_sigterm_leaves_a_readable_record(tmp_path):
    (tmp_path / "Vinefile").write_text("x.txt:\n\tsleep 30; touch x.txt\n")
    proc = subprocess.Popen([sys.executable, "-m", "vinemake"], cwd=tmp_path,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(e["ev"] == "start" for e in _events_so_far(tmp_path)):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.terminate()
    assert proc.wait(60) == 143
    k = by_kind(last_run(tmp_path))
    assert k["run_end"][0]["outcome"] == "interrupted"


def _events_so_far(root) -> list[dict]:
    ids = runs(str(root))
    return read_events(StateDir(str(root)).events(ids[-1])) if ids else []


WORKER = "import sys; from vinemake.worker.cli import main; sys.exit(main())"


def run_on_alpha_and_beta(root, sleep) -> str:
    """Four one-core rules reading data.bin, run by two workers started by hand (`--trace
    trace.tsv`); its stderr."""
    (root / "data.bin").write_bytes(b"x" * 200000)
    # The first two rules wait at a barrier until both have started: one on each worker,
    # however late one of them joins.
    (root / "Vinefile").write_text("".join(
        f"@resources cores=1\no{i}.txt: data.bin\n\t{barrier(root / 'started', 2)}"
        f"sleep {sleep}; wc -c < data.bin > o{i}.txt\n\n" for i in range(4)))
    tmp_path = root
    port_file = tmp_path / "port"
    run = subprocess.Popen([sys.executable, "-m", "vinemake", "-T", "workers",
                            "--port-file", str(port_file), "--trace", "trace.tsv"], cwd=tmp_path,
                           stderr=subprocess.PIPE, text=True)
    workers = []
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert time.monotonic() < deadline and run.poll() is None
            time.sleep(0.05)
        port = port_file.read_text().strip()
        workers = [subprocess.Popen([sys.executable, "-c", WORKER, "127.0.0.1", port,
                                     "--cores", "1", "--name", name, "--timeout", "30",
                                     "--as-remote",
                                     "--workdir", str(tmp_path / name)],
                                    stderr=subprocess.DEVNULL)
                   for name in ("alpha", "beta")]
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
    finally:
        for p in [run, *workers]:
            if p.poll() is None:
                p.kill()
                p.wait()
    return err


def test_starts_name_the_worker_that_ran_each_rule_of_two_started_by_hand(tmp_path):
    err = run_on_alpha_and_beta(tmp_path, sleep=2)
    k = check_consistent(last_run(tmp_path))
    assert sorted(e["worker"] for e in k["worker_join"]) == ["alpha", "beta"]
    assert len(k["start"]) == 4 and {e["worker"] for e in k["start"]} == {"alpha", "beta"}
    ends = {e["rule"]: e for e in k["end"]}
    assert all(ends[e["rule"]]["worker"] == e["worker"] for e in k["start"])
    # one core each: on a worker, a command starts only once the one before it ended
    for name in ("alpha", "beta"):
        spans = sorted((e["t"], ends[e["rule"]]["t"]) for e in k["start"] if e["worker"] == name)
        assert all(b[0] >= a[0] + 0.9 for a, b in zip(spans, spans[1:], strict=False))
    # the log names the worker of each start, there being two
    labels = {e["rule"]: e["label"] for e in k["plan"]}
    logged = sorted(line[9:] for line in err.splitlines() if line[9:].startswith("start "))
    assert logged == sorted(f"start   {labels[e['rule']]} on {e['worker']}" for e in k["start"])
    # no rule starts before a worker joined: a start is a command really beginning
    first_join = min(e["t"] for e in k["worker_join"])
    assert min(e["t"] for e in k["start"]) >= first_join
    # the input reached each worker once, from the manager or the other worker; --trace
    # says which rule received it and where from
    got = [e for e in k["transfer"] if e["key"] == plans_files(k)["data.bin"]]
    assert sorted(e["to_worker"] for e in got) == ["alpha", "beta"]
    assert all(e["size"] == 200000 and e["source"] in ("manager", "peer") for e in got)
    from vinemake.face.trace import COLUMNS
    rows = [dict(zip(COLUMNS, line.split("\t"), strict=True))
            for line in (tmp_path / "trace.tsv").read_text().splitlines()[1:]]
    assert sorted(r["status"] for r in rows) == ["ran"] * 4
    assert all(r["input_bytes"] == "200000" for r in rows)
    received = sorted(int(r["from_manager"]) + int(r["from_peer"]) for r in rows)
    assert received == [0, 0, 200000, 200000]  # the first rule on each worker received it
    assert all(int(r["from_cache"]) == 200000 - int(r["from_manager"]) - int(r["from_peer"])
               for r in rows)


def test_each_copy_to_a_worker_is_recorded_started_before_it_ended_and_later_readers_hit(
        tmp_path):
    run_on_alpha_and_beta(tmp_path, sleep=1)
    events = last_run(tmp_path)
    k = check_consistent(events)
    data = plans_files(k)["data.bin"]
    started = {(e["key"], e["to_worker"]): i for i, e in enumerate(events)
               if e["ev"] == "transfer_start"}
    ended = {(e["key"], e["to_worker"]): i for i, e in enumerate(events)
             if e["ev"] == "transfer" and e["to_worker"] is not None}
    assert sorted(ended) == [(data, "alpha"), (data, "beta")]
    assert sorted(started) == sorted(ended)  # one start per copy, however many rules read it
    assert all(started[copy] < ended[copy] for copy in ended)
    for e in (e for e in events if e["ev"] == "transfer_start"):
        assert (e["file"], e["size"], e["start"]) == (str(tmp_path / "data.bin"), 200000, e["t"])
        assert (e["source"], e["from_worker"]) in (
            ("manager", None), ("peer", "beta" if e["to_worker"] == "alpha" else "alpha"))
    assert run_view(events)["in_flight"] == []
    # after its copy, every rule on a worker found data.bin in its cache: a hit each
    hits = [e.get("cached") for e in k["start"]]
    assert sorted(map(str, hits)) == sorted(["None"] * 2 + [str([data])] * 2)
    assert run_view(events)["summary"]["cache_hits"] == {"restored": 0, "worker_cache": 2}


def plans_files(k) -> dict:
    return {p: key for e in k["plan"] for p, key in e["files"].items()}


def test_a_command_sampled_while_it_runs_records_the_bytes_it_wrote(tmp_path):
    # Sampled as it runs: a process still alive at a sample is counted (one that came and
    # went between samples is not, and a command too short for any sample records null).
    (tmp_path / "Vinefile").write_text(
        "big:\n\tpython3 -c \"import time; open('big', 'wb').write(b'x' * 3000000); "
        "time.sleep(0.8)\"\n\nsmall:\n\ttouch small\n")
    vinemake(tmp_path)
    k = check_consistent(last_run(tmp_path))
    labels = {e["rule"]: e["label"] for e in k["plan"]}
    ends = {labels[e["rule"]]: e for e in k["end"]}
    assert ends["big"]["bytes_written"] >= 3000000 and ends["big"]["bytes_read"] > 0
    # `touch` ends before the monitor's first sample, unless a loaded machine slows it past
    # it: then what samples see is known (disk_mb too), else all of it is null.
    small = ends["small"]
    if small["disk_mb"] is None:
        assert (small["bytes_written"], small["bytes_read"]) == (None, None), small
    else:
        assert small["bytes_written"] == 0, small


def test_a_function_call_starts_once_its_library_is_ready_not_when_it_is_sent(tmp_path):
    (tmp_path / "slow.py").write_text("import time\ntime.sleep(1.5)\n\n\n"
                                      "def make(name):\n    open(name, 'w').write('made')\n")
    (tmp_path / "Vinefile").write_text("@library slow\n: slow.py\n"
                                       "\tpython3 -m vinemake.library slow.py\n\n"
                                       "@call slow\nout.txt:\n\tmake out.txt\n")
    vinemake(tmp_path)
    k = check_consistent(last_run(tmp_path))
    (ready,) = k["library_start"]
    (start,) = k["start"]
    assert ready["end"] - ready["start"] >= 1.5
    assert start["t"] >= ready["end"]
