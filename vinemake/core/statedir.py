"""The state directory: the one owner of every path under a workflow's `.vinemake/`.

Everything vinemake keeps about a workflow lives here, and nothing else names these paths:

    .vinemake/
      journal     the append-only record of every state change (journal.py)
      filestate   the memo of source hashes by stat (filestate.py)
      urls        what the servers of URL sources said, and what was fetched (urls.py)
      uptodate    the no-op fast path's snapshot of the last complete run
      rules       the parsed-rules cache (language/rulecache.py)
      cache/      the store of finished outputs, unless --cache-dir names a shared one
      failed/     each failed rule's outputs and INFO record
      manager/    the manager's scratch space (files on their way to or from workers)
      worker/     the local worker's cache, kept between runs for `@cache forever`
      local/      LOCAL commands' shadow directories while they run (core/shadow.py)
      runs/       one folder per run (the last RUNS_KEPT, within RUNS_BYTES): events.jsonl,
                  the record every view of a run reads (core/events.py), and stderr/, each
                  rule's stderr tail
      edited/     outputs changed by hand, kept before vinemake made them again (edits.py)
      lock        the flock that lets one run or clean at a time work here
      status      where the running run's live status page listens (face/statuspage.py)
"""

from __future__ import annotations

import os

from vinemake.common.records import dataclass

__all__ = ["StateDir", "NAME", "RULES", "RUNS_KEPT", "RUNS_BYTES"]

NAME = ".vinemake"
RULES = "rules"  # the parsed-rules cache reads it relative to the state directory it is given
RUNS_KEPT = 20  # runs/ keeps the newest this many
# ... and no older run once the runs before it hold this much: a run of a million rules
# records about a gigabyte, and twenty of those would fill a disk.
RUNS_BYTES = 2 << 30


@dataclass(frozen=True)
class StateDir:
    """The paths of one workflow's state directory (`root` is the workflow directory)."""

    root: str

    @property
    def path(self) -> str:
        return os.path.join(self.root, NAME)

    def _sub(self, name: str) -> str:
        return os.path.join(self.root, NAME, name)

    @property
    def journal(self) -> str:
        return self._sub("journal")

    @property
    def filestate(self) -> str:
        return self._sub("filestate")

    @property
    def urls(self) -> str:
        return self._sub("urls")

    @property
    def uptodate(self) -> str:
        return self._sub("uptodate")

    @property
    def rules(self) -> str:
        return self._sub(RULES)

    @property
    def cache(self) -> str:
        return self._sub("cache")

    @property
    def failed(self) -> str:
        return self._sub("failed")

    @property
    def manager(self) -> str:
        return self._sub("manager")

    @property
    def worker(self) -> str:
        return self._sub("worker")

    @property
    def edited(self) -> str:
        return self._sub("edited")

    @property
    def local(self) -> str:
        return self._sub("local")

    @property
    def lock(self) -> str:
        return self._sub("lock")

    @property
    def runs(self) -> str:
        return self._sub("runs")

    def run(self, run_id: str) -> str:
        """The folder of one run's record."""
        return os.path.join(self.runs, run_id)

    def events(self, run_id: str) -> str:
        return os.path.join(self.runs, run_id, "events.jsonl")

    def stderr(self, run_id: str, rule_dir: str = "") -> str:
        """Where a run keeps each rule's stderr tail (`rule_dir`: failed_dir_name(label))."""
        return os.path.join(self.runs, run_id, "stderr", rule_dir)

    @property
    def status(self) -> str:
        return self._sub("status")

    def store_path(self, cache_dir: str | None) -> str:
        """The store this workflow uses: a shared --cache-dir, else its own `cache/`."""
        return os.path.abspath(cache_dir) if cache_dir else self.cache

    def records(self) -> tuple[str, ...]:
        """What `--clean all` removes besides the outputs: everything but the lock."""
        return (self.failed, self.cache, self.manager, self.worker, self.local, self.journal,
                self.filestate, self.urls, self.uptodate, self.rules, self.runs)
