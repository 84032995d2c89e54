"""Placement is a pure function: resources must fit, then input bytes held, then least loaded."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time
from dataclasses import replace

from vinemake.backends import ManagerAddress, ProviderOptions, options_tag
from vinemake.backends.local import worker_command
from vinemake.common.spec import Resources
from vinemake.common.task import MiniTask, Task, TaskFile
from vinemake.manager.config import ManagerConfig
from vinemake.manager.manager import Manager
from vinemake.manager.placement import (
    MB,
    Cached,
    WorkerView,
    blend_rate,
    cache_fits,
    fits,
    holder,
    locality_wait_s,
    make_room,
    missing_bytes,
    need,
    place,
)
from vinemake.manager.transfers import MANAGER, choose_sources


def task(cores=None, memory_mb=None, disk_mb=None, gpus=None, inputs=()):
    return Task(id=1, rule_key="r", name="t", command=":",
                resources=Resources(cores=cores, memory_mb=memory_mb, disk_mb=disk_mb,
                                    gpus=gpus),
                inputs=tuple(TaskFile(k, k, None, size) for k, size in inputs))


def worker(wid, cores=4, memory_mb=1000, disk_mb=1000, gpus=0, running=0):
    return WorkerView(wid, Resources(cores=cores, memory_mb=memory_mb, disk_mb=disk_mb,
                                     gpus=gpus), running)


def test_unspecified_resources_need_one_core_and_nothing_else():
    assert need(Resources()) == Resources(cores=1.0, memory_mb=0, disk_mb=0, gpus=0)
    assert fits(need(Resources()), Resources(cores=1, memory_mb=0, disk_mb=0, gpus=0))
    assert not fits(need(Resources()), Resources(cores=0.5, memory_mb=9, disk_mb=9, gpus=9))


def test_a_task_goes_only_where_every_resource_fits():
    workers = [worker("small", cores=1, memory_mb=100), worker("nogpu", cores=8),
               worker("big", cores=8, memory_mb=4000, gpus=1)]
    assert place(task(cores=2, memory_mb=2000, gpus=1), workers, {}) == "big"
    assert place(task(cores=2, memory_mb=200), workers, {}) == "big"  # equal load: by name
    assert place(task(disk_mb=5000), workers, {}) is None
    assert place(task(cores=16), workers, {}) is None


def test_a_task_with_batch_options_runs_only_on_a_worker_submitted_with_them():
    tag = options_tag("--comment=x")
    workers = [worker("slurm-1_1"), worker(f"slurm-2_1{options_tag('--comment=y')}"),
               worker(f"slurm-3_1{tag}#2", running=3)]
    tagged = replace(task(), batch_options="--comment=x")
    assert place(tagged, workers, {}) == f"slurm-3_1{tag}#2"
    assert place(tagged, workers, {}, random.Random(1)) == f"slurm-3_1{tag}#2"
    assert place(tagged, workers[:2], {}) is None
    assert place(task(), workers[1:], {}) == f"slurm-2_1{options_tag('--comment=y')}"
    busy = replace(tagged, inputs=(TaskFile("k", "k", None, 5),))
    assert holder(busy, workers, {"k": {"slurm-1_1"}}, {"k"}) is None


def test_the_worker_holding_most_input_bytes_wins():
    workers = [worker("a"), worker("b"), worker("c")]
    replicas = {"k1": {"a"}, "k2": {"b"}, "k3": {"b"}}
    t = task(inputs=[("k1", 500), ("k2", 300), ("k3", 300)])
    assert place(t, workers, replicas) == "b"


def _mini_reader(other_input: int) -> Task:
    """A task reading a mini's output `ref` (made from `ref.tgz`, 1 MB) and `big`."""
    mini = MiniTask("rule-m", "ref", "tar xzf ref.tgz", (TaskFile("ref.tgz", "ref.tgz", None,
                                                                  1_000_000),),
                    (TaskFile("ref", "ref"),))
    return replace(task(inputs=[("ref", 0), ("big", other_input)]), minis=(mini,))


