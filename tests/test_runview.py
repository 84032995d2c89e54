"""runview: a run's recorded events → what the report, the live page and `status` show.

These events are written by hand in the agreed format (core/events.py documents it) to pin
the pure view down case by case; test_report.py makes its events from real runs.
"""

from __future__ import annotations

from vinemake.face.runview import run_view, suggest

T0 = 1_800_000_000.0


def plan(rule, label, **fields):
    base = {"t": T0 + 0.1, "ev": "plan", "rule": rule, "label": label, "key": f"k{rule}",
            "action": "run", "reason": "never built", "category": "default",
            "inputs": [], "outputs": [label], "kind": "command",
            "resources": {"cores": 1, "memory_mb": 100, "disk_mb": None, "gpus": None,
                          "wall_time_s": None}}
    base.update(fields)
    return base


def task(rule, worker, start, end, status="ok", **measured):
    fields = {"wall_s": end - start, "cpu_s": (end - start) / 2, "mem_peak_mb": 50.0,
              "disk_mb": 1.0, "exit": 0 if status == "ok" else 1, "signal": None}
    fields.update(measured)
    return [{"t": T0 + start, "ev": "start", "rule": rule, "worker": worker, "host": "h",
             "attempt": 1},
            {"t": T0 + end, "ev": "end", "rule": rule, "status": status, "attempt": 1,
             "worker": worker, "host": "h", "message": "", **fields}]


START = {"t": T0, "ev": "run_start", "run": "20270115T080000-7", "vinefile": "/w/Vinefile",
         "root": "/w", "argv": ["vinemake"], "batch_type": "local", "rules": 3, "pid": 7,
         "host": "h"}
JOIN = {"t": T0 + 0.2, "ev": "worker_join", "worker": "w1", "host": "h", "cores": 2,
        "memory_mb": 1000, "disk_mb": 5000}


def finished_run():
    return [
        START, JOIN,
        plan(0, "a.txt"), plan(1, "b.txt", inputs=["a.txt", "src.dat"], kind="call"),
        plan(2, "c.txt", action="restore"), plan(3, "d.txt", action="skip"),
        {"t": T0 + 0.3, "ev": "submit", "rule": 0},
        {"t": T0 + 0.3, "ev": "submit", "rule": 1},
        *task(0, "w1", 1.0, 3.0),
        *task(1, "w1", 2.0, 4.0),  # overlaps a.txt on w1: a second slot
        {"t": T0 + 1.5, "ev": "restore", "rule": 2, "outputs": ["c.txt"]},
        {"t": T0 + 2.0, "ev": "transfer", "file": "src.dat", "key": "s", "size": 300,
         "source": "manager", "from_worker": None, "to_worker": "w1", "start": T0 + 1.8,
         "end": T0 + 2.0},
        {"t": T0 + 2.0, "ev": "transfer", "file": "a.txt", "key": "k0", "size": 200,
         "source": "cache", "from_worker": None, "to_worker": "w1", "start": T0 + 3.1,
         "end": T0 + 3.1},
        {"t": T0 + 3.0, "ev": "cache", "worker": "w1", "bytes": 500},
        {"t": T0 + 5.0, "ev": "run_end", "outcome": "ok", "exit": 0,
         "counts": {"ran": 2, "restored": 1, "skipped": 1, "failed": 0, "withdrawn": 0},
         "duration_s": 5.0},
    ]


def test_summary_takes_the_runs_own_counts_and_adds_what_was_measured():
    s = run_view(finished_run())["summary"]
    assert s["outcome"] == "ok"
    assert s["duration_s"] == 5.0
    assert s["counts"] == {"ran": 2, "restored": 1, "skipped": 1, "failed": 0, "withdrawn": 0}
    assert s["planned"] == {"run": 2, "restore": 1, "skip": 1}
    assert s["cpu_s"] == 2.0
    assert s["bytes_by_source"] == {"manager": 300, "cache": 200}
    assert s["bytes_moved"] == 300  # found in a worker's cache: nothing moved
    assert s["cache_hits"] == {"restored": 1, "worker_cache": 1}
    assert s["workers"] == 1 and s["tasks"] == 2


def test_timeline_packs_each_workers_bars_into_slots_one_bar_per_task():
    view = run_view(finished_run())
    assert view["lanes"] == ["manager #1", "w1 #1", "w1 #2"]
    bars = view["bars"]
    rows = sorted(zip(bars["kind"], bars["lane"], bars["start"], bars["end"], bars["status"],
                      strict=True))
    assert rows == [
        ("command", 1, 1.0, 3.0, "ok"),
        ("function call", 2, 2.0, 4.0, "ok"),
        ("restore", 0, 1.5, 1.5, "ok"),
        ("transfer", 1, 3.1, 3.1, "cache"),   # after a.txt ended, in its slot
        ("transfer", 2, 1.8, 2.0, "manager"),  # before b.txt, in b.txt's slot
    ]
    labels = view["rules"]["label"]
    assert [labels[r] if r is not None else None for r in bars["rule"]].count("b.txt") == 1


