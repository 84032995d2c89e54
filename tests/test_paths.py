"""remove_path: whatever is at a path goes, a link never takes what it points to with it."""

import os

from vinemake.common.paths import remove_path


def test_a_file_a_flat_and_a_nested_directory_and_nothing_at_all(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a").write_text("a")
    (tmp_path / "deep" / "b" / "c").mkdir(parents=True)
    (tmp_path / "deep" / "b" / "c" / "d").write_text("d")
    for name in ("f", "flat", "deep", "missing"):
        remove_path(str(tmp_path / name))
    assert os.listdir(tmp_path) == []


def test_a_link_to_a_directory_goes_but_the_directory_stays(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "keep").write_text("k")
    os.symlink(tmp_path / "real", tmp_path / "link")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    remove_path(str(tmp_path / "link"))
    remove_path(str(tmp_path / "dangling"))
    assert sorted(os.listdir(tmp_path)) == ["real"]
    assert (tmp_path / "real" / "keep").read_text() == "k"
