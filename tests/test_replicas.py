"""The manager's ledger of files and its record of each worker, without sockets: copies
added and dropped, disk taken in caches, copies in flight charged to their sources, and
resources charged as a worker charges them (waiting tasks, library calls)."""

from __future__ import annotations

from vinemake.common.spec import Resources
from vinemake.common.task import LibrarySpec, Task, TaskFile
from vinemake.manager.placement import Cached
from vinemake.manager.replicas import Replicas
from vinemake.manager.workers import ConnectedWorker


def worker(wid="w1", cores=2, memory=1000, disk=1000, same_host=False) -> ConnectedWorker:
    w = ConnectedWorker.joined(wid, None, "127.0.0.1", 9000, same_host,
                      Resources(cores=cores, memory_mb=memory, disk_mb=disk, gpus=0))
    return w


def task(tid, *inputs, outputs=(), cores=1, memory=0, library=None):
    return Task(id=tid, rule_key=f"rule-{tid}", name=f"t{tid}", command="true",
                inputs=tuple(inputs), outputs=tuple(outputs), library=library,
                resources=Resources(cores=cores, memory_mb=memory))


# ---------------------------------------------------------------- copies on workers


def test_a_copy_takes_its_size_in_the_cache_once_and_is_freed_when_forgotten():
    r, w = Replicas(), worker()
    r.sizes["k"] = 300
    r.add(w, "k", "h1")
    r.add(w, "k", "h1")  # told twice (made, then transferred): counted once
    assert (r.holders, w.cached, w.cache_bytes, r.hashes) == (
        {"k": {"w1"}}, {"k": 300}, 300, {"k": "h1"})
    epoch = r.epoch
    r.forget(w, "k")
    assert (w.holds, w.cached, w.cache_bytes, r.epoch) == (set(), {}, 0, epoch + 1)
    assert r.holders == {"k": {"w1"}}  # listing it as a source is unlist's business


def test_unlist_says_when_the_last_copy_went():
    r, a, b = Replicas(), worker("a"), worker("b")
    r.add(a, "k", "")
    r.add(b, "k", "")
    assert (r.unlist("k", "a"), r.holders) == (False, {"k": {"b"}})
    assert (r.unlist("k", "b"), r.holders) == (True, {})
    assert r.unlist("k", "b") is False  # nobody held it


def test_a_lost_worker_takes_with_it_the_files_only_it_held_that_no_task_makes():
    r, a, b = Replicas(), worker("a"), worker("b")
    r.made(a, task(1, outputs=[TaskFile("out-made", "m")]), [])
    r.remote_only |= {"out-orphan", "out-shared"}
    for key in ("out-made", "out-orphan", "out-shared"):
        r.add(a, key, "")
    r.add(b, "out-shared", "")
    r.charge(a, "file-in", "b")
    assert r.worker_lost(a) == {"out-orphan"}  # out-made is re-made by its producer
    assert (r.holders, r.inflight["b"], r.moving["file-in"], a.charged) == (
        {"out-shared": {"b"}}, 0, 0, {})


def test_the_cache_of_a_worker_says_where_else_each_file_can_come_from():
    r, a, b = Replicas(), worker("a"), worker("b")
    r.sizes.update({"in": 10, "mid": 20, "keep": 30})
    r.paths["in"] = "/data/in"  # on the manager's host too
    r.made(a, task(1, outputs=[TaskFile("mid", "mid")]), [])  # kept on workers
    r.add(a, "in", "")
    r.add(a, "mid", "")
    r.add(b, "mid", "")
    r.add(a, "keep", "", forever=True)
    assert r.cache_of(a) == [Cached("in", 10, 1, False, False), Cached("mid", 20, 1, True, False),
                             Cached("keep", 30, 0, False, True)]


# ---------------------------------------------------------------- copies on their way


def test_a_copy_on_its_way_is_charged_to_its_source_until_it_arrives():
    r, w = Replicas(), worker()
    r.charge(w, "k", "peer")
    r.charge(w, "k", "peer")  # a second task waiting for the same copy: one transfer
    assert (r.inflight["peer"], r.moving_keys(), Replicas.receivers("k", "x", {"w1": w})) == (
        1, {"k"}, ["w1"])
    r.arrived(w, "k", 4_000_000, "h", 2.0)
    assert (r.inflight["peer"], r.moving_keys(), w.holds, r.sizes["k"], r.hashes["k"]) == (
        0, set(), {"k"}, 4_000_000, "h")
    assert r.rate is not None and r.rate > 0
    r.uncharge(w, "k")  # a late "failed" for a copy already accounted for changes nothing
    assert r.inflight["peer"] == 0


