"""URL sources on the emulated cluster: the document's server is a host of its own, workers in
other hosts fetch it, and the server's own log counts what it sent.

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
