"""Garbage collection of intermediates (`-g`, `-G`, `--gc-size`): when, and how many, as Makeflow.

A made file is *collectible* once every rule of this run that reads it has finished, unless it
is a workflow output, a MAKEFLOW_INPUTS/OUTPUTS entry or a source. The engine asks after every
rule it finishes how many of the collectible files to delete now, oldest first:

- `none`: never;
- `ref_cnt`: all of them, or at most `-G N` per finished rule (Makeflow's MAKEFLOW_GC_COUNT;
  Makeflow also caps it at 16 by default, vinemake only when -G is given, so a file goes as
  soon as it can);
- `on_demand`: all of them, but only while more than `-G N` (default 16) files made by this
  run have not been deleted, or the disk holding the workflow has `--gc-size` bytes or fewer
  free (default 10 MB): Makeflow's `completed_files - deleted_files > count || low disk`;
- `all`: all of them, every time.

When a run ends without a failure or a stop, every file still collectible is deleted, as
Makeflow's last collection does. Makeflow looks every 5% of the rules; vinemake after each
finished rule, which deletes the same files no later.
"""

from __future__ import annotations

from collections.abc import Callable

from vinemake.common.records import dataclass

__all__ = ["GC_MODES", "Collection", "DEFAULT_COUNT", "DEFAULT_MIN_FREE"]

GC_MODES = ("none", "ref_cnt", "on_demand", "all")
DEFAULT_COUNT = 16  # on_demand: files made and not deleted before collection starts
DEFAULT_MIN_FREE = 10 * 1024 * 1024  # bytes: Makeflow's MAKEFLOW_MIN_SPACE


@dataclass(frozen=True)
class Collection:
    """-g MODE, -G N (None: not given) and --gc-size (bytes; None: the default)."""

    mode: str = "none"
    count: int | None = None
    min_free: int | None = None

    @property
    def on(self) -> bool:
        return self.mode != "none"

    def how_many(self, collectible: int, alive: int, free_bytes: Callable[[], int]) -> int:
        """Of `collectible` files, how many to delete now; `alive` counts the files this run
        made and has not deleted. `free_bytes` (disk space left) is asked only by on_demand."""
        if not collectible or self.mode == "none":
            return 0
        if self.mode == "ref_cnt":
            return collectible if self.count is None else min(collectible, self.count)
        if self.mode == "on_demand":
            count = DEFAULT_COUNT if self.count is None else self.count
            low = self.min_free if self.min_free is not None else DEFAULT_MIN_FREE
            return collectible if alive > count or free_bytes() <= low else 0
        return collectible  # all
