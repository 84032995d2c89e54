"""`vinemake-worker HOST PORT [options]`: start a worker by hand or from a batch job."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile

from vinemake.common.errors import VinemakeError
from vinemake.common.machine import machine_resources
from vinemake.worker.memlimit import METHODS
from vinemake.worker.stopping import StopSignals

__all__ = ["main", "parse_args", "machine_resources"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vinemake-worker",
                                description="Run vinemake tasks for a manager at HOST PORT.")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--cores", type=float, help="cores to offer (default: all)")
    p.add_argument("--memory", type=int, metavar="MB", help="memory to offer (default: all)")
    p.add_argument("--disk", type=int, metavar="MB", help="disk to offer (default: free space)")
    p.add_argument("--gpus", type=int, default=0)
    p.add_argument("--workdir", metavar="DIR", help="cache and sandboxes (default: a tmp dir)")
    p.add_argument("--timeout", type=float, default=900.0, metavar="S",
                   help="exit after S seconds idle or unable to reach the manager")
    p.add_argument("--password", metavar="FILE", help="file holding the shared secret")
    p.add_argument("--ssl", action="store_true", help="connect to the manager over TLS")
    p.add_argument("--name", default="", help="name shown in logs and the transfer log")
    p.add_argument("--no-idle-exit", action="store_true",
                   help="stay while connected however long idle (--timeout then only bounds "
                        "reconnecting); for workers whose manager stops them")
    p.add_argument("--as-remote", action="store_true",
                   help="act as if on another host: never link the manager's files "
                        "(tests and benchmarks of transfers on one machine)")
    p.add_argument("--stop-grace", type=float, default=None, metavar="S",
                   help="how long a command killed by SIGTERM waits for this worker's own stop "
                        "signal before it counts as the rule's failure (default: 1 s)")
    p.add_argument("--quiet", action="store_true",
                   help="print only errors, not connecting and disconnecting (vinemake's own "
                        "local worker: its lines would cross the status line)")
    p.add_argument("--memory-limits", choices=METHODS, default="auto",
                   help="how a rule's declared memory is enforced: a cgroup per task (cgroup), "
                        "RLIMIT_DATA (rlimit), samples only (sampling); auto: the first this "
                        "machine allows")
    p.add_argument("--debug", action="store_true", help="log what the worker does")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The local backend stops its worker with SIGTERM, a terminal's Ctrl-C sends SIGINT: both
    # must leave through the cleanup path, so they are caught before anything needs cleaning.
    with StopSignals() as signals:
        return _serve(args, signals)


def _serve(args: argparse.Namespace, signals: StopSignals) -> int:
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="vinemake-worker: %(message)s")
    if not (args.debug or args.quiet):  # one line as it connects, leaves, retries
        logging.getLogger("vinemake.worker").setLevel(logging.INFO)
    from vinemake.worker.worker import Worker, WorkerOptions

    workdir = args.workdir or os.path.join(tempfile.gettempdir(), f"vinemake-worker-{os.getuid()}")
    try:
        opts = WorkerOptions(
            host=args.host, port=args.port, workdir=os.path.abspath(workdir),
            resources=machine_resources(workdir, args.cores, args.memory, args.disk, args.gpus),
            timeout_s=args.timeout, password_file=args.password, ssl=args.ssl, name=args.name,
            as_remote=args.as_remote, idle_exit=not args.no_idle_exit,
            memory_limits=args.memory_limits,
            **({} if args.stop_grace is None else {"stop_grace_s": args.stop_grace}))
        worker = Worker(opts)
        return signals.serve(worker.run, worker.stop)
    except VinemakeError as e:
        print(f"vinemake-worker: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # e.g. a workdir that cannot be made
        print(f"vinemake-worker: {e.strerror}: {e.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
