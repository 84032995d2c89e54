"""Putting a finished task's files where the engine expects them, on the manager's host.

Outputs with a path go to that path, failed outputs to the task's failed_dir, each installed
atomically (temp name in the target's directory, then rename). A worker on this host is read
by hard link from its cache; a remote worker's file server is asked for the bytes, which are
checked against the content hash the worker recorded. Remote fetches run on a small thread
pool so the manager's loop never waits on a network copy. Small outputs may come inside the
task's outcome itself: those are checked and installed off the loop too, all of one turn of
the loop in one job (`deliver_inline`), so the loop does not wait on creating files either.
Those jobs run one at a time, on a thread of their own: creating files in one directory is
serial in the kernel (the directory's lock), and threads that wait for that lock spin on it
for as long as the holder runs, so creating them from several threads at once cost CPU and
saved no time.

With TLS the manager does not fetch from a worker (a worker has no certificate, so its file
server cannot encrypt): it asks the worker to push the file to the manager's own file server,
which is behind TLS, and waits for it to arrive.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import field

import xxhash

from vinemake.common.paths import remove_path
from vinemake.common.records import dataclass
from vinemake.common.task import TaskResult
from vinemake.manager.transfers import MANAGER, TransferLog, install, install_bytes
from vinemake.wire.fileserver import fetch
from vinemake.wire.protocol import ProtocolError

__all__ = ["Install", "Origin", "Inline", "Delivery"]


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


@dataclass(frozen=True)
class Inline:
    """A result whose small outputs came inside it: their bytes, and what else it needs."""

    origin: Origin
    result: TaskResult
    data: tuple  # (key, bytes) of each output sent along
    wanted: list  # [(TaskFile, (key, size, hash, cache path))]: outputs to put in place
    failed: list  # [Install]: a failed task's files kept for its failed_dir


class Delivery:
    """Installs files, then hands the (possibly downgraded) result to `report`.

    `drop(worker_id, keys)` asks the worker to forget files it kept only for delivery.
    """

    def __init__(self, workdir: str, secret: bytes | None, log: TransferLog,
                 report: Callable[[list[TaskResult]], None],
                 drop: Callable[[str, list[str]], None], threads: int = 8, limit: int = 3,
                 request_push: Callable[[str, str], None] | None = None,
                 fetch_file: Callable = fetch, clock: Callable[[], float] = time.time):
        # request_push(worker id, key): ask that worker to upload key (set when TLS is on).
        self.request_push = request_push
        # fetch_file(host, port, key, dest, secret, ssl, hash) -> (size, hash): the wire's
        # fetch; clock: the transfer log's times.
        self.fetch_file = fetch_file
        self.clock = clock
        self._awaited: dict[str, _Awaited] = {}
        self.limit = limit  # transfers at once from any one worker, as for peers
        self._sources: dict[str, threading.BoundedSemaphore] = {}
        self._sources_lock = threading.Lock()
        self.workdir = workdir
        self.secret = secret
        self.log = log
        self.report = report
        self.drop = drop
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="delivery")
        self._installer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="installer")

    def install_inline(self, worker_id: str, inline, wanted: list) -> list:
        """Put in place, now, the outputs whose bytes came inside a task's outcome.

        `inline` is [(key, bytes)], `wanted` [(TaskFile, (key, size, hash, cache path))];
        returns the part of `wanted` still to fetch. ProtocolError if bytes do not match.
        """
        data = dict(inline)
        rest = []
        now = self.clock()
        for f, entry in wanted:
            key, size, digest, _path = entry
            if key not in data:
                rest.append((f, entry))
                continue
            if len(data[key]) != size or xxhash.xxh3_128_hexdigest(data[key]) != digest:
                raise ProtocolError(f"corrupt transfer of {key}: inline bytes do not match "
                                    "the recorded hash")
            install_bytes(data[key], f.path)
            self.log.record(worker_id, MANAGER, key, size, now, now)
        return rest

    def deliver_inline(self, batch: list[Inline]) -> None:
        """Install these results' inline outputs on the installer thread, then report them
        (those with more to fetch go on to the pool)."""
        self._installer.submit(self._install_batch, batch)

    def _install_batch(self, batch: list[Inline]) -> None:
        results, more = [], []
        for item in batch:
            try:
                rest = self.install_inline(item.origin.id, item.data, item.wanted)
            except (OSError, ProtocolError) as e:
                results.append(dataclasses.replace(
                    item.result, status="error", reason=f"cannot put output in place: {e}"))
                continue
            installs = [Install(f.path, key, digest, path)
                        for f, (key, _s, digest, path) in rest] + item.failed
            if installs:
                more.append((item, installs))
            else:
                results.append(item.result)
        if results:
            self.report(results)
        for item, installs in more:  # rare: a small output beside a large one, a failure
            if item.origin.same_host:
                self._run(item.origin, item.result, installs, self._link)
            else:  # a fetch must not hold up the next turn's installs
                self._pool.submit(self._run, item.origin, item.result, installs, self._fetch)

    def deliver(self, origin: Origin, result: TaskResult, installs: list[Install]) -> None:
        if origin.same_host:
            self._run(origin, result, installs, self._link)
        else:
            self._pool.submit(self._run, origin, result, installs, self._fetch)

    def close(self) -> None:
        self._installer.shutdown(wait=True, cancel_futures=True)  # it may add to the pool
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
            if self.request_push is not None:
                self._await_push(origin, item)
            else:
                self._fetch_now(origin, item)

    # ---------------------------------------------------------------- pushes (TLS)

    def _await_push(self, origin: Origin, item: Install) -> None:
        tmp = os.path.join(self.workdir, f".push-{item.key}-{threading.get_ident()}")
        waiting = _Awaited(origin.id, tmp, item.hash)
        with self._sources_lock:
            self._awaited[item.key] = waiting
        start = self.clock()
        assert self.request_push is not None
        self.request_push(origin.id, item.key)
        waiting.done.wait(PUSH_TIMEOUT_S)
        with self._sources_lock:
            self._awaited.pop(item.key, None)
        error = waiting.error if waiting.done.is_set() else "timed out"
        self.log.record(origin.id, MANAGER, item.key, waiting.size, start, self.clock(),
                        error is None)
        if error is not None:
            _remove(tmp)
            raise ProtocolError(f"{item.key} was not pushed: {error}")
        install(tmp, item.target, move=True)

    def accept(self, key: str) -> tuple[str, str] | None:
        """For the file server: where an awaited upload goes, and its expected hash."""
        with self._sources_lock:
            waiting = self._awaited.get(key)
        return None if waiting is None else (waiting.tmp, waiting.hash)

    def stored(self, key: str, size: int, error: str | None) -> None:
        with self._sources_lock:
            waiting = self._awaited.get(key)
        if waiting is not None:
            waiting.size, waiting.error = size, error
            waiting.done.set()

    def worker_lost(self, worker_id: str) -> None:
        """Stop waiting for uploads from a worker that is gone."""
        with self._sources_lock:
            gone = [w for w in self._awaited.values() if w.worker == worker_id]
        for waiting in gone:
            waiting.error = "the worker was lost"
            waiting.done.set()

    def _fetch_now(self, origin: Origin, item: Install) -> None:
        tmp = os.path.join(self.workdir, f".recv-{item.key}-{threading.get_ident()}")
        start = self.clock()
        try:
            size, _ = self.fetch_file(origin.host, origin.file_port, item.key, tmp, self.secret,
                                      None, item.hash)
        except BaseException:
            _remove(tmp)
            self.log.record(origin.id, MANAGER, item.key, 0, start, self.clock(), False)
            raise
        self.log.record(origin.id, MANAGER, item.key, size, start, self.clock())
        install(tmp, item.target, move=True)


PUSH_TIMEOUT_S = 3600.0  # an upload that never comes (the worker's loss ends the wait sooner)


@dataclass
class _Awaited:
    """An upload the manager asked for and waits on."""

    worker: str
    tmp: str
    hash: str
    size: int = 0
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


def _remove(tmp: str) -> None:
    for leftover in (tmp, tmp + ".tar"):
        remove_path(leftover)