def test_a_mini_output_weighs_what_making_it_again_costs_not_its_size():
    workers = [worker("a"), worker("b")]
    # a holds the 5 GB unpacked tree, made in 2 s from a 1 MB archive; b holds a 50 MB input
    replicas = {"ref": {"a"}, "big": {"b"}}
    sizes = {"ref": 5_000_000_000}
    quick = {"ref": 2.0}
    assert place(_mini_reader(50_000_000), workers, replicas, sizes=sizes, remake_s=quick,
                 rate=10_000_000) == "b"  # remaking (1 MB + 2 s x 10 MB/s) beats moving 50 MB
    slow = {"ref": 60.0}
    assert place(_mini_reader(50_000_000), workers, replicas, sizes=sizes, remake_s=slow,
                 rate=10_000_000) == "a"  # a minute of unpacking is worth 600 MB here


def test_a_worker_holding_a_minis_inputs_is_worth_their_bytes():
    workers = [worker("a"), worker("b")]
    replicas = {"ref.tgz": {"a"}, "big": {"b"}}
    assert place(_mini_reader(500_000), workers, replicas) == "a"
    assert place(_mini_reader(2_000_000), workers, replicas) == "b"


def test_locality_never_overrides_fit():
    workers = [worker("holder", cores=1, running=1), worker("free")]
    full = [worker("holder", cores=0), worker("free")]
    t = task(inputs=[("k", 10**9)])
    assert place(t, workers, {"k": {"holder"}}) == "holder"
    assert place(t, full, {"k": {"holder"}}) == "free"


def test_ties_go_to_the_least_loaded_then_by_name():
    workers = [worker("b", running=1), worker("c", running=0), worker("a", running=1)]
    assert place(task(), workers, {}) == "c"
    assert place(task(), [worker("b"), worker("a")], {}) == "a"


def test_random_placement_picks_among_fitting_workers_only():
    workers = [worker("tiny", cores=1), worker("x", cores=4), worker("y", cores=4)]
    rng = random.Random(1)
    picks = {place(task(cores=2), workers, {}, rng) for _ in range(50)}
    assert picks == {"x", "y"}


def test_a_peer_holding_the_file_serves_it_not_the_manager():
    assert choose_sources({"w2", "w1"}, {}, 3, manager_has=True) == ["w1", "w2"]
    assert choose_sources({"w1", "w2"}, {"w1": 2}, 3, manager_has=True) == ["w2", "w1"]


def test_the_manager_sends_a_file_once_then_waits_for_peers():
    assert choose_sources(set(), {}, 3, manager_has=True) == [MANAGER]
    assert choose_sources(set(), {}, 3, manager_has=True, moving=1) is None


def test_a_busy_source_makes_the_task_wait():
    assert choose_sources({"w1"}, {"w1": 3}, 3, manager_has=True) is None


def test_without_peer_transfers_everything_comes_from_the_manager():
    assert choose_sources({"w1"}, {}, 3, manager_has=True, peers=False) == [MANAGER]
    assert choose_sources({"w1"}, {MANAGER: 3}, 3, manager_has=True, peers=False) is None


def test_a_worker_still_receiving_a_file_is_a_source_after_complete_holders():
    # manager → w1 is under way: w2 follows w1 rather than wait for a whole copy
    assert choose_sources(set(), {MANAGER: 1}, 1, manager_has=True, moving=1,
                          receivers=["w1"]) == ["w1"]
    # a complete holder first, then the free receiver, busy ones last (fallbacks)
    assert choose_sources({"w9"}, {"w1": 1}, 1, manager_has=True, moving=2,
                          receivers=["w2", "w1"]) == ["w9", "w2", "w1"]
    assert choose_sources({"w9"}, {"w9": 1}, 1, manager_has=True, moving=1,
                          receivers=["w2"]) == ["w2", "w9"]
    # the limit holds for receivers too: every copy busy serving means wait
    assert choose_sources(set(), {"w1": 1, MANAGER: 1}, 1, manager_has=True, moving=1,
                          receivers=["w1"]) is None
    # a holder is not counted twice, and without peer transfers receivers serve nothing
    assert choose_sources({"w1"}, {}, 3, manager_has=True, receivers=["w1"]) == ["w1"]
    assert choose_sources(set(), {}, 3, manager_has=True, peers=False,
                          receivers=["w1"]) == [MANAGER]


