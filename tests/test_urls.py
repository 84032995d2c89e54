"""URL sources end to end: a real HTTP server on 127.0.0.1, the real CLI, manager and workers.

Every case checks the outputs and what ran; the server counts what it was asked, so "fetched
once" and "checked once per run" are counted, not assumed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from docserver import Documents, serve
from test_run_e2e import vinemake

from vinemake.core.urls import UrlMemo, Validators, check_url, url_key


def started(proc) -> list[str]:
    """The rules a run started, from its progress lines (`HH:MM:SS start   NAME [on W]`)."""
    return sorted(m.group(1) for m in re.finditer(r"^\d\d:\d\d:\d\d start +(\S+)",
                                                  proc.stderr, re.M))


@pytest.fixture
def docs():
    documents = Documents()
    server, base = serve(documents)
    documents.base = base
    yield documents
    server.shutdown()
    server.server_close()


def project(root: Path, vinefile: str, files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Vinefile").write_text(vinefile)
    for name, text in (files or {}).items():
        (root / name).write_text(text)
    return root


def counts_rules(base: str) -> str:
    return (f"counts.txt: {base}/words.txt->words.txt\n"
            "\tsort words.txt | uniq -c | sort -rn > counts.txt\n"
            "top.txt: counts.txt\n"
            "\thead -1 counts.txt > top.txt\n"
            "local.txt: in.txt\n"
            "\tcp in.txt local.txt\n")


# ------------------------------------------------------------------ provenance


def test_a_url_source_is_fetched_once_and_a_rerun_only_checks_it(docs, tmp_path):
    docs.docs["/words.txt"] = b"b\na\nb\n"
    root = project(tmp_path / "wf", counts_rules(docs.base), {"in.txt": "x\n"})
    first = vinemake(root)
    assert started(first) == ["counts.txt", "local.txt", "top.txt"]
    assert (root / "counts.txt").read_text().split() == ["2", "b", "1", "a"]
    assert (docs.count("GET", "/words.txt"), docs.count("HEAD", "/words.txt")) == (1, 1)

    second = vinemake(root)
    assert started(second) == []
    assert second.stderr == "vinemake: nothing to do, 3 rules up to date\n"
    assert (docs.count("GET", "/words.txt"), docs.count("HEAD", "/words.txt")) == (1, 2)
    memo = json.loads((root / ".vinemake/urls").read_text())
    assert memo["url"] == f"{docs.base}/words.txt"
    assert memo["hash"] and memo["validators"]["etag"]


def test_a_changed_document_reruns_what_reads_it_and_nothing_else(docs, tmp_path):
    docs.docs["/words.txt"] = b"b\na\nb\n"
    root = project(tmp_path / "wf", counts_rules(docs.base), {"in.txt": "x\n"})
    vinemake(root)
    docs.docs["/words.txt"] = b"c\nc\nc\na\n"
    changed = vinemake(root, "--explain")
    assert started(changed) == ["counts.txt", "top.txt"]
    assert (root / "top.txt").read_text().split() == ["3", "c"]
    assert (f"vinemake explain: run counts.txt: input '{docs.base}/words.txt' changed\n"
            in changed.stderr)
    assert docs.count("GET", "/words.txt") == 2
    assert started(vinemake(root)) == []


def test_404_and_500_fail_their_rules_with_the_status_and_the_rest_runs(docs, tmp_path):
    docs.errors["/gone.txt"] = 404
    docs.errors["/broken.txt"] = 500
    root = project(tmp_path / "wf", (
        f"a.txt: {docs.base}/gone.txt\n\tcp gone.txt a.txt\n"
        f"b.txt: {docs.base}/broken.txt\n\tcp broken.txt b.txt\n"
        "c.txt: in.txt\n\tcp in.txt c.txt\n"), {"in.txt": "x\n"})
    run = vinemake(root, "-k", check=False)
    assert run.returncode == 1
    assert (root / "c.txt").read_text() == "x\n"
    assert not (root / "a.txt").exists() and not (root / "b.txt").exists()
    assert (f"FAILED  a.txt: error: cannot set up the sandbox: cannot fetch "
            f"{docs.base}/gone.txt: HTTP 404 Not Found") in run.stderr
    assert (f"FAILED  b.txt: error: cannot set up the sandbox: cannot fetch "
            f"{docs.base}/broken.txt: HTTP 500 Internal Server Error (after 4 attempts)"
            ) in run.stderr
    assert "reason: cannot set up the sandbox: cannot fetch " in (
        root / ".vinemake/failed/a.txt/INFO").read_text()
    # a 404 is not retried; a 500 is, with backoff
    assert docs.count("GET", "/gone.txt") == 1
    assert docs.count("GET", "/broken.txt") == 4

    del docs.errors["/broken.txt"]
    docs.docs["/broken.txt"] = b"fixed\n"
    again = vinemake(root, "-k", check=False)
    assert started(again) == ["b.txt"]  # a.txt fails before its command starts, again
    assert "FAILED  a.txt: error: cannot set up the sandbox: cannot fetch" in again.stderr
    assert (root / "b.txt").read_text() == "fixed\n"
    assert again.returncode == 1  # still 404


def test_a_slow_document_arrives_whole(docs, tmp_path):
    docs.docs["/slow.txt"] = b"slowly\n" * 1000
    docs.slow["/slow.txt"] = 1.5
    root = project(tmp_path / "wf", f"out.txt: {docs.base}/slow.txt->in\n\twc -l < in > out.txt\n")
    run = vinemake(root)
    assert started(run) == ["out.txt"]
    assert (root / "out.txt").read_text().strip() == "1000"
    assert started(vinemake(root)) == []


def test_offline_keys_from_the_record_without_asking_the_server(docs, tmp_path):
    docs.docs["/words.txt"] = b"a\n"
    root = project(tmp_path / "wf", counts_rules(docs.base), {"in.txt": "x\n"})
    vinemake(root)
    heads = docs.count("HEAD", "/words.txt")
    docs.docs["/words.txt"] = b"changed\n"
    offline = vinemake(root, "--offline")
    assert started(offline) == []
    assert docs.count("HEAD", "/words.txt") == heads
    assert docs.count("GET", "/words.txt") == 1
    # online again: the change is seen
    assert started(vinemake(root)) == ["counts.txt", "top.txt"]


def test_offline_with_a_url_never_checked_is_an_input_error(docs, tmp_path):
    root = project(tmp_path / "wf", f"out.txt: {docs.base}/new.txt\n\tcp new.txt out.txt\n")
    run = vinemake(root, "--offline", check=False)
    assert run.returncode == 2
    assert run.stderr == (f"vinemake: --offline: {docs.base}/new.txt was never checked with "
                          "its server, so it has no recorded key (run once without "
                          "--offline)\n")
    assert docs.count("HEAD", "/new.txt") == 0


def test_a_document_without_validators_is_keyed_by_its_content(docs, tmp_path):
    docs.docs["/gen.txt"] = b"one\n"
    docs.bare.add("/gen.txt")
    root = project(tmp_path / "wf", f"out.txt: {docs.base}/gen.txt\n\tcp gen.txt out.txt\n")
    assert started(vinemake(root)) == ["out.txt"]
    assert started(vinemake(root)) == []  # same bytes: same key
    docs.docs["/gen.txt"] = b"two\n"
    assert started(vinemake(root)) == ["out.txt"]
    assert (root / "out.txt").read_text() == "two\n"


def test_a_local_rule_fetches_into_the_workflow_directory_for_its_run(docs, tmp_path):
    docs.docs["/words.txt"] = b"local words\n"
    root = project(tmp_path / "wf",
                   f"out.txt: {docs.base}/words.txt->w.txt\n\tLOCAL cp w.txt out.txt\n")
    assert started(vinemake(root)) == ["out.txt"]
    assert (root / "out.txt").read_text() == "local words\n"
    assert not (root / "w.txt").exists()
    assert started(vinemake(root)) == []


def test_a_file_url_is_a_source_too(tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("from a file\n")
    root = project(tmp_path / "wf", f"out.txt: file://{data}\n\tcp data.txt out.txt\n")
    assert started(vinemake(root)) == ["out.txt"]
    assert (root / "out.txt").read_text() == "from a file\n"
    assert started(vinemake(root)) == []
    data.write_text("changed file\n")
    assert started(vinemake(root)) == ["out.txt"]
    assert (root / "out.txt").read_text() == "changed file\n"


def test_a_shared_cache_dir_restores_what_a_url_made_in_another_workflow(docs, tmp_path):
    docs.docs["/words.txt"] = b"shared\n"
    vinefile = f"@cache forever\nout.txt: {docs.base}/words.txt\n\tcp words.txt out.txt\n"
    store = tmp_path / "store"
    one = project(tmp_path / "one", vinefile)
    two = project(tmp_path / "two", vinefile)
    assert started(vinemake(one, "--cache-dir", str(store))) == ["out.txt"]
    second = vinemake(two, "--cache-dir", str(store))
    assert started(second) == []
    assert "restored 1" in second.stderr
    assert (two / "out.txt").read_text() == "shared\n"
    assert docs.count("GET", "/words.txt") == 1


# ------------------------------------------------------------------ bad inputs


@pytest.mark.parametrize("vinefile, message", [
    ("http://h/x.txt: in\n\tcp in x\n",
     "Vinefile:1:1: a URL can only be a source: a rule's targets are files it makes"),
    ("out: file://data.txt\n\tcp data.txt out\n",
     "Vinefile:1:6: file://data.txt: a file:// URL needs an absolute path "
     "(file:///path/to/file)"),
    ("out: https://example.org/\n\tcp x out\n",
     "Vinefile:1:6: https://example.org/: give the document a name inside the task: "
     "'https://example.org/->NAME'"),
    ("out: https:///x.txt\n\tcp x.txt out\n",
     "Vinefile:1:6: https:///x.txt: a URL needs a host"),
])
def test_bad_url_sources_are_located_errors(tmp_path, vinefile, message):
    root = project(tmp_path / "wf", vinefile)
    run = vinemake(root, check=False)
    assert run.returncode == 2
    assert run.stderr.splitlines()[0] == message
    assert not (root / ".vinemake" / "journal").exists()


# ------------------------------------------------------------------ keys, directly


def test_url_keys_change_with_any_validator_and_name_errors(docs):
    docs.docs["/a"] = b"alpha"
    got = check_url(f"{docs.base}/a")
    assert got.length == "5" and got.etag.startswith('"')
    assert url_key("u", Validators(etag="1")) != url_key("u", Validators(etag="2"))
    assert url_key("u", Validators(length="1")) != url_key("v", Validators(length="1"))
    assert check_url(f"{docs.base}/none") == Validators(error="HTTP 404 Not Found")
    closed = check_url("http://127.0.0.1:9/x")
    assert closed.error == "[Errno 111] Connection refused"


def test_the_memo_survives_a_damaged_line(tmp_path):
    path = tmp_path / "urls"
    memo = UrlMemo(str(path), check=lambda url, known: Validators(etag="e"))
    key = memo.key("http://h/a")
    memo.save()
    path.write_text(path.read_text() + "{not json\n")
    again = UrlMemo(str(path))
    assert again.key("http://h/a", offline=True) == key


# ------------------------------------------------------------------ several real workers


def start_workers(port_file: Path, n: int, tmp_path: Path, **kw) -> list[subprocess.Popen]:
    deadline = time.monotonic() + 60
    while not (port_file.exists() and port_file.read_text().strip()):
        assert time.monotonic() < deadline, "the manager did not start"
        time.sleep(0.05)
    port = port_file.read_text().strip()
    return [subprocess.Popen(
        [shutil.which("vinemake-worker") or "vinemake-worker", "127.0.0.1", port,
         "--cores", "1", "--memory", "500", "--disk", "2000", "--timeout", "30",
         "--workdir", str(tmp_path / f"w{i}"), "--name", f"w{i}", "--as-remote"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(n)]


def barrier(directory: Path, n: int) -> str:
    """A command prefix that holds each task until n tasks have reached it: with one-core
    workers, the first n tasks then run on n different workers, however late each joined."""
    directory.mkdir(parents=True, exist_ok=True)
    return (f"mktemp {directory}/task.XXXXXX >/dev/null; timeout 120 sh -c "
            f"'until [ \"$(ls {directory} | wc -l)\" -ge {n} ]; do sleep 0.1; done'; ")


def run_with_workers(root: Path, n: int, tmp_path: Path, timeout: float = 180):
    """`vinemake -T workers` in `root` with n real workers started by hand on this host (as
    if on others: they copy every input): (exit status, stderr)."""
    port_file = tmp_path / "port"
    manager = subprocess.Popen(
        [sys.executable, "-m", "vinemake", "-T", "workers", "-p", "0", "--port-file",
         str(port_file)], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers = start_workers(port_file, n, tmp_path)
    try:
        _, err = manager.communicate(timeout=timeout)
    finally:
        stop(workers)
    return manager.returncode, err


def stop(workers: list[subprocess.Popen]) -> None:
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGINT)
    for w in workers:
        try:
            w.wait(timeout=20)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def test_many_workers_reading_one_url_make_the_server_send_it_once(docs, tmp_path):
    data = os.urandom(300_000)
    docs.docs["/data.bin"] = data
    n = 3
    rules = "".join(f"@resources cores=1\nsum.{i}: {docs.base}/data.bin\n"
                    f"\t{barrier(tmp_path / 'started', n)}cksum < data.bin > sum.{i}\n"
                    for i in range(n * 2))
    root = project(tmp_path / "wf", rules)
    code, err = run_with_workers(root, n, tmp_path)
    assert code == 0, err
    expected = subprocess.run(["cksum"], input=data, capture_output=True).stdout.decode()
    assert {(root / f"sum.{i}").read_text() for i in range(n * 2)} == {expected}
    assert docs.count("GET", "/data.bin") == 1
    log = next(root.glob(".vinemake/**/transfers.tsv")).read_text().splitlines()[1:]
    copies = [line.split("\t") for line in log if len(data) == int(line.split("\t")[3])]
    assert [c[0] for c in copies].count("url") == 1  # the others came from peers
    assert sorted(c[1] for c in copies) == ["w0", "w1", "w2"]  # one copy to each worker
    assert all(c[0] in {"url", "w0", "w1", "w2"} for c in copies)


# ------------------------------------------------------------------ the example


def test_the_urls_example_runs_against_a_local_server(docs, tmp_path):
    example = Path(__file__).resolve().parent.parent / "examples" / "urls"
    root = tmp_path / "urls"
    shutil.copytree(example, root)
    text = (root / "Vinefile").read_text()
    assert "BOOK=https://www.gutenberg.org/cache/epub/11/pg11.txt\n" in text
    docs.docs["/pg11.txt"] = b"Alice was beginning to get very tired, said the Rabbit, Alice\n"
    (root / "Vinefile").write_text(text.replace("https://www.gutenberg.org/cache/epub/11",
                                                docs.base))
    assert started(vinemake(root)) == ["counts.txt", "top10.txt"]
    assert (root / "top10.txt").read_text().split()[:2] == ["2", "alice"]
    assert started(vinemake(root)) == []


# ------------------------------------------------------------------ JX


def test_a_jx_workflow_reads_a_url_input_like_a_vinefile(docs, tmp_path):
    docs.docs["/words.txt"] = b"b\na\nb\n"
    root = tmp_path / "wf"
    root.mkdir()
    (root / "flow.jx").write_text(
        '{"rules": [{"command": "sort w.txt | uniq -c > counts.txt", "outputs": ["counts.txt"],'
        f' "inputs": [{{"dag_name": "{docs.base}/words.txt", "task_name": "w.txt"}}]}},'
        ' {"command": "cp words.txt copy.txt", "outputs": ["copy.txt"],'
        f' "inputs": ["{docs.base}/words.txt"]}}]}}\n')
    assert started(vinemake(root, "flow.jx")) == ["copy.txt", "counts.txt"]
    assert (root / "counts.txt").read_text().split() == ["1", "a", "2", "b"]
    assert (root / "copy.txt").read_text() == "b\na\nb\n"
    assert docs.count("GET", "/words.txt") == 1
    assert started(vinemake(root, "flow.jx")) == []


def test_a_url_output_in_jx_is_a_located_error(tmp_path):
    root = tmp_path / "wf"
    root.mkdir()
    (root / "flow.jx").write_text(
        '{"rules": [{"command": "true", "outputs": ["http://h/x"], "inputs": []}]}\n')
    run = vinemake(root, "flow.jx", check=False)
    assert run.returncode == 2
    assert run.stderr.splitlines()[0] == ("flow.jx:1:44: a URL can only be an input: a rule's "
                                          "outputs are files it makes")


def test_a_url_read_by_a_cache_forever_rule_stays_on_the_worker_for_the_next_workflow(
        docs, tmp_path):
    import socket

    docs.docs["/ref.txt"] = b"reference\n"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    worker = subprocess.Popen(
        [shutil.which("vinemake-worker") or "vinemake-worker", "127.0.0.1", str(port),
         "--cores", "1", "--memory", "500", "--disk", "2000", "--timeout", "60",
         "--workdir", str(tmp_path / "w"), "--name", "w", "--as-remote"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for name in ("one", "two"):
            root = project(tmp_path / name, f"@cache forever\n{name}.txt: {docs.base}/ref.txt\n"
                                            f"\tcp ref.txt {name}.txt\n")
            run = vinemake(root, "-T", "workers", "-p", str(port))
            assert started(run) == [f"{name}.txt"]
            assert (root / f"{name}.txt").read_text() == "reference\n"
    finally:
        stop([worker])
    assert docs.count("GET", "/ref.txt") == 1  # the second workflow's worker had it already
    assert docs.count("HEAD", "/ref.txt") == 2
