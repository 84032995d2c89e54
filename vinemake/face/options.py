"""RunOptions: everything the command line says about how to run a workflow, as plain data.

One object goes down: the manager's part is a ManagerConfig and the workers' part a
ProviderOptions, built once by the command line and handed on as they are, so no option is
copied field by field from one record to the next.
"""

from __future__ import annotations

from dataclasses import field

from vinemake.backends import BACKENDS, ProviderOptions
from vinemake.common.records import dataclass
from vinemake.core.collection import Collection
from vinemake.language.jxinput import JxInput
from vinemake.manager.config import ManagerConfig

__all__ = ["RunOptions", "BATCH_TYPES", "CLEAN_MODES"]

BATCH_TYPES = tuple(BACKENDS)  # -T: one name per worker provider
CLEAN_MODES = ("all", "outputs", "intermediates", "cache")


@dataclass(frozen=True)
class RunOptions:
    """How to run (or clean) one workflow. Defaults are what `vinemake` alone does.

    `vinefile` and `root` are absolute; `targets` are the files asked for (empty: all of the
    workflow's outputs). None means "not given": the component that reads it picks its default.
    `max_local` caps LOCAL rules on this machine, `manager.max_tasks` tasks on workers.
    """

    vinefile: str = "Vinefile"
    root: str = "."
    targets: tuple[str, ...] = ()
    # Where and how much to run.
    batch_type: str = "local"
    max_local: int | None = None  # -j: LOCAL rules at once on this machine
    window: int | None = None  # VINEMAKE_SUBMIT_WINDOW: tasks submitted and not ended
    keep_going: bool = False
    retries: int | None = None
    explain: bool = False
    clean: str | None = None  # one of CLEAN_MODES when --clean was given
    # Caching and storage.
    cache_dir: str | None = None
    offline: bool = False  # key URL sources as recorded, without asking their servers
    environment: str | None = None  # --environment: the packed environment of every rule
    gc: Collection = Collection()  # -g, -G, --gc-size
    keep_intermediates_remote: bool = False
    shared_fs: tuple[str, ...] = ()  # --shared-fs: absolute dirs every worker sees
    summary_file: str | None = None  # -f
    zero_length_error: bool = False  # -z
    # The manager (where workers connect, who may join, how work is placed) and the workers.
    manager: ManagerConfig = field(default_factory=ManagerConfig)
    workers: ProviderOptions = field(default_factory=ProviderOptions)
    # A JX or JSON workflow: how to read it (None: a Vinefile).
    jx: JxInput | None = None
    # Watching: the HTML report written at the end, the live status page.
    report: str | None = None
    trace: str | None = None  # --trace FILE: a row per rule, written when the run ends
    status_port: int | None = None
    status_host: str = "127.0.0.1"