def test_rules_are_columns_with_declared_and_measured_resources():
    rules = run_view(finished_run())["rules"]
    assert rules["label"] == ["a.txt", "b.txt", "c.txt", "d.txt"]
    assert rules["status"] == ["ok", "ok", None, None]
    assert rules["declared"]["memory_mb"] == [100, 100, 100, 100]
    assert rules["measured"]["cores"] == [0.5, 0.5, None, None]
    assert rules["measured"]["memory_mb"] == [50.0, 50.0, None, None]
    assert rules["inputs"][1] == ["a.txt", "src.dat"]
    assert rules["input_keys"] == [None, None, None, None]


def test_per_file_keys_recorded_with_the_plan_are_kept_in_file_order_once():
    events = [START, plan(0, "x", inputs=["s1", "s2"], outputs=["x", "y"],
                          files={"s2": "K2", "s1": "K1", "x": "KX", "y": "KY"}),
              plan(1, "z", inputs=["x", "s1"], outputs=["z"],
                   files={"x": "KX", "s1": "K1", "z": "KZ"})]
    rules = run_view(events)["rules"]
    assert rules["input_keys"] == [["K1", "K2"], [None, "K1"]]  # x: in its producer's row
    assert rules["output_keys"] == [["KX", "KY"], ["KZ"]]


def test_a_rule_with_many_inputs_is_summarized():
    events = [START, plan(0, "all", inputs=[f"f{i}" for i in range(25)])]
    inputs = run_view(events)["rules"]["inputs"][0]
    assert len(inputs) == 21 and inputs[-1] == "... and 5 more"


def test_the_keys_shown_are_those_of_the_files_shown_and_a_long_command_is_cut():
    files = {f"f{i}": f"K{i}" for i in range(25)} | {"all": "KA"}
    events = [START, plan(0, "all", inputs=[f"f{i}" for i in range(25)], files=files,
                          command="x" * 400)]
    rules = run_view(events)["rules"]
    assert rules["input_keys"][0] == [f"K{i}" for i in range(20)] + [None]
    assert rules["output_keys"][0] == ["KA"]
    assert rules["command"][0] == "x" * 300 + " ..."


def test_a_failure_shows_the_whole_of_its_end_and_the_others_what_they_measured():
    events = [START, JOIN, plan(0, "a.txt"), plan(1, "b.txt"),
              *task(0, "w1", 1.0, 2.0, status="failed", stderr="no such file\n", exit=3,
                    message="exited 3"),
              *task(1, "w1", 1.0, 3.0, stderr="ignored")]
    view = run_view(events)
    (failure,) = view["failures"]
    assert (failure["label"], failure["exit"], failure["message"], failure["stderr"],
            failure["host"]) == ("a.txt", 3, "exited 3", "no such file\n", "h")
    assert view["rules"]["status"] == ["failed", "ok"]
    assert view["rules"]["measured"]["wall_time_s"] == [1.0, 2.0]


def test_categories_compare_the_largest_declared_and_measured_and_suggest():
    events = [START, plan(0, "a", category="big",
                          resources={"cores": 4, "memory_mb": 1000, "disk_mb": 10}),
              plan(1, "b", category="big", resources={"cores": 4, "memory_mb": 2000}),
              *task(0, "w1", 0, 10, cpu_s=15.0, mem_peak_mb=300.0, disk_mb=40.0),
              *task(1, "w1", 10, 12, cpu_s=2.0, mem_peak_mb=900.0, disk_mb=1.0)]
    (big,) = run_view(events)["categories"]
    assert big["name"] == "big" and big["rules"] == 2 and big["ran"] == 2
    assert big["declared"] == {"cores": 4, "memory_mb": 2000, "disk_mb": 10,
                               "wall_time_s": None}
    assert big["measured"] == {"cores": 1.5, "memory_mb": 900.0, "disk_mb": 40.0,
                               "wall_time_s": 10}
    assert big["suggest"] == {"cores": 2, "memory_mb": 1125, "disk_mb": 50, "wall_time_s": 15}


def test_suggest_of_nothing_measured_is_nothing():
    assert suggest({}) == {"cores": None, "memory_mb": None, "disk_mb": None,
                           "wall_time_s": None}


