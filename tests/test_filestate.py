"""Source hashing: memoised by stat, never re-reading an unchanged file."""

import os
import time

import pytest

from vinemake.common.errors import InputError
from vinemake.common.hashing import hash_file
from vinemake.core.filestate import RACY_NS, FileState, racy, snapshot_digest
from vinemake.core.keys import source_key


def aged(path) -> None:
    """Make `path` look written a minute ago, as a source usually is when a run reads it."""
    then = time.time_ns() - 60 * 10**9 + 1
    os.utime(path, ns=(then, then))


def test_key_is_xxh3_of_content(tmp_path):
    p = tmp_path / "a"
    p.write_bytes(b"hello")
    fs = FileState(None)
    assert fs.key(str(p)) == source_key(hash_file(str(p))[1])
    assert fs.key(str(p)) == "file-xxh3_128-b5e9c1ad071b3e7fc779cfaa5e523818"



def test_unchanged_file_is_not_reread_next_run(tmp_path):
    p = tmp_path / "a"
    p.write_bytes(b"x" * 3_000_000)
    aged(p)
    memo = str(tmp_path / ".vinemake" / "filestate")
    first = FileState(memo)
    k = first.key(str(p))
    first.save()
    second = FileState(memo)
    assert second.key(str(p)) == k
    assert second.reads == 0


def clock_past(st: os.stat_result, directory) -> None:
    """Wait until a file changed now gets later times than `st`: with coarse timestamps (a
    kernel before 6.13 stamps every change within a tick of 1-10 ms alike) a rewrite right
    after `st` keeps its mtime and ctime, and even a hash-free stat check cannot see it."""
    probe = directory / "clock-probe"
    while True:
        probe.write_text("")
        if os.stat(probe).st_ctime_ns > max(st.st_mtime_ns, st.st_ctime_ns):
            break
    probe.unlink()


def test_touch_rehashes_but_keeps_key_and_edit_changes_it(tmp_path):
    p = tmp_path / "a"
    p.write_bytes(b"one")
    aged(p)  # memoised: a file hashed just after its change is not (racy)
    memo = str(tmp_path / "memo")
    fs = FileState(memo)
    k = fs.key(str(p))
    fs.save()
    st = os.stat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = FileState(memo)
    assert again.key(str(p)) == k and again.reads == 1
    clock_past(st, tmp_path)  # the memo's times are st's: an edit must not share them
    p.write_bytes(b"two")
    assert FileState(memo).key(str(p)) != k


def test_directory_key_covers_names_and_content(tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "f").write_text("1")
    k = FileState(None).key(str(d))
    (d / "sub" / "f").write_text("2")
    k2 = FileState(None).key(str(d))
    (d / "sub" / "f").rename(d / "g")
    (d / "g").write_text("2")
    k3 = FileState(None).key(str(d))
    assert len({k, k2, k3}) == 3


def test_each_path_is_stated_once(tmp_path):
    p = tmp_path / "a"
    p.write_text("1")
    fs = FileState(None)
    fs.key(str(p))
    p.write_text("22")  # changed behind our back: this run keeps its first view
    assert fs.stat(str(p)).st_size == 1


def test_missing_source_and_damaged_memo(tmp_path):
    with pytest.raises(InputError, match=r"^source '.*nope' does not exist$"):
        FileState(None).key(str(tmp_path / "nope"))
    memo = tmp_path / "memo"
    memo.write_text("garbage\n1 2 x k p\n")
    assert FileState(str(memo)).memo == {}


def test_snapshot_matches_until_any_recorded_file_changes(tmp_path):
    from vinemake.core.filestate import snapshot_digest, snapshot_matches, write_snapshot

    src, out = tmp_path / "a b.txt", tmp_path / "out"
    src.write_text("1")
    out.write_text("2")
    snap = str(tmp_path / "uptodate")
    digest = snapshot_digest(b"rules $(HOME)", {"HOME": "/h", "COLUMNS": "80"}, "opts")
    assert digest == snapshot_digest(b"rules $(HOME)", {"HOME": "/h"}, "opts")
    ost = os.stat(out)
    write_snapshot(snap, digest, [(str(src), os.stat(src))],
                   [(str(out), ost.st_size, ost.st_mtime_ns)], rules=7)
    assert snapshot_matches(snap, digest) == 7
    assert snapshot_matches(snap, snapshot_digest(b"rules $(HOME)", {"HOME": "/x"},
                                                  "opts")) is None
    assert snapshot_matches(snap, snapshot_digest(b"rules $HOME", {"HOME": "/h"},
                                                  "opts")) is None
    os.utime(src, ns=(1, 1))  # a touch: the fast path gives up, the full path decides
    assert snapshot_matches(snap, digest) is None
    write_snapshot(snap, digest, [(str(src), os.stat(src))],
                   [(str(out), ost.st_size, ost.st_mtime_ns)])
    out.unlink()
    assert snapshot_matches(snap, digest) is None


