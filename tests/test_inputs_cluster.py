"""URL sources, `@mini` rules and packed environments on the emulated cluster: workers in hosts
of their own, the document's server in another, byte counters on every link.

Run under `flock /work/cluster.lock` (network namespaces are a machine-wide resource).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cluster import netns
from conftest import require

pytestmark = pytest.mark.netns

DOCSERVER = Path(__file__).resolve().parent / "docserver.py"


@pytest.fixture
def make_cluster():
    yield from netns.cluster_factory(require)


def wait_for_file(path: Path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.05)
    return path.read_text().strip()


def test_workers_in_other_hosts_fetch_a_url_once_from_its_host(make_cluster, tmp_path):
    n = 3
    cluster = make_cluster(n + 1, "200mbit")  # hosts 0..n-1 run workers, host n serves
    served = tmp_path / "served"
    served.mkdir()
    data = os.urandom(3_000_000)
    (served / "ref.bin").write_bytes(data)
    log = tmp_path / "server.log"
    port_file = tmp_path / "server.port"
    server = cluster.popen(n, [sys.executable, str(DOCSERVER), str(served), "--port-file",
                               str(port_file), "--log", str(log)])
    d = netns.Deployment(cluster, tmp_path / "run")
    try:
        url = f"http://{cluster.addr(n)}:{wait_for_file(port_file)}/ref.bin"
        wf = tmp_path / "wf"
        wf.mkdir()
        (wf / "Vinefile").write_text("".join(
            f"@resources cores=1\nsum.{i}: {url}->ref\n\tsleep 1; cksum < ref > sum.{i}\n"
            for i in range(2 * n)))
        d.start_manager(wf)
        before = cluster.stats()
        for i in range(n):
            d.start_worker(i)
        assert d.wait_manager(180) == 0, d.manager_output()
        after = cluster.stats()
    finally:
        d.close()
        server.kill()
        server.wait()
    expected = subprocess.run(["cksum"], input=data, capture_output=True).stdout.decode()
    assert {(wf / f"sum.{i}").read_text() for i in range(2 * n)} == {expected}
    requests = [line.split() for line in log.read_text().splitlines()]
    assert [r for r in requests if r[0] == "GET"] == [["GET", "/ref.bin", "200", str(len(data))]]
    assert [r[:3] for r in requests if r[0] == "HEAD"] == [["HEAD", "/ref.bin", "200"]]
    # the server's link carried one copy; the manager's (root) link none of it
    server_up = after[str(n)].up - before[str(n)].up
    root_up = after["root"].up - before["root"].up
    assert len(data) <= server_up < 1.2 * len(data)
    assert root_up < len(data) / 10
    workers = {d.worker_name(i) for i in range(n)}
    copies = [t for t in d.transfers(wf) if t.size == len(data)]
    assert [t.source for t in copies].count("url") == 1
    assert {t.source for t in copies} <= workers | {"url"}


def test_a_mini_and_an_environment_on_workers_in_other_hosts(make_cluster, tmp_path):
    """An archive unpacked by a `@mini` rule and a packed environment, on 3 hosts: each goes
    over the manager's link once, and each worker unpacks each once."""
    import tarfile

    n = 3
    cluster = make_cluster(n, "200mbit")
    wf = tmp_path / "wf"
    src = tmp_path / "src"
    (src / "ref").mkdir(parents=True)
    (src / "ref" / "data.bin").write_bytes(os.urandom(2_000_000))
    (src / "env" / "bin").mkdir(parents=True)
    (src / "env" / "conda-meta").mkdir()
    (src / "env" / "bin" / "tool").write_text("#!/bin/sh\ncksum < \"$1\"\n")
    (src / "env" / "bin" / "tool").chmod(0o755)
    wf.mkdir()
    with tarfile.open(wf / "ref.tar.gz", "w:gz") as tar:
        tar.add(src / "ref", arcname="ref")
    with tarfile.open(wf / "env.tar.gz", "w:gz") as tar:
        tar.add(src / "env", arcname=".")
    (wf / "Vinefile").write_text("@mini\nref: ref.tar.gz\n\ttar xzf ref.tar.gz\n" + "".join(
        f"@environment env.tar.gz\n@resources cores=1\nsum.{i}: ref\n"
        f"\tsleep 1; tool ref/data.bin > sum.{i}\n" for i in range(2 * n)))
    d = netns.Deployment(cluster, tmp_path / "run")
    try:
        d.start_manager(wf)
        for i in range(n):
            d.start_worker(i)
        assert d.wait_manager(180) == 0, d.manager_output()
    finally:
        d.close()
    expected = subprocess.run(["cksum"], input=(src / "ref" / "data.bin").read_bytes(),
                              capture_output=True).stdout.decode()
    assert {(wf / f"sum.{i}").read_text() for i in range(2 * n)} == {expected}
    log = d.transfers(wf)
    sizes = {(wf / name).stat().st_size for name in ("ref.tar.gz", "env.tar.gz")}
    assert {t.size for t in log if t.size > 1000} <= sizes  # the unpacked tree never moved
    for name in ("ref.tar.gz", "env.tar.gz"):
        size = (wf / name).stat().st_size
        copies = [t for t in log if t.size == size]
        assert [t.source for t in copies].count("manager") == 1, copies
        assert len({t.dest for t in copies}) == len(copies)
    for i in range(n):
        envs = [p for p in (tmp_path / "run" / f"w{i}" / "forever").glob("env-*")
                if not p.name.endswith(".meta")]
        assert len(envs) <= 1
