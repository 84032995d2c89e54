"""Everything that shapes one manager: where it listens, who may join, how it places work."""

from __future__ import annotations

from vinemake.common.records import dataclass

__all__ = ["ManagerConfig", "PLACEMENTS"]

PLACEMENTS = ("locality", "random")


@dataclass(frozen=True)
class ManagerConfig:
    """Options for `Manager.start`. Plain data: the CLI builds it, tests build it by hand.

    port 0 picks a free port; `port_file`, if set, receives the chosen port as text.
    `password_file` holds the shared secret workers and peers must prove they know.
    `transfer_limit` bounds concurrent transfers served by any one source (worker or manager).
    `max_tasks` is the -j cap on tasks running at once over all workers (None: no cap).
    `max_retries` is how many times a task lost with its worker (or whose input no source
    could give) is re-queued before the engine sees status "lost" (or "error"). `workdir` is
    the manager's scratch dir (transfer log, temporaries). With `ssl`, outputs come back
    pushed by workers over TLS. `placement` is one of PLACEMENTS, the one list of them.
    """

    host: str = "127.0.0.1"
    port: int = 0
    port_file: str | None = None
    password_file: str | None = None
    ssl: bool = False
    ssl_cert: str | None = None
    ssl_key: str | None = None
    placement: str = "locality"
    transfer_limit: int = 3
    peer_transfers: bool = True
    max_tasks: int | None = None
    workdir: str = ".vinemake/manager"  # the face passes its StateDir's; this is for tests
    max_retries: int = 3
    seed: int | None = None  # for --placement random, so comparisons are repeatable
    # Tasks per core a worker on this host may hold beyond what fits, started by the worker
    # as soon as a slot frees (0: none). See Scheduler._queue_ahead. Deep enough that Runs
    # leave and Done outcomes come back in batches, which costs the manager less CPU per task
    # (measured in docs/performance.md; deeper was no better).
    worker_queue: int = 16
    handshake_timeout_s: float = 10.0
    max_handshakes: int = 64
    max_handshakes_per_host: int = 16
    heartbeat_s: float = 5.0
    silence_s: float = 60.0
    # A rule bigger than every connected worker fails after waiting this long for a bigger
    # one to join (not with a provider that sizes workers to the rules: batch systems).
    too_big_wait_s: float = 60.0

    @property
    def transfer_log(self) -> str:
        """Where every transfer is logged, one tab-separated line each (the benchmark reads it)."""
        return f"{self.workdir}/transfers.tsv"
