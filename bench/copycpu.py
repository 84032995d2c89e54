"""CPU a MB of a peer copy's wire path: an origin, a hop that forwards as it receives, a last.

    python bench/copycpu.py                            # 200 MB at 25 MB/s, three rounds
    python bench/copycpu.py --baseline /tmp/base       # another checkout in the same rounds

Three processes on 127.0.0.1 run vinemake's own file servers and fetches: the origin (what
the manager runs) serves a file, its sends paced at --rate as a link would; the hop fetches
it into a Growing and its file server forwards it to the last one while it arrives, as a
worker in the middle of a pipeline does; the last fetches it. Each process's CPU (user and
system) is divided by the MB moved. Loopback runs the receiver's TCP on the sender's time,
so the hop's figure holds some of the last one's; the emulated cluster's links cost far
more (bench/cluster.py). Imports and first use are out of the measurement: each process
first fetches a small file.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

MB = 1024 * 1024
SECRET = b"copycpu"
SO_MAX_PACING_RATE = 47  # Linux's, which Python names no constant for
ORDER = ("origin", "hop", "last")


def _cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def _since(start: tuple[float, float]) -> tuple[float, float]:
    now = _cpu()
    return now[0] - start[0], now[1] - start[1]


def _warm(port: int, dest: str) -> None:
    from vinemake.wire import fileserver as fs

    fs.fetch("127.0.0.1", port, "small", dest + ".warm", SECRET)
    os.unlink(dest + ".warm")


def _origin(path: str, rate: int, ports, results) -> None:
    from vinemake.wire import fileserver as fs

    tune, send_file = fs.tune, fs.send_file

    def paced(sock: socket.socket) -> None:  # the origin's link: --rate, packets spread
        tune(sock)
        sock.setsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE, struct.pack("Q", rate))

    def timed(conn, key: str, src: str) -> int:
        start = _cpu()
        sent = send_file(conn, key, src)
        if key == "big":
            results.put(("origin", *_since(start)))
        return sent
    fs.tune, fs.send_file = paced, timed
    server = fs.FileServer("127.0.0.1", lambda key: path if key == "big" else path + ".small",
                           SECRET)
    ports.put(server.port)
    time.sleep(3600)


def _hop(origin: int, small: str, dest: str, ports, results, finished) -> None:
    from vinemake.wire import fileserver as fs

    arrivals = fs.Arrivals()
    server = fs.FileServer("127.0.0.1",
                           lambda key: arrivals.find(key) if key == "big" else small, SECRET)
    ports.put(server.port)
    _warm(origin, dest)
    start = _cpu()
    growing = arrivals.start("big")
    fs.fetch("127.0.0.1", origin, "big", dest, SECRET, progress=growing)
    arrivals.end(growing, True)
    finished.wait()  # the last one has it all: the forward is over too
    results.put(("hop", *_since(start)))
    time.sleep(3600)


def _last(hop: int, dest: str, results, finished) -> None:
    from vinemake.wire import fileserver as fs

    _warm(hop, dest)
    start = _cpu()
    growing = fs.Arrivals().start("big")
    fs.fetch("127.0.0.1", hop, "big", dest, SECRET, progress=growing)
    growing.finish(True)
    results.put(("last", *_since(start)))
    finished.set()


def one_round(size_mb: int, rate_mb: float) -> dict[str, float]:
    """ms of CPU a MB of each process, for one copy through origin → hop → last."""
    scratch = tempfile.mkdtemp(prefix="copycpu-")
    try:
        src = os.path.join(scratch, "src")
        with open(src, "wb") as f:
            block = bytes(range(256)) * (MB // 256)
            for _ in range(size_mb):
                f.write(block)
        with open(src + ".small", "wb") as f:
            f.write(bytes(MB))
        ctx = multiprocessing.get_context("fork")
        results, up, finished = ctx.Queue(), ctx.Queue(), ctx.Event()
        origin = ctx.Process(target=_origin, args=(src, int(rate_mb * MB), up, results),
                             daemon=True)
        origin.start()
        hop = ctx.Process(target=_hop, args=(up.get(), src + ".small",
                                             os.path.join(scratch, "hop"), up, results,
                                             finished), daemon=True)
        hop.start()
        last = ctx.Process(target=_last, args=(up.get(), os.path.join(scratch, "last"),
                                               results, finished), daemon=True)
        last.start()
        got = {}
        while len(got) < 3:
            name, user, system = results.get(timeout=600)
            got[name] = 1000 * (user + system) / size_mb
        for p in (origin, hop, last):
            p.kill()
        return got
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--rate", type=float, default=25.0, help="the origin's MB/s")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline", help="another checkout, its rounds taking turns with these")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_round(args.mb, args.rate)))
        return
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = ([("baseline", args.baseline)] if args.baseline else []) + [("this tree", here)]
    rounds: dict[str, list[dict[str, float]]] = {label: [] for label, _ in trees}
    print(f"load {open('/proc/loadavg').read().split()[:3]}, {sys.executable}")
    for _ in range(args.repeat):
        for label, tree in trees:
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--one",
                                  "--mb", str(args.mb), "--rate", str(args.rate)],
                                 env={**os.environ, "PYTHONPATH": tree}, check=True,
                                 capture_output=True, text=True).stdout
            rounds[label].append(json.loads(out))
            print(f"  {label}: " + ", ".join(f"{k} {rounds[label][-1][k]:.2f}" for k in ORDER))
    for label, runs in rounds.items():
        print(f"{label}, ms of CPU a MB, medians of {len(runs)}: " + ", ".join(
            f"{k} {statistics.median(r[k] for r in runs):.2f}" for k in ORDER))
    print(f"load {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
