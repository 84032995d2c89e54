"""The journal: replayed state, torn lines, batching, compaction."""

import json
import tracemalloc

import pytest

from vinemake.common.packed import pack, unpack
from vinemake.core.journal import FileRecord, Journal, part_map, replay


def done_line(rule, outputs, name="x"):
    return json.dumps({"ev": "done", "rule": rule, "name": name, "outputs": outputs,
                       "parts": [["command", "c1"]], "inputs": [["a", "k"]]})


def test_replay_keeps_last_completion_and_files():
    st = replay([
        json.dumps({"ev": "started", "rule": "r1", "name": "x"}),
        done_line("r1", [["x", "o1", 3, 100]]),
        json.dumps({"ev": "started", "rule": "r2", "name": "y"}),
    ])
    assert part_map(st.done["r1"]) == {"command": "c1"}
    assert st.files["x"].key == "o1" and st.files["x"].size == 3
    assert st.incomplete == {"r2"}
    assert st.previous("x", "x").key == "r1"


def test_torn_last_line_is_ignored():
    good = done_line("r1", [["x", "o1", 3, 100]])
    st = replay([good, good[: len(good) // 2]])
    assert set(st.done) == {"r1"} and st.lines == 2


def test_failed_collected_removed():
    st = replay([
        done_line("r1", [["x", "o1", 3, 100]]),
        json.dumps({"ev": "collected", "path": "x"}),
        json.dumps({"ev": "failed", "rule": "r2", "name": "y"}),
    ])
    assert st.files["x"].collected and st.failed == {"r2": "y"}
    st2 = replay([done_line("r1", [["x", "o1", 3, 100]]), json.dumps({"ev": "removed",
                                                                       "path": "x"})])
    assert st2.files == {}


def test_targetless_rule_is_found_by_name():
    st = replay([done_line("r9", [], name="rule@4")])
    assert st.previous("rule@4", None).key == "r9"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_appends_are_batched_until_a_few_seconds_pass(tmp_path):
    path = tmp_path / "journal"
    clock = Clock()
    j = Journal(str(path), clock)
    j.open()
    j.started("r1", "x")
    j.tick()
    assert path.read_text() == ""  # buffered, not written per task
    clock.now = 0.3
    j.tick()
    assert json.loads(path.read_text())["rule"] == "r1"  # written to the OS
    synced = []
    j.sync = lambda: synced.append(clock.now)
    j.started("r2", "y")
    j.tick()
    clock.now = 10.0
    j.tick()
    assert synced == [10.0]
    del j.sync
    j.done("r1", "x", "ran", [("command", "c9")], [], [("x", "o1", 1, 2)])
    j.close()
    state = Journal(str(path)).state
    assert state.files["x"].key == "o1"
    assert part_map(state.done["r1"]) == {"command": "c9"}


def test_buffered_lines_hold_about_their_bytes_not_a_buffer_each(tmp_path):
    # orjson returns each line in a bytes object the size of its working buffer (1-4 KiB by
    # version): kept one by one until the write, 10k null rules' run grew by ~38 MB
    path = tmp_path / "journal"
    j = Journal(str(path), Clock())
    j.open()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for rule in range(2000):
            j.started(f"r{rule}", f"out.{rule}")
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 2000 * 200  # ~50 bytes a line
    j.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 2000 and json.loads(lines[-1])["name"] == "out.1999"


def test_compaction_keeps_live_records_only(tmp_path):
    path = tmp_path / "journal"
    lines = [done_line(f"r{i}", [["x", f"o{i}", 1, i]]) for i in range(2000)]
    lines += [json.dumps({"ev": "failed", "rule": "bad", "name": "b"}),
              json.dumps({"ev": "started", "rule": "cut", "name": "c"})]
    path.write_text("\n".join(lines) + "\n")
    j = Journal(str(path))
    j.open()
    j.close()
    text = path.read_text().splitlines()
    assert len(text) == 3
    st = Journal(str(path)).state
    assert st.files["x"].key == "o1999" and set(st.done) == {"r1999"}
    assert st.failed == {"bad": "b"} and st.incomplete == {"cut"}


def test_a_record_made_now_is_written_whole_and_held_without_what_only_later_runs_read(
        tmp_path):
    path = tmp_path / "journal"
    j = Journal(str(path))
    j.open()
    j.done("r1", "x", "ran", (("command", "c1"), ("environment", "e1")), (("a", "k"),),
           [("x", "o1", 3, 100, "h1")], (1.0, 2.0, 0.0, 0.5), (("a", "ha"),))
    assert "r1" not in j.state.done  # this run reads only its files
    assert (j.state.files["x"].key, j.state.files["x"].rule) == ("o1", "r1")
    assert j.state.files["x"].content == "h1"
    j.close()
    again = Journal(str(path)).state.done["r1"]  # what the next run's plan reads
    assert part_map(again) == {"command": "c1", "environment": "e1"}
    assert (again.inputs, again.seen) == ((("a", "k"),), (("a", "ha"),))


def test_parts_are_written_as_one_string_whatever_parts_rules_share(tmp_path):
    path = tmp_path / "journal"
    j = Journal(str(path))
    j.open()
    shared = (("environment", "e1"), ("resources", "s1"))
    j.done("r1", "x", "ran", (("command", "c1"), *shared), (), [])
    j.done("r2", "y", "ran", (("command", "c2"), *shared), (), [])
    j.done("r3", "z", "ran", (("command", "c3"), ("environment", "e2")), (), [])
    j.done("r4", "w", "ran", (("command", "c4"),), (), [])
    j.done("r5", "v", "ran", (), (), [])
    j.close()
    assert [json.loads(line)["parts"] for line in path.read_text().splitlines()] == [
        "command=c1 environment=e1 resources=s1", "command=c2 environment=e1 resources=s1",
        "command=c3 environment=e2", "command=c4", ""]


def test_a_journal_holding_records_made_now_is_never_compacted_from_them(tmp_path):
    path = tmp_path / "journal"
    path.write_text("\n".join(done_line(f"r{i}", [["x", f"o{i}", 1, i]])
                              for i in range(2000)) + "\n")
    j = Journal(str(path))
    j.done("r2000", "x", "ran", (("command", "c2"),), (), [("x", "o2000", 1, 2000, "h")])
    j.open()  # 2001 lines for one live record, but the state lacks r2000's parts
    j.close()
    st = Journal(str(path)).state
    assert part_map(st.done["r2000"]) == {"command": "c2"} and st.lines == 2001


def test_replayed_records_share_what_they_repeat_and_explain_the_same(tmp_path):
    rest = "environment=e1 resources=r1 library=l1 kind=k1"
    lines = [json.dumps({"ev": "done", "rule": f"r{i}", "name": f"t{i}", "how": "ran",
                         "parts": f"command=c{i} {rest}", "inputs": [["a", f"k{i}"]],
                         "outputs": [[f"t{i}", f"o{i}", 1, i, "h"]], "wf": "Vinefile"})
             for i in range(3)]
    st = replay(lines)
    one, two = st.done["r1"], st.done["r2"]
    assert part_map(one) == {"command": "c1", "environment": "e1", "resources": "r1",
                             "library": "l1", "kind": "k1"}
    assert one.parts.rest is two.parts.rest and one.workflow is two.workflow
    assert st.files["t1"].workflow is st.files["t2"].workflow == "Vinefile"
    assert dict(one.inputs) == {"a": "k1"}
    path = tmp_path / "journal"  # compaction writes the parts back as they were written
    path.write_text("\n".join(lines * 500) + "\n")
    j = Journal(str(path))
    j.open()
    j.close()
    assert sorted(json.loads(line)["parts"] for line in path.read_text().splitlines()) == \
        [f"command=c{i} {rest}" for i in range(3)]


def test_keys_and_hashes_are_held_as_digests_and_read_back_as_the_same_text(tmp_path):
    key, rule = "out-xxh3_128-" + "0f" * 16, "rule-xxh3_128-" + "a1" * 16
    content = "9" * 32
    path = tmp_path / "journal"
    path.write_text(json.dumps({"ev": "done", "rule": rule, "name": "x", "parts": "command=c",
                                "outputs": [["x", key, 0, 5, content]]}) + "\n")
    j = Journal(str(path))
    rec = j.state.files["x"]
    assert (rec.key, rec.size, rec.mtime_ns, rec.rule, rec.content, rec.workflow) == (
        key, 0, 5, rule, content, "")
    assert isinstance(rec._held, bytes) and len(rec._held) == 16 + 3 * 17
    assert rec.stat_if(key) == (0, 5)
    assert rec.stat_if(key[:-1] + "e") is rec.stat_if("o1") is rec.stat_if("") is None
    j.open()
    j.done(rule[:-1] + "b", "y", "ran", "command=c", (), [("y", key, -7, 2**62, "")])
    j.collected("x")
    j.restat("y", 3, 4)
    y = j.state.files["y"]
    assert (y.key, y.size, y.mtime_ns, y.rule, y.content) == (key, 3, 4, rule[:-1] + "b", "")
    assert j.state.files["x"] == rec.replaced(collected=True) != rec
    j.close()
    again = Journal(str(path)).state.files
    assert (again["x"], again["y"]) == (j.state.files["x"], y)


def test_a_file_record_of_other_text_or_stat_is_held_as_it_is():
    odd = FileRecord("o1", 2**64, 1, "r1", True, "h", "Vinefile")
    assert (odd.key, odd.size, odd.mtime_ns, odd.rule, odd.collected, odd.content,
            odd.workflow) == ("o1", 2**64, 1, "r1", True, "h", "Vinefile")
    assert odd == FileRecord("o1", 2**64, 1, "r1", True, "h", "Vinefile") != \
        odd.replaced(size=3)
    assert repr(odd.replaced(size=3)) == (
        "FileRecord(key='o1', size=3, mtime_ns=1, rule='r1', collected=True, content='h', "
        "workflow='Vinefile')")
    assert odd.stat_if("o1") == (2**64, 1) and odd.stat_if("o2") is None
    with pytest.raises(AttributeError):
        odd.size = 4


def test_text_that_is_no_lowercase_digest_is_held_as_it_is():
    for text in ("", "o1", "out-xxh3_128-" + "0F" * 16, "x" * 40 + "ab" * 16, "g" * 32,
                 "ab" * 16 + "\n", "ab" * 15, "x-" + "ab" * 14 + " ab ", "\u00e9" * 32,
                 "out-" + "ab" * 15 + "\tab"):
        assert pack(text) is text
    for text in ("ab" * 16, " " + "ab" * 16, "out-xxh3_128-" + "0f" * 16):
        assert isinstance(pack(text), bytes) and unpack(pack(text)) == text


def test_paths_of_any_bytes_and_any_script_are_read_back_as_they_were_written(tmp_path):
    # `odd` has bytes that are no UTF-8 (a lone surrogate under surrogateescape); `wide`
    # text outside ASCII; a size beyond 64 bits: each line is read back exactly.
    odd = b"caf\xe9.txt".decode("utf-8", "surrogateescape")
    wide = "résumé ✓.txt"
    path = tmp_path / "journal"
    j = Journal(str(path))
    j.open()
    j.started("r1", odd)
    j.done("r1", odd, "ran", "command=c1", (), [(odd, "o1", 3, 100, "h1")])
    j.done("r2", wide, "ran", "command=c2", ((odd, "o1"),), [(wide, "o2", 2**70, 7, "h2")])
    j.failed("r3", wide, "failed", 1)
    j.close()
    state = Journal(str(path)).state
    assert (state.files[odd].key, state.files[odd].size) == ("o1", 3)
    assert (state.files[wide].key, state.files[wide].size) == ("o2", 2**70)
    assert state.failed == {"r3": wide}
    assert path.read_bytes().count(b"\n") == 4
