"""`@mini` rules end to end: made on each worker that reads their outputs, never moved.

Real workers over real TCP; each mini command leaves a mark naming the worker directory it
ran in, and the manager's transfer log shows what moved, so "once per worker" and "never
transferred" are counted.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from test_urls import barrier, run_with_workers, started, vinemake


def archive(root: Path, files: dict[str, str]) -> None:
    src = root / "src"
    for name, text in files.items():
        (src / "ref" / name).parent.mkdir(parents=True, exist_ok=True)
        (src / "ref" / name).write_text(text)
    with tarfile.open(root / "ref.tar.gz", "w:gz") as tar:
        tar.add(src / "ref", arcname="ref")


def mini_workflow(root: Path, marks: Path, n: int, wait: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    archive(root, {"a.txt": "alpha\n", "sub/b.txt": "beta\n"})
    rules = [f"@mini\nref: ref.tar.gz\n\ttar xzf ref.tar.gz && pwd >> {marks}\n"]
    rules += [f"@resources cores=1\nout.{i}: ref\n\t{wait}cat ref/a.txt ref/sub/b.txt "
              f"> out.{i}\n" for i in range(n)]
    (root / "Vinefile").write_text("\n".join(rules))
    return root


def test_a_mini_runs_once_on_the_local_worker_and_its_output_never_comes_back(tmp_path):
    marks = tmp_path / "marks"
    root = mini_workflow(tmp_path / "wf", marks, 4)
    run = vinemake(root)
    assert started(run) == ["out.0", "out.1", "out.2", "out.3"]
    assert all((root / f"out.{i}").read_text() == "alpha\nbeta\n" for i in range(4))
    assert len(marks.read_text().splitlines()) == 1
    assert not (root / "ref").exists()
    assert started(vinemake(root)) == []
    assert len(marks.read_text().splitlines()) == 1


def test_changing_the_archive_reruns_the_mini_and_its_readers(tmp_path):
    marks = tmp_path / "marks"
    root = mini_workflow(tmp_path / "wf", marks, 2)
    vinemake(root)
    archive(root, {"a.txt": "ALPHA\n", "sub/b.txt": "beta\n"})
    run = vinemake(root, "--explain")
    assert started(run) == ["out.0", "out.1"]
    assert "vinemake explain: run ref: intermediate 'ref' needed by 'out.1'\n" in run.stderr
    assert (root / "out.1").read_text() == "ALPHA\nbeta\n"
    assert len(marks.read_text().splitlines()) == 2


def test_a_failing_mini_fails_its_reader_with_its_exit_code_and_stderr(tmp_path):
    root = tmp_path / "wf"
    root.mkdir()
    (root / "in.txt").write_text("x\n")
    (root / "Vinefile").write_text("@mini\nbad: in.txt\n\techo broken >&2; exit 3\n"
                                   "out: bad\n\tcat bad > out\n")
    run = vinemake(root, check=False)
    assert run.returncode == 1
    assert "FAILED  out: exit code 3" in run.stderr
    info = (root / ".vinemake/failed/out/INFO").read_text()
    assert "reason: @mini rule 'bad' failed with exit code 3\n" in info
    assert "broken" in info


def test_a_local_reader_gets_the_output_back_as_from_any_rule(tmp_path):
    marks = tmp_path / "marks"
    root = mini_workflow(tmp_path / "wf", marks, 0)
    with open(root / "Vinefile", "a") as f:
        f.write("\nall.txt: ref\n\tLOCAL cat ref/a.txt > all.txt\n")
    vinemake(root)
    assert (root / "all.txt").read_text() == "alpha\n"
    assert (root / "ref" / "sub" / "b.txt").read_text() == "beta\n"


@pytest.mark.parametrize("vinefile, message", [
    ("@mini\n: in\n\ttrue\n", "Vinefile:2:1: a @mini rule makes files: give it targets"),
    ("@mini\nout: in\n\tLOCAL touch out\n",
     "Vinefile:2:1: a @mini rule runs on the workers that read its outputs: it cannot be LOCAL"),
    ("@mini now\nout: in\n\ttouch out\n", "Vinefile:1:7: @mini takes no arguments"),
])
def test_bad_mini_rules_are_located_errors(tmp_path, vinefile, message):
    root = tmp_path / "wf"
    root.mkdir()
    (root / "in").write_text("x\n")
    (root / "Vinefile").write_text(vinefile)
    run = vinemake(root, check=False)
    assert run.returncode == 2
    assert run.stderr.splitlines()[0] == message


def test_three_workers_each_unpack_once_and_the_unpacked_tree_never_moves(tmp_path):
    marks = tmp_path / "marks"
    n = 3
    root = mini_workflow(tmp_path / "wf", marks, 3 * n, barrier(tmp_path / "started", n))
    code, err = run_with_workers(root, n, tmp_path)
    assert code == 0, err
    assert all((root / f"out.{i}").read_text() == "alpha\nbeta\n" for i in range(3 * n))
    ran_in = [line.split("/run-")[0] for line in marks.read_text().splitlines()]
    assert len(ran_in) == len(set(ran_in)) == n  # once on each worker
    used = set(ran_in)
    log = next(root.glob(".vinemake/**/transfers.tsv")).read_text().splitlines()[1:]
    moved = [line.split("\t") for line in log]
    tarball = (root / "ref.tar.gz").stat().st_size
    # the archive went to each worker that unpacked it; nothing else moved but the outputs
    assert sorted(int(m[3]) for m in moved if m[1] != "manager") == [tarball] * len(used)
    assert all(m[0] != "mini" for m in moved)