def test_a_file_held_nowhere_has_no_source():
    assert choose_sources(set(), {}, 3, manager_has=False) == []


def test_sizes_learnt_later_count_and_any_held_file_beats_none():
    workers = [worker("a"), worker("b")]
    t = task(inputs=[("k1", 0), ("k2", 0)])
    assert place(t, workers, {"k1": {"a"}, "k2": {"b"}}, sizes={"k2": 900}) == "b"
    assert place(task(inputs=[("k1", 0)]), workers, {"k1": {"b"}}) == "b"


def test_the_holder_of_intermediates_is_found_busy_or_not():
    workers = [worker("a"), worker("b", cores=0)]
    t = task(inputs=[("tmp1", 5), ("src", 100), ("tmp2", 5)])
    replicas = {"tmp1": {"b"}, "tmp2": {"b", "a"}, "src": {"a"}}
    assert holder(t, workers, replicas, {"tmp1", "tmp2"}) == "b"
    assert holder(t, workers, replicas, {"src"}) == "a"
    assert holder(t, workers, replicas, set()) is None


# ---------------------------------------------------------------- disk beside the cache


def cached_worker(wid, disk_mb, cached_mb=0.0, incoming=(), same_host=False):
    return replace(worker(wid, disk_mb=disk_mb), cached_mb=cached_mb,
                   incoming=frozenset(incoming), same_host=same_host)


def test_declared_disk_must_fit_beside_what_the_cache_holds():
    t = task(disk_mb=10)
    assert place(t, [cached_worker("a", 20, cached_mb=12)], {}) is None
    assert place(t, [cached_worker("a", 20, cached_mb=10)], {}) == "a"
    # locality would pick "a", which holds the input, but its cache leaves no room: room is
    # to be made there first; failing that, "b" (random placement does not wait for room)
    big = task(disk_mb=10, inputs=[("k", 12_000_000)])
    ws = [cached_worker("a", 20, cached_mb=12), cached_worker("b", 100)]
    assert place(big, ws, {"k": {"a"}}) is None
    assert place(big, ws, {"k": {"a"}}, room_first=False) == "b"
    assert place(big, ws, {"k": {"a"}}, rng=random.Random(1)) == "b"
    # a worker kept out by its cache but holding no more than one that fits: no waiting
    assert place(big, ws, {"k": {"a", "b"}}) == "b"
    assert place(task(disk_mb=10), ws, {}) == "b"


def test_inputs_a_worker_would_have_to_fetch_count_against_its_disk():
    t = task(disk_mb=10, inputs=[("k", 15_000_000)])
    assert not cache_fits(t, need(t.resources), cached_worker("a", 20), {}, {})
    assert cache_fits(t, need(t.resources), cached_worker("a", 25), {}, {})
    # already held, or on its way (and so in cached_mb already): not counted again
    assert cache_fits(t, need(t.resources), cached_worker("a", 30, cached_mb=15), {"k": {"a"}}, {})
    assert cache_fits(t, need(t.resources),
                      cached_worker("a", 30, cached_mb=15, incoming={"k"}), {}, {})
    # sizes learnt after the task was built count; a same-host worker links inputs instead
    t0 = task(disk_mb=10, inputs=[("k", 0)])
    assert not cache_fits(t0, need(t0.resources), cached_worker("a", 20), {}, {"k": 15_000_000})
    local = replace(t0, inputs=(TaskFile("k", "k", "/data/k", 0),))
    assert cache_fits(local, need(local.resources), cached_worker("a", 20, same_host=True), {},
                      {"k": 15_000_000})


