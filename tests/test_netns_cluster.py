"""The emulated cluster itself: hosts reach each other and nothing else, links are shaped,
byte counters see the traffic, and teardown leaves nothing behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from cluster import netns
from conftest import require

# A one-shot TCP sink: prints its port, accepts one connection, then prints
# "<bytes> <seconds from accept to EOF>".
SINK = r"""
import socket, sys, time
s = socket.socket(); s.bind(("0.0.0.0", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); t0 = time.monotonic(); n = 0
while True:
    b = c.recv(1 << 16)
    if not b: break
    n += len(b)
print(n, time.monotonic() - t0, flush=True)
"""

# Sends argv[3] zero bytes to argv[1]:argv[2]; exits 3 with the errno name if it cannot connect.
SOURCE = r"""
import errno, socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
except OSError as e:
    print(errno.errorcode.get(e.errno, type(e).__name__)); sys.exit(3)
c.sendall(bytes(int(sys.argv[3]))); c.close()
"""


@pytest.fixture
def make_cluster():
    yield from netns.cluster_factory(require)


def start_sink(cluster, host):
    sink = cluster.popen(host, [sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    return sink, int(sink.stdout.readline())


def send(cluster, host, addr, port, nbytes):
    return cluster.run(host, [sys.executable, "-c", SOURCE, addr, str(port), str(nbytes)],
                       timeout=60)


def sink_result(sink):
    nbytes, seconds = sink.stdout.readline().split()
    sink.wait(timeout=10)
    return int(nbytes), float(seconds)


# ------------------------------------------------------------------ pure helpers


def test_parse_stats_reads_one_endpoint_per_line():
    assert netns.parse_stats("root 10 20\n0 5 7\n\n") == {
        "root": netns.LinkBytes(10, 20), "0": netns.LinkBytes(5, 7)}


def test_pick_subnet_skips_subnets_already_routed():
    routes = ("10.233.16.0/24 dev vmtx-root proto kernel scope link src 10.233.16.1\n"
              "10.233.17.0/24 dev vmty-root proto kernel scope link src 10.233.17.1\n")
    assert netns.pick_subnet(routes) == "10.233.18"


def test_pick_subnet_reports_exhaustion():
    with pytest.raises(RuntimeError, match=r"^no free subnet among 10.233.16-17$"):
        netns.pick_subnet("10.233.16.0/24\n10.233.17.0/24\n", range(16, 18))


def test_prefix_is_short_unique_per_pid_and_sequence_and_ends_with_a_letter():
    assert netns.prefix_for(0, 0) == "vmtaa"
    assert netns.prefix_for(27, 1, "vmb") == "vmbbbb"
    longest = netns.prefix_for(4_194_304, 25)  # Linux's largest pid
    assert len(longest) <= 10 and longest.isalpha()
    assert netns.prefix_for(28, 0) != netns.prefix_for(29, 0) != netns.prefix_for(28, 1)


def test_transfer_log_is_read_with_or_without_a_header():
    plain = "manager\tw0\tfile-x\t10\t1.0\t2.0\n"
    headed = "dest\tsource\tbytes\tkey\tstart\tend\nw0\tmanager\t10\tfile-x\t1.0\t2.0\n"
    want = [netns.Transfer("manager", "w0", "file-x", 10, 1.0, 2.0)]
    assert netns.parse_transfer_log(plain) == want
    assert netns.parse_transfer_log(headed) == want
    failed = "source\tdest\tkey\tbytes\tstart\tend\tok\nw1\tw0\tfile-x\t0\t1.0\t2.0\tfailed\n"
    assert netns.parse_transfer_log(failed) == [
        netns.Transfer("w1", "w0", "file-x", 0, 1.0, 2.0, ok=False)]


def test_max_concurrent_counts_overlaps_per_source_and_not_back_to_back_ones():
    t = netns.Transfer
    log = [t("m", "w0", "k", 1, 0.0, 2.0), t("m", "w1", "k", 1, 1.0, 3.0),
           t("m", "w2", "k", 1, 3.0, 4.0), t("w0", "w3", "k", 1, 2.0, 5.0)]
    assert netns.max_concurrent(log) == {"m": 2, "w0": 1}


# ------------------------------------------------------------------ the script's own errors


def run_script(*args):
    return subprocess.run(["bash", str(netns.SCRIPT), *args], capture_output=True, text=True)


def test_script_rejects_bad_arguments_with_a_message():
    assert run_script("--prefix", "9bad", "hosts").stderr == (
        "netns-cluster.sh: error: bad prefix '9bad' (1-10 characters a-z0-9, first and last a "
        "letter)\n")
    assert run_script("--prefix", "vmtnone", "up", "0").stderr == (
        "netns-cluster.sh: error: up: N must be 1..200\n")
    assert run_script("--prefix", "vmtnone", "up", "2", "--subnet", "192.168.1").stderr == (
        "netns-cluster.sh: error: up: --subnet must be 10.X.Y (a private /24)\n")
    assert run_script("--prefix", "vmtnone", "stats").stderr == (
        "netns-cluster.sh: error: cluster 'vmtnone' is not up\n")


# ------------------------------------------------------------------ a real cluster


@pytest.mark.netns
def test_hosts_reach_each_other_and_the_root_but_nothing_outside(make_cluster):
    cluster = make_cluster(3, "100mbit")
    sink, port = start_sink(cluster, 1)
    assert send(cluster, 0, cluster.addr(1), port, 1000).returncode == 0
    assert sink_result(sink)[0] == 1000

    # the root namespace (where a manager runs) reaches a host, and a host reaches the root
    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    port = int(sink.stdout.readline())
    assert send(cluster, 2, cluster.root_addr, port, 10).returncode == 0
    assert sink_result(sink)[0] == 10

    # no default route: an address outside the cluster is unreachable without sending a packet
    routes = cluster.run(0, ["ip", "-4", "route", "show", "table", "all"]).stdout
    assert "default" not in routes
    blocked = send(cluster, 0, "192.0.2.1", 9, 1)  # TEST-NET-1, never routed
    assert (blocked.returncode, blocked.stdout) == (3, "ENETUNREACH\n")

    # 127.0.0.1 inside a host is that host's own loopback, not the machine's
    with socket.create_server(("127.0.0.1", 0)) as root_only:
        loop = send(cluster, 0, "127.0.0.1", root_only.getsockname()[1], 1)
    assert (loop.returncode, loop.stdout) == (3, "ECONNREFUSED\n")

    # each emulated host has its own name, /etc/hosts and machine id
    assert cluster.run(1, ["hostname"]).stdout == f"{cluster.namespace(1)}\n"
    resolved = cluster.run(0, ["getent", "hosts", cluster.namespace(2)]).stdout.split()
    assert resolved == [cluster.addr(2), cluster.namespace(2)]
    ids = {cluster.run(i, ["cat", "/etc/machine-id"]).stdout for i in range(3)}
    with open("/etc/machine-id") as f:
        ids.add(f.read())
    assert len(ids) == 4


@pytest.mark.netns
def test_a_host_whose_link_is_down_is_cut_off_until_it_comes_back(make_cluster):
    cluster = make_cluster(2, "100mbit")
    sink, port = start_sink(cluster, 1)
    cluster.set_link(1, up=False)
    cut = send(cluster, 0, cluster.addr(1), port, 10)
    assert cut.returncode == 3 and cut.stdout in ("TimeoutError\n", "EHOSTUNREACH\n")
    cluster.set_link(1, up=True)
    # host 0 may remember the failed address resolution for a moment, as a real host would,
    # or still be resolving it when the connection's 2 s are up (a dropped SYN waits 1 s)
    deadline = time.monotonic() + 30
    while (back := send(cluster, 0, cluster.addr(1), port, 10)).stdout in ("EHOSTUNREACH\n",
                                                                          "TimeoutError\n"):
        assert time.monotonic() < deadline, "host 1 still unreachable 30 s after link up"
        time.sleep(0.2)
    assert back.returncode == 0
    assert sink_result(sink)[0] == 10


@pytest.mark.netns
def test_link_rate_is_enforced_and_counters_show_which_hosts_moved_bytes(make_cluster):
    cluster = make_cluster(3, "20mbit")
    before = cluster.stats()
    nbytes = 2_500_000  # one second at 20 Mbit/s
    sink, port = start_sink(cluster, 1)
    assert send(cluster, 0, cluster.addr(1), port, nbytes).returncode == 0
    got, seconds = sink_result(sink)
    assert got == nbytes
    rate = nbytes * 8 / seconds
    # TCP/IP headers take ~5% of the wire; a busy machine can only make it slower
    assert 0.5 * 20e6 < rate < 1.02 * 20e6, f"{rate / 1e6:.1f} Mbit/s on a 20 Mbit/s link"

    after = cluster.stats()
    moved = {name: (after[name].up - before[name].up, after[name].down - before[name].down)
             for name in after}
    assert nbytes <= moved["0"][0] < 1.1 * nbytes
    assert nbytes <= moved["1"][1] < 1.1 * nbytes
    assert moved["2"][0] < 20_000 and moved["2"][1] < 20_000
    assert moved["root"][0] < 20_000


@pytest.mark.netns
def test_down_kills_what_runs_inside_and_leaves_nothing(make_cluster):
    cluster = make_cluster(2, "none", manager_ns=True)
    sleeper = cluster.popen(0, ["sleep", "300"])
    assert cluster.leftovers() != ""
    cluster.down()
    assert sleeper.wait(timeout=10) != 0
    assert cluster.leftovers() == ""
    assert not [n for n in os.listdir("/run/netns") if n.startswith(cluster.prefix)]
    assert not os.path.exists(f"/etc/netns/{cluster.namespace(0)}")
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"{cluster.prefix}-root" not in links
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    assert f"{cluster.subnet}." not in routes
    cluster.down()  # a second down (the fixture's finalizer) is harmless
    assert cluster.leftovers() == ""


@pytest.mark.netns
def test_clusters_left_by_a_killed_run_are_removed_by_the_next_one(make_cluster):
    make_cluster(1, "none")  # skips when namespaces are unavailable
    orphan = "vmtorphan"
    env = {**os.environ, "VMCLUSTER_OWNER_PID": str(_exited_pid())}
    up = subprocess.run(["bash", str(netns.SCRIPT), "--prefix", orphan, "up", "1", "--root-rate",
                         "off", "--rate", "none"], capture_output=True, text=True, env=env)
    assert up.returncode == 0, up.stderr
    try:
        assert orphan in netns.remove_orphans("vmtorph")
        assert run_script("--prefix", orphan, "leftovers").stdout == ""
    finally:
        run_script("--prefix", orphan, "down")


def _exited_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid
