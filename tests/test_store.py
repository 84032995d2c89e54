"""The cache store: insert by key, restore by link, concurrent writers, damaged entries."""

import os
import threading

from vinemake.core.store import Store

KEY = "out-xxh3_128-0123456789abcdef0123456789abcdef"


def test_insert_then_restore_by_hard_link(tmp_path):
    out = tmp_path / "w" / "x"
    out.parent.mkdir()
    out.write_text("data")
    store = Store(str(tmp_path / "cache"))
    assert not store.has(KEY)
    assert store.insert(KEY, str(out))
    assert store.has(KEY) and not store.insert(KEY, str(out))
    out.unlink()
    assert store.restore(KEY, str(out))
    assert out.read_text() == "data"
    assert os.stat(out).st_nlink == 2
    assert store.contents([KEY, "out-xxh3_128-ff"]) == {KEY}


def test_directory_output(tmp_path):
    d = tmp_path / "d"
    (d / "s").mkdir(parents=True)
    (d / "s" / "f").write_text("1")
    store = Store(str(tmp_path / "cache"))
    store.insert(KEY, str(d))
    dest = tmp_path / "w" / "d"
    assert store.restore(KEY, str(dest))
    assert (dest / "s" / "f").read_text() == "1"


def test_entry_edited_in_place_through_a_link_is_not_served(tmp_path):
    out = tmp_path / "x"
    out.write_text("data")
    store = Store(str(tmp_path / "cache"))
    store.insert(KEY, str(out))
    with open(out, "a") as f:
        f.write("more")
    os.utime(out, ns=(0, 12345))
    assert not store.restore(KEY, str(tmp_path / "y"))
    assert not store.has(KEY)
    assert not os.path.exists(store._entry(KEY))  # dropped, so the next insert can succeed
    assert store.insert(KEY, str(out))


def test_directory_entries_race_to_one_winner(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "f").write_text("1")
    store = Store(str(tmp_path / "cache"))
    assert store.insert(KEY, str(d)) and not store.insert(KEY, str(d))
    assert sorted(os.listdir(os.path.dirname(store._entry(KEY))))[0] == KEY


def test_missing_entry(tmp_path):
    assert not Store(str(tmp_path)).restore(KEY, str(tmp_path / "y"))


def test_concurrent_writers_leave_one_whole_entry(tmp_path):
    store = Store(str(tmp_path / "cache"))
    sources = []
    for i in range(8):
        p = tmp_path / f"src{i}"
        p.write_text("same")
        sources.append(str(p))
    results = []
    threads = [threading.Thread(target=lambda s=s: results.append(store.insert(KEY, s)))
               for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    entry_dir = os.path.dirname(store._entry(KEY))
    assert os.listdir(entry_dir) in ([KEY], sorted([KEY, KEY + ".stamp"]))
    assert store.restore(KEY, str(tmp_path / "got"))
    assert (tmp_path / "got").read_text() == "same"


def test_an_entry_abandoned_before_its_stamp_is_replaced(tmp_path, monkeypatch):
    out = tmp_path / "x"
    out.write_text("data")
    store = Store(str(tmp_path / "cache"))
    entry = store._entry(KEY)
    os.makedirs(os.path.dirname(entry))
    os.link(out, entry)  # a writer died here
    assert not store.has(KEY) and not store.insert(KEY, str(out))  # maybe still writing
    monkeypatch.setattr("vinemake.core.store.ABANDONED_S", -1.0)  # as if a minute had passed
    assert store.insert(KEY, str(out)) and store.has(KEY)


def test_symlink_output_gets_a_stamp_file(tmp_path):
    (tmp_path / "target").write_text("t")
    link = tmp_path / "link"
    link.symlink_to("target")
    store = Store(str(tmp_path / "cache"))
    assert store.insert(KEY, str(link))
    assert os.path.exists(store._entry(KEY) + ".stamp")  # symlinks take no user xattrs
    assert store.restore(KEY, str(tmp_path / "back"))
    assert os.readlink(tmp_path / "back") == "target"


def test_prune_counts_a_held_entry_once_when_both_limits_would_remove_it():
    from vinemake.core.prune import Entry, choose

    old = [Entry("a", 10, 100.0), Entry("b", 10, 100.0), Entry("c", 10, 100.0)]
    victims, held = choose(old, {"a", "b"}, older_than_s=50, max_bytes=0)
    assert [e.key for e in victims] == ["c"]
    assert held == 2
