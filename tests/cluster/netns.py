"""An emulated multi-host cluster for tests: network namespaces driven by netns-cluster.sh.

Each test run gets its own prefix (derived from the pid) and its own /24 under 10.233.0.0/16,
picked under a machine-wide lock, so two pytest runs or a benchmark never collide. Clusters
left behind by a run that was killed outright (its owner pid is gone) are removed before a new
one is made; a normal failure is cleaned up by the fixture's finalizer.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("netns-cluster.sh")
STATE_DIR = Path(os.environ.get("VMCLUSTER_STATE_DIR", "/run/vmcluster"))
LOCK_FILE = Path("/run/vmcluster.lock")
# Third octets tried for a subnet 10.233.X.0/24; the reference tool's default (0) is left free.
SUBNET_OCTETS = range(16, 64)
_sequence = itertools.count()


@dataclass(frozen=True)
class LinkBytes:
    """Bytes one endpoint sent (up) and received (down) on its emulated link."""

    up: int
    down: int


def parse_stats(text: str) -> dict[str, LinkBytes]:
    """`stats` output ("NAME UP DOWN" per line) → {name: LinkBytes}."""
    out = {}
    for line in text.splitlines():
        if line.strip():
            name, up, down = line.split()
            out[name] = LinkBytes(int(up), int(down))
    return out


def pick_subnet(routes: str, octets: range = SUBNET_OCTETS) -> str:
    """The first 10.233.X /24 that `ip -4 route show table all` output does not mention."""
    for octet in octets:
        if f"10.233.{octet}." not in routes:
            return f"10.233.{octet}"
    raise RuntimeError(f"no free subnet among 10.233.{octets.start}-{octets.stop - 1}")


def prefix_for(pid: int, seq: int, kind: str = "vmt") -> str:
    """A prefix unique to cluster number `seq` of process `pid`: kind, pid and seq in a-z."""
    letters = ""
    while True:
        pid, digit = divmod(pid, 26)
        letters += chr(ord("a") + digit)
        if pid == 0:
            return kind + letters + chr(ord("a") + seq % 26)


def unavailable_reason() -> str | None:
    """Why an emulated cluster cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return "root (for ip netns)"
    for tool in ("ip", "tc", "unshare", "flock"):
        if shutil.which(tool) is None:
            return f"the '{tool}' command"
    probe = subprocess.run(["ip", "netns", "add", "vmtprobe"], capture_output=True, text=True)
    subprocess.run(["ip", "netns", "del", "vmtprobe"], capture_output=True)
    if probe.returncode != 0:
        return f"a working 'ip netns' ({probe.stderr.strip()})"
    return None


def _script(prefix: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), "--prefix", prefix, *args],
                          capture_output=True, text=True, check=check)