def test_a_task_declaring_no_disk_is_not_held_back_by_a_full_cache():
    assert place(task(), [cached_worker("a", 20, cached_mb=50)], {}) == "a"


# ---------------------------------------------------------------- making room in a cache


def full(wid, disk_mb=20, cached_mb=16, **kw):
    return replace(cached_worker(wid, disk_mb, cached_mb=cached_mb), **kw)


def test_make_room_drops_the_least_useful_files_first():
    t = task(disk_mb=8)  # 20 MB offered, 16 cached: 4 MB short
    cache = [Cached("sole", 4 * MB, 0, recreatable=True),
             Cached("forever", 4 * MB, 1, forever=True),
             Cached("old", 2 * MB, 1), Cached("new", 2 * MB, 1)]
    assert make_room(t, [full("a")], {"a": cache}, {}, {}, set()) == ("a", ("old", "new"))
    # a file with more copies elsewhere goes before an older one with fewer
    cache[3] = Cached("new", 2 * MB, 3)
    assert make_room(t, [full("a")], {"a": cache}, {}, {}, set()) == ("a", ("new", "old"))
    # what a waiting or running task needs stays: then `@cache forever` goes
    assert make_room(t, [full("a")], {"a": cache}, {}, {}, {"old"}) == ("a", ("new", "forever"))
    # and only then a sole copy that its producer can make again
    assert make_room(t, [full("a")], {"a": cache}, {}, {}, {"old", "forever"}) == (
        "a", ("new", "sole"))


def test_make_room_never_drops_a_sole_copy_nothing_can_make_again():
    t = task(disk_mb=14)  # 20 MB offered, 10 cached: 4 MB short, "spare" frees only 2
    cache = [Cached("sole", 8 * MB, 0), Cached("spare", 2 * MB, 1)]
    assert make_room(t, [full("a", cached_mb=10)], {"a": cache}, {}, {}, set()) is None
    assert make_room(t, [full("a", cached_mb=10)], {"a": cache[1:]}, {}, {}, set()) is None
    cache[0] = Cached("sole", 8 * MB, 0, recreatable=True)
    assert make_room(t, [full("a", cached_mb=10)], {"a": cache}, {}, {}, set()) == (
        "a", ("spare", "sole"))


def test_make_room_only_where_the_task_fits_but_for_the_cache():
    cache = {"a": [Cached("f", 16 * MB, 1)]}
    # more disk than the worker offers at all: no dropping helps (the error path applies)
    assert make_room(task(disk_mb=30), [full("a")], cache, {}, {}, set()) is None
    # cores all taken: dropping now would gain nothing
    busy = full("a", free=Resources(cores=0, memory_mb=1000, disk_mb=20, gpus=0))
    assert make_room(task(disk_mb=8), [busy], cache, {}, {}, set()) is None
    # no disk declared: nothing to make room for
    assert make_room(task(), [full("a")], cache, {}, {}, set()) is None
    # the inputs it would fetch need room too; files on their way cannot be dropped
    t = task(disk_mb=2, inputs=[("k", 6 * MB)])
    assert make_room(t, [full("a")], cache, {}, {}, set()) == ("a", ("f",))
    on_way = full("a", cached_mb=20, incoming=frozenset({"x"}))  # "f" and 4 MB of "x"
    assert make_room(task(disk_mb=16), [on_way], cache, {}, {}, set()) == ("a", ("f",))
    assert make_room(task(disk_mb=18), [on_way], cache, {}, {}, set()) is None


def test_make_room_picks_the_worker_that_loses_least():
    t = task(disk_mb=8)
    ws = [full("a"), full("b"), full("c")]
    caches = {"a": [Cached("a1", 4 * MB, 1, forever=True)],
              "b": [Cached("b1", 16 * MB, 1)],
              "c": [Cached("c1", 4 * MB, 1), Cached("c2", 12 * MB, 1)]}
    assert make_room(t, ws, caches, {}, {}, set()) == ("c", ("c1",))
    del caches["c"]
    assert make_room(t, ws, caches, {}, {}, set()) == ("b", ("b1",))  # forever goes last
    # a worker with room already: only one holding more of the inputs makes room
    ws.append(full("d", cached_mb=0))
    assert make_room(t, ws, caches, {}, {}, set()) is None
    t = task(disk_mb=8, inputs=[("in", 1 * MB)])
    assert make_room(t, ws, caches, {"in": {"a"}}, {}, set()) == ("a", ("a1",))
    assert make_room(t, ws, caches, {"in": {"a", "d"}}, {}, set()) is None


def test_make_room_prefers_the_worker_holding_the_inputs_within_a_tier():
    t = task(disk_mb=8, inputs=[("in", 0)])  # its size unknown: it counts 1 byte held
    ws = [full("a"), full("b")]
    caches = {"a": [Cached("a1", 16 * MB, 1)], "b": [Cached("b1", 4 * MB, 1)]}
    assert make_room(t, ws, caches, {"in": {"a"}}, {}, set()) == ("a", ("a1",))
    assert make_room(t, ws, caches, {}, {}, set()) == ("b", ("b1",))


# ---------------------------------------------------------------- with real workers