def test_a_killed_run_shows_what_was_recorded_and_counts_it_itself():
    events = [START, JOIN, plan(0, "a"), plan(1, "b"), plan(2, "c", action="skip"),
              {"t": T0 + 0.5, "ev": "submit", "rule": 0},
              {"t": T0 + 0.5, "ev": "submit", "rule": 1},
              *task(0, "w1", 1.0, 2.0, status="failed", exit=3),
              {"t": T0 + 2.5, "ev": "start", "rule": 1, "worker": "w1", "attempt": 1},
              {"t": T0 + 4.0, "ev": "cache", "worker": "w1", "bytes": 10}]
    view = run_view(events)
    s = view["summary"]
    assert s["outcome"] == "unfinished"  # no run_end: killed, or still going
    assert s["duration_s"] == 4.0
    assert s["counts"] == {"ran": 0, "restored": 0, "skipped": 1, "failed": 1,
                           "withdrawn": 0}
    assert [(r["label"], r["worker"], r["since"]) for r in view["running"]] == \
        [("b", "w1", 2.5)]
    bars = view["bars"]
    assert (bars["start"][-1], bars["end"][-1], bars["status"][-1]) == (2.5, 4.0, "running")
    (failure,) = view["failures"]
    assert (failure["label"], failure["exit"], failure["worker"]) == ("a", 3, "w1")


def test_a_run_killed_before_it_recorded_every_plan_counts_the_plan_by_its_counts():
    events = [START, JOIN,
              {"t": T0 + 0.1, "ev": "planned", "rules": 5, "run": 4, "restore": 0, "skip": 1},
              plan(0, "a"), {"t": T0 + 0.5, "ev": "submit", "rule": 0}, *task(0, "w1", 1, 2),
              plan(1, "b")]
    s = run_view(events)["summary"]
    assert s["planned"] == {"run": 4, "skip": 1}
    assert s["counts"] == {"ran": 1, "restored": 0, "skipped": 1, "failed": 0, "withdrawn": 0}
    damaged = [*events[:2], {**events[2], "run": "four"}, *events[3:]]
    assert run_view(damaged)["summary"]["planned"] == {"run": 2}  # counted from the plans


def test_live_view_runs_bars_up_to_now_and_lists_the_waiting():
    events = [START, plan(0, "a"), plan(1, "b"),
              {"t": T0 + 1.0, "ev": "submit", "rule": 0},
              {"t": T0 + 1.0, "ev": "submit", "rule": 1},
              {"t": T0 + 2.0, "ev": "start", "rule": 0, "worker": "w1", "attempt": 1}]
    view = run_view(events, now=T0 + 7.0)
    assert view["run"]["live"] is True and view["summary"]["outcome"] == "running"
    assert view["summary"]["running"] == 1 and view["summary"]["waiting"] == 1
    assert [r["label"] for r in view["waiting"]] == ["b"]
    assert view["bars"]["end"] == [7.0]


def test_a_rule_held_back_is_no_longer_waiting():
    events = [START, plan(0, "a"), plan(1, "b"),
              {"t": T0 + 1.0, "ev": "submit", "rule": 0},
              {"t": T0 + 1.0, "ev": "submit", "rule": 1, "after": [0]},
              {"t": T0 + 2.0, "ev": "start", "rule": 0, "worker": "w1", "attempt": 1},
              {"t": T0 + 3.0, "ev": "held_back", "rule": 1}]
    view = run_view(events, now=T0 + 7.0)
    assert (view["summary"]["running"], view["waiting"]) == (1, [])


def test_unknown_kinds_and_missing_fields_are_tolerated():
    events = [{"t": T0, "ev": "something_new", "x": 1}, {"ev": "plan", "rule": 0},
              {"t": T0 + 1, "ev": "start", "rule": 0},
              {"t": T0 + 2, "ev": "end", "rule": 0, "status": "ok"},
              {"t": T0 + 3, "ev": "transfer"}, {"no": "kind"},
              {"t": T0 + 4, "ev": "start", "worker": "w"}, {"ev": "end", "rule": "x"}]
    view = run_view(events)
    assert view["summary"]["counts"]["ran"] == 1 and view["running"] == []
    assert view["rules"]["label"] == ["rule 0"]
    assert view["lanes"] == ["manager #1"]
    assert view["bars"]["kind"] == ["command", "transfer"]


def test_no_events_is_an_empty_view():
    view = run_view([])
    assert view["summary"]["outcome"] == "unfinished"
    assert view["bars"]["lane"] == [] and view["lanes"] == [] and view["workers"] == []


def test_workers_tasks_busy_time_and_cache_over_time():
    (w1,) = run_view(finished_run())["workers"]
    assert (w1["id"], w1["cores"], w1["memory_mb"], w1["tasks"], w1["busy_s"]) == \
        ("w1", 2, 1000, 2, 4.0)
    assert w1["cache"] == [[3.0, 500]] and w1["cache_bytes"] == 500