@contextmanager
def _machine_lock() -> Iterator[None]:
    with open(LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _owner_alive(state_file: Path) -> bool:
    for line in state_file.read_text().splitlines():
        if line.startswith("OWNER_PID="):
            try:
                os.kill(int(line.split("=", 1)[1]), 0)
            except (ProcessLookupError, ValueError):
                return False
            except PermissionError:
                return True
            return True
    return False


def remove_orphans(kind: str) -> list[str]:
    """Tear down clusters of prefix kind* whose owner process is gone; their prefixes."""
    removed = []
    for state in sorted(STATE_DIR.glob(f"{kind}*.conf")):
        if not _owner_alive(state):
            _script(state.stem, "down", check=False)
            removed.append(state.stem)
    return removed


class Cluster:
    """A running emulated cluster: host i is namespace `<prefix><i>` at `addr(i)`."""

    def __init__(self, prefix: str, n: int, subnet: str, rate: str):
        self.prefix, self.n, self.subnet, self.rate = prefix, n, subnet, rate
        self.root_addr = f"{subnet}.1"

    @classmethod
    def up(cls, n: int, rate: str = "200mbit", *, kind: str = "vmt", root_rate: str | None = None,
           manager_ns: bool = False) -> Cluster:
        """Create n hosts with `rate` each way on every link (root included unless root_rate)."""
        prefix = prefix_for(os.getpid(), next(_sequence), kind)
        args = [str(n), "--rate", rate]
        if root_rate is not None:
            args += ["--root-rate", root_rate]
        if manager_ns:
            args.append("--manager-ns")
        with _machine_lock():
            remove_orphans(kind)
            routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"],
                                    capture_output=True, text=True, check=True).stdout
            subnet = pick_subnet(routes)
            done = _script(prefix, "up", *args, "--subnet", subnet, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"netns-cluster up failed: {done.stderr.strip()}")
        return cls(prefix, n, subnet, rate)

    def addr(self, i: int | str) -> str:
        if i == "root":
            return self.root_addr
        if i == "mgr":
            return f"{self.subnet}.2"
        return f"{self.subnet}.{10 + int(i)}"

    def namespace(self, i: int | str) -> str:
        return f"{self.prefix}-mgr" if i == "mgr" else f"{self.prefix}{i}"

    def argv(self, i: int | str, command: list[str]) -> list[str]:
        """The argv that runs `command` inside host i (its pid is the command's own pid)."""
        return ["bash", str(SCRIPT), "--prefix", self.prefix, "exec", str(i), *command]

    def run(self, i: int | str, command: list[str], **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.argv(i, command), **kwargs)

    def popen(self, i: int | str, command: list[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.argv(i, command), **kwargs)

    def stats(self) -> dict[str, LinkBytes]:
        """Bytes sent/received so far on each link, keyed "root", "mgr", "0", "1", ..."""
        return parse_stats(_script(self.prefix, "stats").stdout)

    def set_link(self, i: int | str, up: bool) -> None:
        """Connect or cut host i (its interface up or down), as a pulled cable would."""
        _script(self.prefix, "link", str(i), "up" if up else "down")

    def leftovers(self) -> str:
        """What of this cluster still exists ("" once it is fully gone)."""
        return _script(self.prefix, "leftovers", check=False).stdout.strip()

    def down(self) -> None:
        """Kill everything inside and delete every namespace and link; safe to call twice."""
        _script(self.prefix, "down", check=False)


def cluster_factory(require) -> Iterator:
    """Body of a pytest fixture: yields make(n, rate, ...) → Cluster; all torn down after.

    `require(condition, what)` is the suite's skip-or-fail helper (tests/conftest.py).
    """
    reason = unavailable_reason()
    require(reason is None, reason or "")
    made: list[Cluster] = []

    def make(n: int, rate: str = "200mbit", **kwargs) -> Cluster:
        cluster = Cluster.up(n, rate, **kwargs)
        made.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            cluster.down()


# ------------------------------------------------------------------ vinemake on the cluster
# Shared by tests/test_multihost.py and bench/cluster.py: a manager started the way a user
# starts one (`vinemake -T workers`), workers started by hand inside the emulated hosts.

@dataclass(frozen=True)
class Transfer:
    """One line of the manager's transfer log: `size` bytes of `key` from source to dest."""

    source: str
    dest: str
    key: str
    size: int
    start: float
    end: float
    ok: bool = True


TRANSFER_FIELDS = ("source", "dest", "key", "bytes", "start", "end")


def parse_transfer_log(text: str) -> list[Transfer]:
    """Tab-separated lines; a header line naming the fields (any order) may come first."""
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    order = TRANSFER_FIELDS
    if lines and "key" in lines[0].split("\t"):
        order = tuple(lines.pop(0).split("\t"))
    column = {name: order.index(name) for name in TRANSFER_FIELDS}
    out = []
    for line in lines:
        cell = line.split("\t")
        out.append(Transfer(cell[column["source"]], cell[column["dest"]], cell[column["key"]],
                            int(cell[column["bytes"]]), float(cell[column["start"]]),
                            float(cell[column["end"]]),
                            "ok" not in order or cell[order.index("ok")] == "ok"))
    return out


def max_concurrent(transfers: list[Transfer]) -> dict[str, int]:
    """For each source, the most transfers it was serving at one instant.

    A transfer ending exactly when another starts does not overlap it (ends sort first).
    """
    events: dict[str, list[tuple[float, int]]] = {}
    for t in transfers:
        events.setdefault(t.source, []).extend([(t.start, 1), (t.end, -1)])
    peak = {}
    for source, evs in events.items():
        now = best = 0
        for _, delta in sorted(evs):
            now += delta
            best = max(best, now)
        peak[source] = best
    return peak


class Deployment:
    """A manager (`vinemake -T workers`) in the root namespace or host "mgr", and workers
    started by hand in hosts; logs and the port file live under `scratch`."""

    def __init__(self, cluster: Cluster, scratch: Path, password: str | None = "vmt-secret"):
        self.cluster, self.scratch = cluster, Path(scratch)
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.password_file: str | None = None
        if password is not None:
            self.password_file = self.write_password("password", password)
        self.manager: subprocess.Popen | None = None
        self.manager_host: int | str = "root"
        self.port = 0
        self.workers: dict[int, subprocess.Popen] = {}

    def write_password(self, name: str, secret: str) -> str:
        path = self.scratch / name
        path.write_text(secret + "\n")
        path.chmod(0o600)
        return str(path)

    def start_manager(self, workflow_dir: Path, *options: str, host: int | str = "root",
                      ready_timeout: float = 60.0, port: int = 0) -> int:
        """Start `vinemake -T workers` on `workflow_dir` and wait for its port file; `port`:
        the one an earlier manager had, which its workers knock on again (0: any)."""
        port_file = self.scratch / "port"
        port_file.unlink(missing_ok=True)
        argv = [shutil.which("vinemake") or "vinemake", "-T", "workers", "-p", str(port),
                "--port-file", str(port_file), "--manager-host", self.cluster.addr(host),
                *(["--password", self.password_file] if self.password_file else []), *options]
        out = open(self.scratch / "manager.out", "w")  # the child keeps it open
        if host != "root":
            argv = self.cluster.argv(host, argv)
        self.manager = subprocess.Popen(argv, cwd=workflow_dir, stdout=out, stderr=out)
        self.manager_host = host
        deadline = time.monotonic() + ready_timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.manager.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"manager did not start: {self.manager_output()}")
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        return self.port

    def worker_argv(self, i: int, *options: str, password_file: str | None | bool = True,
                    cores: int = 1, memory_mb: int = 1000, disk_mb: int = 4000) -> list[str]:
        pw = self.password_file if password_file is True else password_file
        return [shutil.which("vinemake-worker") or "vinemake-worker",
                self.cluster.addr(self.manager_host), str(self.port),
                "--cores", str(cores), "--memory", str(memory_mb), "--disk", str(disk_mb),
                "--workdir", str(self.scratch / f"w{i}"), "--timeout", "60",
                "--name", self.worker_name(i), *(["--password", pw] if pw else []), *options]

    def worker_name(self, i: int) -> str:
        return f"w{i}"

    def start_worker(self, i: int, *options: str, **kwargs) -> subprocess.Popen:
        out = open(self.scratch / f"w{i}.out", "w")  # the child keeps it open
        proc = self.cluster.popen(i, self.worker_argv(i, *options, **kwargs),
                                  stdout=out, stderr=subprocess.STDOUT)
        self.workers[i] = proc
        return proc

    def wait_manager(self, timeout: float = 120.0) -> int:
        assert self.manager is not None
        return self.manager.wait(timeout=timeout)

    def manager_output(self) -> str:
        path = self.scratch / "manager.out"
        return path.read_text() if path.exists() else ""

    def worker_output(self, i: int) -> str:
        return (self.scratch / f"w{i}.out").read_text()

    def transfers(self, workflow_dir: Path) -> list[Transfer]:
        """The manager's transfer log (found under the workflow's .vinemake directory)."""
        logs = sorted(Path(workflow_dir).glob(".vinemake/**/transfers.tsv"))
        if not logs:
            raise FileNotFoundError(f"no transfers.tsv under {workflow_dir}/.vinemake")
        return parse_transfer_log(logs[0].read_text())

    def close(self, grace: float = 10.0) -> None:
        """Stop what this deployment started, letting workers clean their caches if they can.

        Workers started by hand outlive a workflow (they wait for the next one until their
        --timeout), so each gets SIGINT (it removes its cache directory), then after `grace`
        seconds SIGKILL.
        """
        if self.manager is not None and self.manager.poll() is None:
            self.manager.kill()
            self.manager.wait()
        for sig in (signal.SIGINT, signal.SIGKILL):
            alive = [p for p in self.workers.values() if p.poll() is None]
            for proc in alive:
                if sig is not None:
                    proc.send_signal(sig)
            deadline = time.monotonic() + grace
            for proc in alive:
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
