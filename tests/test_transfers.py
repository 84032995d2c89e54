"""Putting files in place atomically, and the transfer log (files in a temporary directory)."""

from __future__ import annotations

import os

from vinemake.manager.transfers import TransferLog, install, install_bytes


def test_install_links_a_file_into_place_and_replaces_a_directory(tmp_path):
    (tmp_path / "src").write_text("new")
    target = tmp_path / "deep" / "t"
    install(str(tmp_path / "src"), str(target))
    assert target.read_text() == "new" and (tmp_path / "src").exists()
    assert os.stat(tmp_path / "src").st_ino == os.stat(target).st_ino  # linked, not copied
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "inner").write_text("i")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "stale").write_text("s")
    install(str(tmp_path / "d"), str(tmp_path / "old"))
    assert sorted(os.listdir(tmp_path / "old")) == ["inner"]


def test_install_with_move_takes_the_file_itself(tmp_path):
    (tmp_path / "received").write_text("bytes")
    install(str(tmp_path / "received"), str(tmp_path / "out"), move=True)
    assert (tmp_path / "out").read_text() == "bytes" and not (tmp_path / "received").exists()


def test_nothing_half_written_is_left_when_install_fails(tmp_path):
    (tmp_path / "blocker").write_text("a file where a directory should be")
    try:
        install_bytes(b"data", str(tmp_path / "blocker" / "out"))
    except OSError:
        pass
    assert sorted(os.listdir(tmp_path)) == ["blocker"]


def test_an_empty_output_is_made_in_place_and_replaces_whatever_is_there(tmp_path):
    install_bytes(b"", str(tmp_path / "new"))
    (tmp_path / "file").write_text("old")
    install_bytes(b"", str(tmp_path / "file"))
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "inside").write_text("x")
    install_bytes(b"", str(tmp_path / "dir"))
    install_bytes(b"", str(tmp_path / "deep" / "er"))
    for name in ("new", "file", "dir", "deep/er"):
        assert (tmp_path / name).is_file() and (tmp_path / name).read_bytes() == b""
    assert sorted(os.listdir(tmp_path)) == ["deep", "dir", "file", "new"]  # no temporaries


def test_small_output_bytes_replace_a_file_or_a_directory(tmp_path):
    (tmp_path / "file").write_text("old")
    install_bytes(b"new", str(tmp_path / "file"))
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "inside").write_text("x")
    install_bytes(b"new", str(tmp_path / "dir"))
    assert (tmp_path / "file").read_bytes() == (tmp_path / "dir").read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == ["dir", "file"]


def test_the_log_has_a_header_then_a_line_per_transfer_and_tells_its_listener(tmp_path):
    heard = []
    log = TransferLog(str(tmp_path / "log.tsv"), lambda *fields: heard.append(fields))
    log.record("w1", "manager", "out-1", 5, 1.0, 2.5)
    log.record("manager", "w2", "file-in", 0, 3.0, 3.0, ok=False)
    log.close()
    assert (tmp_path / "log.tsv").read_text().splitlines() == [
        "source\tdest\tkey\tbytes\tstart\tend\tok",
        "w1\tmanager\tout-1\t5\t1.000000\t2.500000\tok",
        "manager\tw2\tfile-in\t0\t3.000000\t3.000000\tfailed"]
    assert heard[1] == ("manager", "w2", "file-in", 0, 3.0, 3.0, False)
    reopened = TransferLog(str(tmp_path / "log.tsv"))  # appends; one header
    reopened.close()
    assert (tmp_path / "log.tsv").read_text().count("source\tdest") == 1
