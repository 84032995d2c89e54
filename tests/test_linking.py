"""link_or_copy: a hard link on one file system, a faithful copy where links are refused."""

import errno
import os

import pytest

from vinemake.common import linking
from vinemake.common.linking import link_or_copy, link_or_copy_tree


def test_a_file_is_linked_when_the_file_system_allows(tmp_path):
    (tmp_path / "a").write_text("data")
    link_or_copy(str(tmp_path / "a"), str(tmp_path / "b"))
    assert os.stat(tmp_path / "a").st_ino == os.stat(tmp_path / "b").st_ino


@pytest.mark.parametrize("refusal", [errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES,
                                     errno.ENOTSUP])
def test_a_refused_link_becomes_a_copy_with_its_times(tmp_path, monkeypatch, refusal):
    (tmp_path / "a").write_text("data")
    os.utime(tmp_path / "a", ns=(1_000_000_000, 2_000_000_000))

    def refuse(*args, **kwargs):
        raise OSError(refusal, os.strerror(refusal))

    monkeypatch.setattr(linking.os, "link", refuse)
    link_or_copy(str(tmp_path / "a"), str(tmp_path / "b"))
    assert (tmp_path / "b").read_text() == "data"
    assert os.stat(tmp_path / "b").st_ino != os.stat(tmp_path / "a").st_ino
    assert os.stat(tmp_path / "b").st_mtime_ns == 2_000_000_000


def test_other_errors_are_not_hidden_by_a_copy(tmp_path):
    with pytest.raises(FileNotFoundError):
        link_or_copy(str(tmp_path / "absent"), str(tmp_path / "b"))
    (tmp_path / "a").write_text("x")
    (tmp_path / "b").write_text("y")
    with pytest.raises(FileExistsError):
        link_or_copy(str(tmp_path / "a"), str(tmp_path / "b"))


def test_a_tree_keeps_its_symlinks_and_links_its_files(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("f")
    os.symlink("sub/f", src / "link")
    link_or_copy_tree(str(src), str(tmp_path / "dst"))
    assert os.readlink(tmp_path / "dst" / "link") == "sub/f"
    assert os.stat(tmp_path / "dst" / "sub" / "f").st_ino == os.stat(src / "sub" / "f").st_ino
    link_or_copy_tree(str(src / "link"), str(tmp_path / "alone"))  # a symlink stays one
    assert os.readlink(tmp_path / "alone") == "sub/f"
