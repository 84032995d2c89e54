"""RunOptions: everything the command line says about how to run a workflow, as plain data."""

from __future__ import annotations

from dataclasses import dataclass, field

from vinemake.common.spec import Resources

__all__ = ["RunOptions", "BATCH_TYPES", "CLEAN_MODES", "GC_MODES", "PLACEMENTS"]

BATCH_TYPES = ("local", "workers", "slurm", "pbs", "sge", "condor")
CLEAN_MODES = ("all", "outputs", "intermediates", "cache")
GC_MODES = ("none", "ref_cnt")
PLACEMENTS = ("locality", "random")


@dataclass(frozen=True)
class RunOptions:
    """How to run (or clean) one workflow. Defaults are what `vinemake` alone does.

    `vinefile` and `root` are absolute; `targets` are the files asked for (empty: all of the
    workflow's outputs). None means "not given": the component that reads it picks its default.
    """

    vinefile: str = "Vinefile"
    root: str = "."
    targets: tuple[str, ...] = ()
    # Where and how much to run.
    batch_type: str = "local"
    max_local: int | None = None
    keep_going: bool = False
    retries: int | None = None
    explain: bool = False
    clean: str | None = None  # one of CLEAN_MODES when --clean was given
    # Caching and storage.
    cache_dir: str | None = None
    gc: str = "none"
    keep_intermediates_remote: bool = False
    # The manager: where workers connect and how they are let in.
    port: int = 0  # 0: any free port
    port_file: str | None = None
    password_file: str | None = None
    ssl: bool = False
    ssl_cert: str | None = None
    ssl_key: str | None = None
    manager_host: str | None = None
    # Scheduling and transfers.
    placement: str = "locality"
    transfer_limit: int = 3
    peer_transfers: bool = True
    # Workers.
    max_workers: int | None = None
    min_workers: int = 0
    worker_timeout_s: float | None = None
    batch_options: str = ""
    worker_resources: Resources = field(default_factory=Resources)  # --cores/--memory/...