def start_worker(m: Manager, tmp_path, name: str, cores: int, disk_mb: int):
    opts = ProviderOptions(worker_resources=Resources(cores=cores, memory_mb=1000,
                                                      disk_mb=disk_mb), worker_timeout_s=30)
    cmd = worker_command(ManagerAddress(m.host, m.port), opts, str(tmp_path / f"w-{name}"),
                         name) + ["--as-remote"]  # or inputs are linked, not cached
    log = open(tmp_path / f"{name}.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while name not in m.workers:  # readiness, not a timing assertion
        assert time.monotonic() < deadline, f"worker {name} did not join"
        time.sleep(0.02)
    return proc


def run_one(m: Manager, t: Task, timeout: float = 60):
    m.submit(t)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in m.wait(1.0):
            if r.task_id == t.id:
                return r
    raise AssertionError(f"task {t.id} was never placed")


def disk_task(i: int, tmp_path, disk_mb: int, inputs=()):
    return Task(id=i, rule_key=f"r{i}", name=f"t{i}", command=f"cksum {' '.join(inputs)} "
                f"> out.{i}", resources=Resources(disk_mb=disk_mb),
                inputs=tuple(TaskFile(f"file-{n}", n, str(tmp_path / n), 0) for n in inputs),
                outputs=(TaskFile(f"out-{i}", f"out.{i}", str(tmp_path / f"out.{i}"), 0),))


def test_real_workers_a_cache_keeps_its_disk_until_the_workflow_ends(tmp_path):
    (tmp_path / "big.in").write_bytes(os.urandom(12 * MB))
    with socket.socket() as s:  # a free port the second manager can take again
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    first = Manager.start(ManagerConfig(workdir=str(tmp_path / "m1"), port=port))
    procs = []
    try:
        procs.append(start_worker(first, tmp_path, "a", cores=2, disk_mb=20))
        r = run_one(first, disk_task(1, tmp_path, 1, ["big.in"]))  # 1 MB + 12 MB fetched
        assert (r.status, r.worker) == ("ok", "a")
        b = start_worker(first, tmp_path, "b", cores=1, disk_mb=100)
        # "a" is idle and first by name, but 12 of its 20 MB hold big.in: 10 MB do not fit
        r = run_one(first, disk_task(2, tmp_path, 10))
        assert (r.status, r.worker) == ("ok", "b")
        b.terminate()
        b.wait(30)
    finally:
        first.close()
    # the workflow is over: "a" emptied its cache, so the next manager may use all its disk
    second = Manager.start(ManagerConfig(workdir=str(tmp_path / "m2"), port=port))
    try:
        deadline = time.monotonic() + 30
        while "a" not in second.workers:
            assert time.monotonic() < deadline, "worker a did not reconnect"
            time.sleep(0.02)
        r = run_one(second, disk_task(3, tmp_path, 10))
        assert (r.status, r.worker) == ("ok", "a")
    finally:
        second.close()
        for p in procs:
            p.terminate()
            p.wait(30)


def test_real_workers_a_full_cache_makes_room_instead_of_waiting_forever(tmp_path):
    (tmp_path / "big.in").write_bytes(os.urandom(12 * MB))
    m = Manager.start(ManagerConfig(workdir=str(tmp_path / "m")))
    proc = None
    try:
        proc = start_worker(m, tmp_path, "a", cores=2, disk_mb=20)
        assert run_one(m, disk_task(1, tmp_path, 1, ["big.in"])).ok  # 12 MB cached
        made = Task(id=2, rule_key="r2", name="t2", command="yes vinemake | head -c 6000000 "
                    "> tmp.dat", outputs=(TaskFile("out-tmp", "tmp.dat", None, 0),))
        assert run_one(m, made).ok  # 6 MB more, the only copy (a @temp intermediate)
        # 16 MB fit in 20 only once all goes: big.in and out.1 first (the manager has them),
        # then the intermediate, whose producer can make it again. Else it waits forever.
        r = run_one(m, disk_task(3, tmp_path, 16), timeout=20)
        assert (r.status, r.worker, m.evicted) == ("ok", "a", 3)
        reader = Task(id=4, rule_key="r4", name="t4", command="cksum tmp.dat > out.4",
                      inputs=(TaskFile("out-tmp", "tmp.dat", None, 0),),
                      outputs=(TaskFile("out-4", "out.4", str(tmp_path / "out.4"), 0),))
        assert run_one(m, reader).ok  # t2 ran again, silently, to re-create tmp.dat
        (tmp_path / "tmp.dat").write_bytes((b"vinemake\n" * 666_667)[:6_000_000])
        want = subprocess.run(["cksum", "tmp.dat"], cwd=tmp_path, capture_output=True).stdout
        assert (tmp_path / "out.4").read_bytes() == want
        assert run_one(m, disk_task(5, tmp_path, 1, ["big.in"])).ok  # fetched again
        want = subprocess.run(["cksum", "big.in"], cwd=tmp_path, capture_output=True).stdout
        assert (tmp_path / "out.5").read_bytes() == want
    finally:
        m.close()
        if proc is not None:
            proc.terminate()
            proc.wait(30)


def test_the_wait_for_a_holder_scales_with_the_copy_it_saves():
    assert locality_wait_s(50_000_000, 25_000_000) == 2.0  # 50 MB at 200 Mbit/s
    assert locality_wait_s(1_000_000, 25_000_000) == 1.0  # never under the floor
    assert locality_wait_s(0, None) == 1.0
    assert locality_wait_s(50_000_000, None) == 4.0  # 100 Mbit/s until a copy was timed
    assert locality_wait_s(10**12, 1_000_000) == 60.0  # never forever
    assert locality_wait_s(50_000_000, 25_000_000, floor_s=3.0) == 3.0


def test_the_observed_rate_follows_large_transfers_only():
    assert blend_rate(None, 500_000, 0.001) is None  # a small file times latency
    assert blend_rate(None, 50_000_000, 0.005) is None  # too quick to time
    assert blend_rate(None, 50_000_000, 2.0) == 25_000_000
    assert blend_rate(25_000_000, 50_000_000, 1.0) == 25_000_000 + 0.25 * 25_000_000


def test_missing_bytes_counts_what_is_not_on_the_worker_yet():
    t = Task(id=1, rule_key="r", name="t", command="c",
             inputs=(TaskFile("k1", "a", None, 10), TaskFile("k2", "b", None, 0),
                     TaskFile("k3", "c", None, 7)))
    w = WorkerView("w1", Resources(cores=1), incoming=frozenset({"k3"}))
    assert missing_bytes(t, w, {"k1": {"w2"}, "k2": {"w1"}}, {"k1": 50}) == 50