def test_transfers_by_source_and_per_worker():
    back = {"t": T0 + 4.5, "ev": "transfer", "file": "b.txt", "key": "k1", "size": 50,
            "source": "worker", "from_worker": "w1", "to_worker": None, "start": T0 + 4.0,
            "end": T0 + 4.5}
    broken = {**back, "t": T0 + 4.6, "file": "c.txt", "size": 70, "ok": False}
    view = run_view(finished_run() + [back, broken])
    t = view["transfers"]
    assert view["summary"]["bytes_moved"] == 350  # a failed transfer moved nothing
    assert view["bars"]["status"].count("failed") == 1  # but it is drawn, as failed
    assert t == {"count": 3, "failed": 1,
                 "by_source": {"manager": 300, "cache": 200, "worker": 50},
                 "per_worker": {"manager": {"worker": 50},
                                "w1": {"manager": 300, "cache": 200}}}


def test_a_bar_ends_when_its_command_did_not_when_the_manager_heard_of_it():
    events = [START, plan(0, "a"), plan(1, "b"),
              *task(0, "w1", 1.0, 5.0, wall_s=0.5),  # reported 3.5 s after it ended
              *task(1, "w1", 2.0, 5.0, wall_s=0.25)]
    view = run_view(events)
    assert view["lanes"] == ["w1 #1"]  # one after the other: one slot
    assert view["bars"]["end"] == [1.5, 2.25]
    assert view["workers"][0]["busy_s"] == 0.75


def copy_start(key, to, start, source="manager", from_worker=None, size=4000):
    return {"t": T0 + start, "ev": "transfer_start", "file": f"{key}.dat", "key": key,
            "size": size, "source": source, "from_worker": from_worker, "to_worker": to,
            "start": T0 + start}


def copy_end(key, to, end, ok=True):
    return {"t": T0 + end, "ev": "transfer", "file": f"{key}.dat", "key": key, "size": 4000,
            "source": "manager", "from_worker": None, "to_worker": to, "start": T0 + 1.0,
            "end": T0 + end, "ok": ok}


def test_a_transfer_is_in_flight_from_its_start_until_its_transfer_to_that_worker():
    events = [START, JOIN, copy_start("s", "w1", 1.0), copy_start("s", "w2", 1.5),
              copy_start("p", "w2", 2.0, source="peer", from_worker="w1", size=None),
              copy_start("u", "w1", 2.5), copy_start("x", "w1", 2.6),
              copy_end("s", "w1", 3.0), copy_end("u", "w1", 3.1, ok=False)]
    view = run_view(events, now=T0 + 6.0)
    assert view["in_flight"] == [
        {"file": "s.dat", "from": "manager", "to": "w2", "size": 4000, "since": 1.5},
        {"file": "p.dat", "from": "peer w1", "to": "w2", "size": None, "since": 2.0},
        {"file": "x.dat", "from": "manager", "to": "w1", "size": 4000, "since": 2.6}]
    assert view["summary"]["in_flight"] == 3
    # a worker that left receives nothing more
    gone = {"t": T0 + 6.5, "ev": "worker_leave", "worker": "w2", "reason": "killed"}
    assert [m["file"] for m in run_view(events + [gone])["in_flight"]] == ["x.dat"]


def test_inputs_found_in_a_workers_cache_are_cache_hits_beside_restored_outputs():
    events = finished_run()
    start = next(i for i, e in enumerate(events) if e["ev"] == "start" and e["rule"] == 1)
    events[start] = {**events[start], "cached": ["k0", "s"]}
    retry = [{**events[start], "t": T0 + 4.2, "cached": ["s"]},
             {"t": T0 + 4.3, "ev": "start", "rule": 0, "worker": "w1", "cached": "bad"}]
    hits = run_view(events[:-1] + retry + events[-1:])["summary"]["cache_hits"]
    # each attempt's inputs count, and a transfer recorded as from the cache
    assert hits == {"restored": 1, "worker_cache": 4}
    assert run_view(finished_run())["summary"]["cache_hits"] == {"restored": 1,
                                                                 "worker_cache": 1}


def test_no_transfer_is_in_flight_once_every_one_ended_or_the_run_did():
    assert run_view(finished_run())["in_flight"] == []
    started = [copy_start("s", "w1", 1.0)]
    assert run_view([START, *started, copy_end("s", "w1", 2.0)], now=T0 + 3)["in_flight"] == []
    ended = finished_run()[:-1] + started + finished_run()[-1:]
    assert run_view(ended)["in_flight"] == [] and run_view(ended)["summary"]["in_flight"] == 0