def test_a_rewrite_that_restores_mtime_is_seen_through_ctime(tmp_path):
    p = tmp_path / "a"
    p.write_text("1")
    aged(p)
    memo = str(tmp_path / "memo")
    first = FileState(memo)
    k1 = first.key(str(p))
    first.save()
    assert list(FileState(memo).memo) == [str(p)]
    st = os.stat(p)
    clock_past(st, tmp_path)  # else the rewrite's ctime may be the memo's
    p.write_text("2")  # same size; `cp -p` / `touch -d` put the old mtime back
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = FileState(memo)
    assert again.key(str(p)) != k1
    assert again.reads == 1


def test_refresh_takes_the_ctime_a_run_s_own_links_gave(tmp_path):
    p = tmp_path / "a"
    p.write_text("1")
    aged(p)
    memo = str(tmp_path / "memo")
    run = FileState(memo)
    run.key(str(p))
    os.link(p, tmp_path / "sandbox-link")  # what the local worker does: changes ctime
    os.unlink(tmp_path / "sandbox-link")
    run.refresh()
    run.save()
    assert run.stats[str(p)].st_ctime_ns == os.stat(p).st_ctime_ns  # the snapshot's view too
    again = FileState(memo)
    again.key(str(p))
    assert again.reads == 0


def test_refresh_keeps_the_old_signature_of_a_file_rewritten_during_the_run(tmp_path):
    p = tmp_path / "a"
    p.write_text("1")
    memo = str(tmp_path / "memo")
    run = FileState(memo)
    k1 = run.key(str(p))
    p.write_text("22")
    run.refresh()
    run.save()
    again = FileState(memo)
    assert again.key(str(p)) != k1
    assert again.reads == 1


def test_a_file_hashed_within_a_tick_of_its_change_is_not_memoised(tmp_path):
    # Another change in the same tick would keep size, mtime and ctime (a second on ext3,
    # 1-10 ms on a kernel's coarse clock): the next run must hash it again, not trust its stat.
    p = tmp_path / "a"
    p.write_text("1")
    memo = str(tmp_path / "memo")
    first = FileState(memo)
    k = first.key(str(p))
    first.save()
    assert first.racy == {str(p)} and FileState(memo).memo == {}
    aged(p)
    later = FileState(memo)
    assert later.key(str(p)) == k and later.reads == 1 and later.racy == set()
    later.save()
    assert FileState(memo).key(str(p)) == k and list(FileState(memo).memo) == [str(p)]


def test_racy_is_within_a_tick_or_within_seconds_of_a_whole_second_stamp():
    now = 1_700_000_000_123_456_789
    assert racy(now - RACY_NS // 2, now) and racy(now, now)
    assert not racy(now - 2 * RACY_NS, now)
    second = 1_700_000_000 * 10**9  # a file system that keeps whole seconds
    assert racy(second, now) and racy(second - 2 * 10**9, now)
    assert not racy(second - 10 * 10**9, now)


def test_a_memo_in_the_old_format_is_ignored(tmp_path):
    p = tmp_path / "a"
    p.write_text("1")
    st = os.stat(p)
    memo = tmp_path / "memo"
    memo.write_text(f"{st.st_size} {st.st_mtime_ns} {st.st_ino} k-old {p}\n")
    fs = FileState(str(memo))
    assert fs.memo == {}
    assert fs.key(str(p)) != "k-old"


def test_the_snapshot_digest_reads_the_variables_the_vinefile_names_as_words():
    text = b"out: in\n\tcp $(NAME) 9LANG x_HOME HOMEx $HOME_DIR\n"
    environ = {"NAME": "n", "LANG": "C", "HOME": "/h", "HOME_DIR": "/d", "PATH": "/bin",
               "x": "1", "_": "/usr/bin/env", "N\udcff": "odd"}
    base = snapshot_digest(text, environ, "")
    # a variable the Vinefile does not name as a word changes nothing
    for name in ("HOME", "PATH", "x", "_", "N\udcff"):
        assert snapshot_digest(text, dict(environ, **{name: "other"}), "") == base, name
    # one it names does: `$(NAME)`, `9LANG` (findall's word after the digit), `$HOME_DIR`
    for name in ("NAME", "LANG", "HOME_DIR"):
        assert snapshot_digest(text, dict(environ, **{name: "other"}), "") != base, name


def test_a_name_the_vinefile_holds_many_times_is_found_as_a_word_or_not():
    many = b"".join(b"o%d: HOMEx\n\tx_HOME 1 > o%d\n" % (i, i) for i in range(1500))
    assert snapshot_digest(many, {"HOME": "a"}, "") == snapshot_digest(many, {"HOME": "b"}, "")
    named = many + b"z: \n\techo $HOME\n"
    assert snapshot_digest(named, {"HOME": "a"}, "") != snapshot_digest(named, {"HOME": "b"},
                                                                          "")
