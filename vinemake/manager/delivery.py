"""Putting a finished task's files where the engine expects them, on the manager's host.

Outputs with a path go to that path, failed outputs to the task's failed_dir, each installed
atomically (temp name in the target's directory, then rename). A worker on this host is read
by hard link from its cache; a remote worker's file server is asked for the bytes, which are
checked against the content hash the worker recorded. Remote fetches run on a small thread
pool so the manager's loop never waits on a network copy.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from vinemake.manager.transfers import MANAGER, TransferLog, install
from vinemake.protocol import ProtocolError, fetch
from vinemake.task import TaskResult

__all__ = ["Install", "Origin", "Delivery"]


@dataclass(frozen=True)
class Install:
    """One file to put in place: `key` at `cache_path` on the worker goes to `target`."""

    target: str
    key: str
    hash: str  # expected content hash ("" when not checked: failed outputs)
    cache_path: str


@dataclass(frozen=True)
class Origin:
    """The worker that holds the files."""

    id: str
    host: str
    file_port: int
    same_host: bool


class Delivery:
    """Installs files, then hands the (possibly downgraded) result to `report`.

    `drop(worker_id, keys)` asks the worker to forget files it kept only for delivery.
    """

    def __init__(self, workdir: str, secret: bytes | None, log: TransferLog,
                 report: Callable[[list[TaskResult]], None],
                 drop: Callable[[str, list[str]], None], threads: int = 8, limit: int = 3):
        self.limit = limit  # transfers at once from any one worker, as for peers
        self._sources: dict[str, threading.BoundedSemaphore] = {}
        self._sources_lock = threading.Lock()
        self.workdir = workdir
        self.secret = secret
        self.log = log
        self.report = report
        self.drop = drop
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="delivery")

    def deliver(self, origin: Origin, result: TaskResult, installs: list[Install]) -> None:
        if origin.same_host:
            self._run(origin, result, installs, self._link)
        else:
            self._pool.submit(self._run, origin, result, installs, self._fetch)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, origin: Origin, result: TaskResult, installs: list[Install], put) -> None:
        try:
            for item in installs:
                put(origin, item)
        except (ProtocolError, OSError, EOFError) as e:
            result = dataclasses.replace(
                result, status="error",
                reason=f"cannot put output in place from {origin.id}: {e}")
        kept = [i.key for i in installs if i.key.startswith("failed.")]
        if kept:
            self.drop(origin.id, kept)
        self.report([result])

    def _link(self, origin: Origin, item: Install) -> None:
        install(item.cache_path, item.target)

    def _fetch(self, origin: Origin, item: Install) -> None:
        with self._sources_lock:
            slots = self._sources.setdefault(origin.id, threading.BoundedSemaphore(self.limit))
        with slots:
            self._fetch_now(origin, item)

    def _fetch_now(self, origin: Origin, item: Install) -> None:
        tmp = os.path.join(self.workdir, f".recv-{item.key}-{threading.get_ident()}")
        start = time.time()
        try:
            size, _ = fetch(origin.host, origin.file_port, item.key, tmp, self.secret, None,
                            item.hash)
        except BaseException:
            for leftover in (tmp, tmp + ".tar"):
                if os.path.isdir(leftover):
                    shutil.rmtree(leftover, ignore_errors=True)
                elif os.path.lexists(leftover):
                    os.unlink(leftover)
            self.log.record(origin.id, MANAGER, item.key, 0, start, time.time(), False)
            raise
        self.log.record(origin.id, MANAGER, item.key, size, start, time.time())
        install(tmp, item.target, move=True)
