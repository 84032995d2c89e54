"""Packed environments and URL sources on 8 emulated workers (tests/cluster network namespaces).

    sudo python3 bench/environments.py            # full sizes: a 200 MB environment, 200 tasks,
                                                  # a 100 MB URL source (minutes; root for netns)
    sudo python3 bench/environments.py --scale 0.1   # everything scaled down

Three runs, each on its own emulated cluster, in the same invocation:

1. environment: a 200 MB environment tarball used by 200 short `@environment` tasks on 8
   workers. Bytes the manager's host sent (target: about one copy: the other workers get it
   from peers), unpacks per worker (target: exactly one), wall time.
2. baseline: the same 200 tasks, each unpacking its own copy of the tarball (an ordinary
   input) in its sandbox, as a workflow without `@environment` has to. Wall time against 1.
3. url: a 100 MB document on a web server in a host of its own, read by 16 tasks on 8 workers.
   Bytes the server sent, from its own request log and its link's counter (target: one copy).

Prints one JSON object per run and a summary; docs/performance.md keeps the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "cluster"))
import netns  # noqa: E402
from cluster import MB, run_on_cluster  # noqa: E402

DOCSERVER = HERE.parent / "tests" / "docserver.py"
WORKERS = 8


def make_environment(path: Path, size: int) -> None:
    """A conda-pack-shaped tarball of `size` bytes that gzip cannot shrink (one big file)."""
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp)
        (prefix / "bin").mkdir()
        (prefix / "conda-meta").mkdir()
        (prefix / "conda-meta" / "history").write_text("{}\n")
        with open(prefix / "lib.bin", "wb") as f:
            left = size
            while left > 0:
                f.write(os.urandom(min(left, 1 << 24)))
                left -= 1 << 24
        with tarfile.open(path, "w") as tar:  # uncompressed: the bytes are random anyway
            tar.add(prefix, arcname=".")


def unpacks(workflow_dir: Path) -> dict[str, int]:
    """Environments unpacked in each worker's cache (the workers' dirs beside the workflow)."""
    found = {}
    for i in range(WORKERS):
        forever = workflow_dir.parent / "run" / f"w{i}" / "forever"
        found[f"w{i}"] = sum(1 for p in forever.glob("env-*") if not p.name.endswith(".meta")) \
            if forever.exists() else 0
    return found


def environment_runs(size: int, tasks: int) -> list[dict]:
    env = Path(tempfile.mkdtemp(prefix="vinemake-env-")) / "env.tar"
    make_environment(env, size)
    data = env.read_bytes()
    counted: dict[str, int] = {}

    def check(wf: Path) -> str | None:
        counted.update(unpacks(wf))
        bad = [i for i in range(tasks) if (wf / f"out.{i}").read_text().strip() != "ok"]
        return f"wrong outputs: {bad[:5]}" if bad else None

    rules = "".join(f"@environment env.tar\nout.{i}:\n"
                    f"\ttest -d \"\\$CONDA_PREFIX/bin\" && echo ok > out.{i}\n"
                    for i in range(tasks))
    shared = run_on_cluster("environment", WORKERS, "1gbit", {"env.tar": data}, rules, [],
                            check=check)
    per_worker = dict(counted)
    baseline_rules = "".join(
        f"out.{i}: env.tar\n\tmkdir env && tar xf env.tar -C env && "
        f"test -d env/bin && echo ok > out.{i}\n" for i in range(tasks))
    own = run_on_cluster("baseline", WORKERS, "1gbit", {"env.tar": data}, baseline_rules, [],
                         check=lambda wf: None)
    shutil.rmtree(env.parent, ignore_errors=True)
    return [
        {"run": "environment", "tasks": tasks, "env_bytes": len(data), "ok": shared.ok,
         "wall_s": round(shared.wall_s, 2), "manager_sent_bytes": shared.root_bytes,
         "manager_copies": round(shared.root_bytes / len(data), 2),
         "unpacks_per_worker": per_worker},
        {"run": "baseline (each task unpacks its own copy)", "tasks": tasks, "ok": own.ok,
         "wall_s": round(own.wall_s, 2), "manager_sent_bytes": own.root_bytes,
         "unpacks": tasks},
    ]


def url_run(size: int, tasks: int) -> dict:
    """A document of `size` bytes on a web server in host WORKERS, read by `tasks` tasks."""
    cluster = netns.Cluster.up(WORKERS + 1, "1gbit", kind="vmb")
    scratch = Path(tempfile.mkdtemp(prefix="vinemake-bench-url-"))
    served = scratch / "served"
    served.mkdir()
    (served / "big.bin").write_bytes(os.urandom(size))
    port_file, log = scratch / "server.port", scratch / "server.log"
    server = cluster.popen(WORKERS, [sys.executable, str(DOCSERVER), str(served),
                                     "--port-file", str(port_file), "--log", str(log)])
    d = netns.Deployment(cluster, scratch / "run", "bench-secret")
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline:
                raise RuntimeError("the document server did not start")
            time.sleep(0.05)
        url = f"http://{cluster.addr(WORKERS)}:{port_file.read_text().strip()}/big.bin"
        wf = scratch / "wf"
        wf.mkdir()
        (wf / "Vinefile").write_text("".join(
            f"@resources cores=1\nsum.{i}: {url}->big\n\tcksum < big > sum.{i}\n"
            for i in range(tasks)))
        before = cluster.stats()
        start = time.perf_counter()
        d.start_manager(wf)
        for i in range(WORKERS):
            d.start_worker(i, cores=1, disk_mb=4000)
        code = d.wait_manager(timeout=3600)
        wall = time.perf_counter() - start
        after = cluster.stats()
        sums = {(wf / f"sum.{i}").read_text() for i in range(tasks)} if code == 0 else set()
        gets = [line.split() for line in log.read_text().splitlines()
                if line.startswith("GET ")]
        server_link = after[str(WORKERS)].up - before[str(WORKERS)].up
        return {"run": "url", "tasks": tasks, "doc_bytes": size, "ok": code == 0 and
                len(sums) == 1, "wall_s": round(wall, 2), "server_gets": len(gets),
                "server_body_bytes": sum(int(g[3]) for g in gets),
                "server_link_bytes": server_link,
                "server_copies": round(server_link / size, 2),
                "workers_used": len({t.dest for t in d.transfers(wf) if t.size == size})}
    finally:
        d.close()
        server.kill()
        server.wait()
        cluster.down()
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0, help="multiply every size and count")
    p.add_argument("--only", choices=("environment", "url"))
    args = p.parse_args()
    reason = netns.unavailable_reason()
    if reason:
        print(f"bench/environments.py: {reason}", file=sys.stderr)
        return 2
    results = []
    if args.only in (None, "environment"):
        results += environment_runs(int(200 * MB * args.scale), max(8, int(200 * args.scale)))
    if args.only in (None, "url"):
        results.append(url_run(int(100 * MB * args.scale), 16))
    for r in results:
        print(json.dumps(r))
    by = {r["run"].split()[0]: r for r in results}
    if "environment" in by:
        e, b = by["environment"], by["baseline"]
        print(f"environment: manager sent {e['manager_copies']} copies, unpacks per worker "
              f"{sorted(set(e['unpacks_per_worker'].values()))}, {e['wall_s']} s against "
              f"{b['wall_s']} s when each task unpacks its own ({b['wall_s'] / e['wall_s']:.1f}x)")
    if "url" in by:
        u = by["url"]
        print(f"url: the server sent {u['server_gets']} GET(s), {u['server_copies']} copies "
              f"over its link, to {u['workers_used']} workers")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
