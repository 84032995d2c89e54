"""Which inputs a worker must fetch for a task, and from which sources, in order.

For each input the worker lacks, the sources come from `transfers.choose_sources`: peers that
hold it, then the manager (when the file has a path on its host), each serving a bounded
number of copies at once. A large file is sent by each source to one worker at a time,
whatever transfer_limit allows, and a worker still receiving it is a source too
(cut-through): each copy then flows at a full link's speed down a pipeline (manager → w1 →
w2 → …), and every worker has the file about one file-time after the first started, where a
source splitting its link k ways would slow each of its receivers, and everyone downstream,
k-fold. A lost intermediate with no source left is made again (`Recovery.recreate`) and the
task waits for it. The outputs of a task's `@mini` rules are never fetched: the worker makes
them from the minis' own inputs, which are fetched like the task's.

A URL source is fetched from its server by the first worker that needs it; while that copy
is on its way the others wait, then take it from a peer (the server is the last resort), so
the server sends it once per cluster. A large one is forwarded as it arrives, as above.
"""

from __future__ import annotations

from collections.abc import Mapping

from vinemake.common.task import Task
from vinemake.manager.recovery import Recovery
from vinemake.manager.replicas import Replicas
from vinemake.manager.transfers import MANAGER, choose_sources
from vinemake.manager.workers import ConnectedWorker
from vinemake.wire.protocol import URL

__all__ = ["LARGE_FILE_BYTES", "FetchPlanner"]

LARGE_FILE_BYTES = 8_000_000


class FetchPlanner:
    """Plans the fetches of a Run message from the manager's ledger (loop thread only)."""

    def __init__(self, replicas: Replicas, recovery: Recovery,
                 workers: Mapping[str, ConnectedWorker], manager_source: list,
                 transfer_limit: int, peer_transfers: bool):
        self.replicas = replicas
        self.recovery = recovery
        self.workers = workers  # the manager's connected workers, by id
        self.manager_source = manager_source  # [host, port, MANAGER, tls] of its file server
        self.limit = transfer_limit
        self.peers = peer_transfers

    def plan(self, task: Task, w: ConnectedWorker, cached: list | None = None) -> list | None:
        """[key, hash, [[host, port, label, tls], ...]] for inputs `w` lacks; None: wait.

        The keys of the task's own inputs (not its library's) that `w` holds already, its
        cache hits, are appended to `cached`.
        """
        files = task.inputs if task.library is None else (*task.library.inputs, *task.inputs)
        library = {f.key for f in task.library.inputs} if task.library is not None else ()
        made_there: set[str] = set()
        if task.minis:  # their outputs are made on `w` from their inputs, never moved
            made_there = {o.key for m in task.minis for o in m.outputs}
            files = (*(f for m in task.minis for f in m.inputs), *files)
        r = self.replicas
        fetches = []
        for f in files:
            if f.key in made_there:
                continue
            # An output kept on workers (@temp) has a path that names no file on this host.
            on_disk = f.path is not None and f.key not in r.remote_only
            if f.key in w.holds:
                if cached is not None and f.key not in library:
                    cached.append(f.key)
                continue
            if w.same_host and on_disk:
                continue
            label = w.charged.get(f.key)
            if label is not None and (label == MANAGER or label in self.workers):
                # already on its way there: the worker waits for that transfer
                fetches.append([f.key, r.hash_of(f.key), [self.source(label)]])
                continue
            if f.url:
                sources = self._url_sources(f, w)
                if sources is None:
                    return None
                fetches.append([f.key, r.hash_of(f.key), sources])
                continue
            path = None if f.key in r.remote_only else f.path or r.paths.get(f.key)
            holders = r.holders.get(f.key, ())
            big = r.size_of(f.key, f.size, path) >= LARGE_FILE_BYTES
            pipelined = big and self.peers
            order = choose_sources(holders, r.inflight, 1 if pipelined else self.limit,
                                   path is not None, self.peers, r.moving[f.key],
                                   r.receivers(f.key, w.id, self.workers) if pipelined else ())
            if order == [] and not r.moving[f.key]:
                self.recovery.recreate(f.key)
            if not order:
                return None  # every source busy, or the file is lost and being re-made
            if path is not None and MANAGER not in order:
                order.append(MANAGER)  # last resort if every peer fails
            fetches.append([f.key, r.hash_of(f.key),
                            [self.source(label) for label in order]])
        return fetches

    def _url_sources(self, f, w: ConnectedWorker) -> list | None:
        """Peers holding (or receiving) the URL source, its server last; None: wait."""
        r = self.replicas
        holders = r.holders.get(f.key, ())
        if not self.peers or not (holders or r.moving[f.key]):
            return [[f.url, 0, URL, False]]
        pipelined = r.size_of(f.key, f.size, None) >= LARGE_FILE_BYTES
        order = choose_sources(holders, r.inflight, 1 if pipelined else self.limit, False,
                               True, r.moving[f.key],
                               r.receivers(f.key, w.id, self.workers) if pipelined else ())
        if not order:
            return None  # a peer will hold it soon, or every holder is busy
        return [self.source(label) for label in order] + [[f.url, 0, URL, False]]

    def source(self, label: str) -> list:
        if label == MANAGER:
            return list(self.manager_source)
        peer = self.workers[label]
        return [peer.addr, peer.file_port, label, False]