def test_outputs_a_same_host_worker_renamed_into_place_are_not_in_its_cache():
    r, w = Replicas(), worker(same_host=True)
    t = task(1, outputs=[TaskFile("out-a", "a", "/w/a"), TaskFile("out-b", "b")])
    placed = r.made(w, t, [("out-a", 5, "ha", "/w/a"), ("out-b", 7, "hb", "/cache/out-b")])
    assert placed == {"out-a"}
    # Where out-a is, the tasks that read it will say (note_inputs).
    assert (w.cached, dict(r.content_hashes()), r.paths, r.remote_only, r.producers) == (
        {"out-b": 7}, {"out-a": "ha", "out-b": "hb"}, {}, {"out-b"}, {"out-b": t})
    r.note_inputs([task(2, TaskFile("out-a", "a", "/w/a"))])
    assert r.paths == {"out-a": "/w/a"}


def test_content_hashes_are_held_packed_and_read_as_the_text_workers_sent():
    r, w = Replicas(), worker()
    digest = "0123456789abcdef" * 2
    r.arrived(w, "k", 1, digest, 1.0)
    r.arrived(w, "odd", 1, "not hex", 1.0)
    assert isinstance(r.hashes["k"], bytes) and len(r.hashes["k"]) == 17
    assert (r.hash_of("k"), r.hash_of("odd"), r.hash_of("none")) == (digest, "not hex", "")
    assert dict(r.content_hashes()) == {"k": digest, "odd": "not hex"}


def test_the_size_of_an_undeclared_input_is_read_once_from_its_path(tmp_path):
    f = tmp_path / "in"
    f.write_bytes(b"x" * 123)
    r = Replicas()
    assert r.size_of("k", 0, str(f)) == 123
    f.write_bytes(b"x" * 5)
    assert r.size_of("k", 0, str(f)) == 123  # learnt once
    assert r.size_of("gone", 0, str(tmp_path / "missing")) == 0
    assert r.size_of("declared", 50, None) == 50 and r.sizes["declared"] == 50


def test_note_inputs_learns_paths_of_task_and_library_inputs():
    r = Replicas()
    lib = LibrarySpec("lib", "lib-k", "serve", inputs=(TaskFile("file-l", "l", "/l"),))
    r.note_inputs([task(1, TaskFile("file-a", "a", "/a"), TaskFile("out-b", "b")),
                   task(2, library=lib)])
    assert r.paths == {"file-a": "/a", "file-l": "/l"}


# ---------------------------------------------------------------- a worker's resources


def test_tasks_sent_beyond_what_fits_wait_uncharged_and_start_in_order_as_room_frees():
    w = worker(cores=2)
    first, second = task(1, cores=2), task(2, cores=1)
    w.start(first, Resources(cores=2, memory_mb=0, disk_mb=0, gpus=0))
    w.queue(second)
    assert (w.free.cores, list(w.waiting), w.view().free.cores) == (0, [second], 0)
    del w.running[first.id]
    w.release(first)
    assert (w.free.cores, list(w.waiting), w.waiting_ids) == (1, [], set())


def test_a_cancelled_task_that_never_started_frees_nothing():
    w = worker(cores=1)
    running, queued = task(1), task(2)
    w.start(running, Resources(cores=1, memory_mb=0, disk_mb=0, gpus=0))
    w.queue(queued)
    del w.running[queued.id]
    w.release(queued)
    assert (w.free.cores, list(w.waiting)) == (0, [])


def test_a_function_call_is_charged_to_its_library_instance_not_to_itself():
    w = worker(cores=4)
    lib = LibrarySpec("lib", "lib-k", "serve", resources=Resources(cores=2), slots=2)
    call = task(1, library=lib)
    w.start(call, Resources(cores=2, memory_mb=0, disk_mb=0, gpus=0))  # the instance starts
    assert (w.libs, w.free.cores) == ({"lib-k": 1}, 2)
    del w.running[call.id]
    w.release(call)
    assert (w.libs, w.free.cores) == ({"lib-k": 0}, 2)  # the instance keeps its cores


def test_the_view_counts_files_on_their_way_as_taking_cache_space():
    r, w = Replicas(), worker()
    w.sizes = r.sizes
    r.sizes.update({"held": 2_000_000, "coming": 3_000_000})
    r.add(w, "held", "")
    r.charge(w, "coming", "peer")
    v = w.view()
    assert (v.cached_mb, v.incoming) == (5.0, frozenset({"coming"}))


def test_waiting_tasks_start_within_the_j_cap_the_worker_was_told():
    w = ConnectedWorker.joined("w1", None, "127.0.0.1", 9000, True,
                      Resources(cores=4, memory_mb=1000, disk_mb=1000, gpus=0), max_tasks=1)
    first, second = task(1), task(2)
    w.start(first, Resources(cores=1, memory_mb=0, disk_mb=0, gpus=0))
    w.queue(second)
    w.promote()  # three cores free, but one task at a time
    assert (list(w.waiting), w.free.cores) == ([second], 3)
    del w.running[first.id]
    w.release(first)
    assert (list(w.waiting), w.free.cores) == ([], 3)
