"""The manager: accepts workers, places tasks on them, orders transfers, reports results.

One thread runs a selector loop over the listening socket and every worker connection; the
engine's thread only queues work (submit) and collects results (wait). Handshakes run in a
short-lived thread each, so a client that connects and says nothing cannot stall the loop.

    submit(task) → queue → place (placement.place) → Run(task, fetch list) to a worker
    worker → Transferred (logged, source freed) … Done(outcomes) → outputs installed at their
    paths (linked from the worker's cache on this host, else fetched) → TaskResult to wait()

This module is the loop that ties the manager's parts together; each concern has its own:

    mailbox     what crosses threads: tasks in, results out, the wake-up
    connections reading and writing the worker sockets, flushed once per turn
    joining     the handshake of a newcomer, off the loop
    workers     the record of one connected worker: its resources, tasks, cache
    replicas    who holds which file, sizes and hashes, copies on their way
    scheduler   the queue and the pass that places and sends tasks, making room in caches
    fetches     which sources each input a worker lacks comes from
    recovery    tasks and intermediates lost with a worker: retries and silent re-runs
    delivery    putting a finished task's outputs at their paths on this host
    placement   pure decisions: which worker, what to drop (transfers: which source)

Events: what happens here that the run's record (vinemake.core.events) keeps is emitted to
`events` (anything with `emit(kind, **fields)` and `emit_event(event)`; thread-safe): workers
joining and leaving, commands starting on a worker (the worker's Started message, with the
inputs the worker had in its cache already), transfers ordered and ended.

Lost workers: a worker whose connection ends has its running tasks re-queued (up to
`max_retries` times, then status "lost"), and every file that only it held is forgotten. When
a queued task needs an intermediate that existed only there (kept on workers, no path on this
host), the manager re-runs the task that made it, silently, and the consumer waits for it. A
lost file no known task makes fails its consumers (status "error", naming the file) and is
logged.
"""

from __future__ import annotations

import collections
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Mapping

from vinemake.backends import Demand, ProviderOptions, WorkerProvider
from vinemake.common.amounts import excess
from vinemake.common.errors import InfrastructureError
from vinemake.common.names import flat
from vinemake.common.paths import remove_path
from vinemake.common.spec import Resources
from vinemake.common.task import COMMAND_FAILURES, Task, TaskResult
from vinemake.manager import opening
from vinemake.manager.config import PLACEMENTS, ManagerConfig
from vinemake.manager.connections import Connections
from vinemake.manager.delivery import Delivery, Inline, Install, Origin
from vinemake.manager.fetches import FetchPlanner
from vinemake.manager.joining import Newcomer, Refusals, handshake, largest, unique_name
from vinemake.manager.mailbox import SUBMIT_LATENCY_S, Mailbox
from vinemake.manager.recovery import Recovery
from vinemake.manager.replicas import Replicas
from vinemake.manager.scheduler import Scheduler
from vinemake.manager.transfers import MANAGER, TransferLog
from vinemake.manager.workers import ConnectedWorker
from vinemake.wire.fileserver import FileServer
from vinemake.wire.gate import Gate
from vinemake.wire.protocol import (
    ENVIRONMENT,
    MINI,
    PUSH_FAILED,
    URL,
    Cached,
    Done,
    Drop,
    Heartbeat,
    Kill,
    LibraryStarted,
    ProtocolError,
    Push,
    Shutdown,
    Started,
    Transferred,
    encode,
    host_id,
    outcome_from_wire,
    welcome_for,
)

__all__ = ["Manager"]

log = logging.getLogger("vinemake.manager")
# How long a closing manager waits to hear how the tasks it cancelled on this host ended.
SETTLE_S = 2.0


def _gate(config: ManagerConfig) -> Gate:
    """The bounds on peers that have not authenticated yet (one gate per listening port)."""
    return Gate(config.handshake_timeout_s, config.max_handshakes,
                config.max_handshakes_per_host)


def _log_refusal(reason: str) -> None:
    log.warning("%s", reason)


def _lost_for_good(keys: set[str]) -> None:
    """Files lost with their workers that nothing can make again: their consumers fail."""
    if keys:
        log.warning("lost for good with their workers: %s", ", ".join(sorted(keys)))


class Manager:
    """Implements `vinemake.core.executor.Executor` over TCP workers."""

    @classmethod
    def start(cls, config: ManagerConfig, provider: WorkerProvider | None = None,
              provider_options: ProviderOptions | None = None, events=None) -> Manager:
        """Listen, ask `provider` (if any) to start workers that connect here, and serve
        them (manager/opening.py: the workers start while the manager does)."""
        return opening.start(config, provider, provider_options, events)

    def __init__(self, config: ManagerConfig, provider: WorkerProvider | None = None,
                 events=None, opened: opening.Opening | None = None):
        if config.placement not in PLACEMENTS:
            raise InfrastructureError(f"unknown placement {config.placement!r} "
                                      f"(choose from {', '.join(PLACEMENTS)})")
        self.config = config
        self.provider = provider
        self.events = events if events is not None else _NoEvents()
        self._started: set[int] = set()  # task ids whose start was emitted, until they end
        self._cached: dict[int, list[str]] = {}  # task id -> its inputs its worker held, sent
        self._caches_seen = -1  # the replicas' epoch when cache sizes were last recorded
        self._cache_bytes: dict[str, int] = {}  # worker id -> the size last recorded
        opened = opened if opened is not None else opening.open_manager(config)
        self.secret, self.ssl_context = opened.secret, opened.ssl_context
        self._listener, self.host, self.port = opened.listener, config.host, opened.port
        os.makedirs(config.workdir, exist_ok=True)
        self.transfer_log = TransferLog(config.transfer_log, self._transfer_event)
        self.host_id = host_id()
        self.mailbox = Mailbox()  # all that crosses threads

        # The loop thread's own state: nothing else touches it (others post to the mailbox).
        self.workers: dict[str, ConnectedWorker] = {}
        self.replicas = Replicas()
        self.delivering: dict[int, list[str]] = {}  # task id -> keys fetched for delivery
        self._inline: list[Inline] = []  # results with outputs inside, read this turn
        self.forgotten = 0  # dead intermediates dropped from workers (engine's forget), ever
        self.queue: collections.deque[Task] = collections.deque()
        self.recovery = Recovery(self.replicas, self.queue, config.max_retries, _lost_for_good)
        self.transfers_in_flight = 0  # for the status line, read from other threads
        self.workers_joined = self.workers_left = 0  # ever, for providers (Demand)
        self._too_big: dict[int, float] = {}  # queued task id -> since when no worker fits it
        self._names = collections.Counter()
        self.sel = selectors.DefaultSelector()
        self.conns = Connections(self.sel, self.workers, self._handle, self._lose)
        self.delivery = Delivery(
            config.workdir, self.secret, self.transfer_log, self._delivered,
            self._drop_from_delivery, limit=config.transfer_limit,
            request_push=self._push_from_delivery if self.ssl_context is not None else None)
        self.gate = _gate(config)
        self.refusals = Refusals()
        self.files = FileServer(config.host, self._serve_path, self.secret, self.ssl_context,
                                config.transfer_limit, _log_refusal,
                                accept=self.delivery.accept, on_stored=self.delivery.stored,
                                gate=_gate(config))
        fetches = FetchPlanner(
            self.replicas, self.recovery, self.workers,
            [self.host, self.files.port, MANAGER, self.ssl_context is not None],
            config.transfer_limit, config.peer_transfers)
        self.scheduler = Scheduler(config, self.queue, self.workers, self.replicas,
                                   self.recovery, fetches, self.delivering, self.conns.send,
                                   self.mailbox.report, self._drop,
                                   fetching=self._sent)

        self.sel.register(self._listener, selectors.EVENT_READ, "listen")
        self.sel.register(self.mailbox.wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._loop, name="manager", daemon=True)
        self.mailbox.loop = self._thread
        self._thread.start()

    def _drop_from_delivery(self, wid: str, keys: list[str]) -> None:
        """Delivery's threads: a worker may forget files kept only for delivery (loop's job)."""
        self.mailbox.post(lambda: self._drop(wid, keys))

    def _push_from_delivery(self, wid: str, key: str) -> None:
        """Delivery's threads, with TLS: ask a worker to upload `key` (loop's job)."""
        self.mailbox.post(lambda: self._ask_push(wid, key))

    @property
    def running_total(self) -> int:
        """Tasks sent to workers and not ended yet."""
        return self.scheduler.running_total

    @property
    def evicted(self) -> int:
        """Cache entries dropped to make room for a task, ever."""
        return self.scheduler.evicted

    # ------------------------------------------------------------ Executor (engine's thread)

    def submit(self, task: Task) -> None:
        # The loop is woken by wait() (the engine submits a batch, then waits), or by a full
        # inbox, or finds the inbox itself within a turn: one wake-up per batch, not per task.
        self.mailbox.submit(task)

    def wait(self, timeout: float | None = None) -> list[TaskResult]:
        return self.mailbox.wait(timeout)

    def cancel_all(self) -> None:
        """Forget queued tasks; kill running ones on their workers, without reporting them."""
        self.mailbox.post(self._cancel_all)

    def withdraw(self) -> None:
        """Drop the tasks not started yet (queued here or waiting on a worker); each is
        reported "withdrawn". Running ones go on."""
        self.mailbox.post(self._withdraw)

    def forget(self, keys) -> None:
        """The engine needs these files no more: drop them from every worker holding them."""
        # Gathered until the loop's next turn: one pass over the queue for all of them.
        if self.mailbox.forget(keys):
            self.mailbox.post(self._forget_dead)

    def largest_worker(self) -> Resources | None:
        """What the provider's workers will offer, if it knows before they join (-T local);
        else None: workers of any size may join later (a rule too big for all that have
        joined waits `too_big_wait_s`, then fails: see _fail_too_big)."""
        promised = getattr(self.provider, "promised", None)
        return promised() if promised is not None else None

    def content_hashes(self) -> Mapping[str, str]:
        """Content hashes of the files workers made or fetched (read once closed)."""
        return self.replicas.content_hashes()

    def close(self) -> None:
        if not self.mailbox.close():
            return
        self._thread.join(timeout=10)
        if self.provider is not None:
            self.provider.close()
        self.delivery.close()
        self.files.close()
        self.gate.close()
        for line in self.refusals.flush():
            log.warning("%s", line)
        self.transfer_log.close()

    # ------------------------------------------------------------ the loop

    def _loop(self) -> None:
        next_scale = next_beat = 0.0
        mailbox = self.mailbox
        timeout = SUBMIT_LATENCY_S
        try:
            while not mailbox.closed:
                for key, mask in self.sel.select(timeout=timeout):
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    elif mask & selectors.EVENT_WRITE:
                        self.conns.flush(key.data)
                    if mask & selectors.EVENT_READ and isinstance(key.data, ConnectedWorker):
                        self.conns.read(key.data)
                if self._inline:  # one job for all the inline outputs this turn read
                    self.delivery.deliver_inline(self._inline)
                    self._inline = []
                if mailbox.inbox:  # submitted without a wake-up (unlocked peek, then locked)
                    self._drain_wake()
                self.scheduler.schedule()
                if self.replicas.epoch != self._caches_seen:
                    self._record_caches()
                self.conns.flush_all()
                self.transfers_in_flight = sum(self.replicas.inflight.values())
                timeout = mailbox.publish(bool(self.queue))
                now = time.monotonic()
                if self.config.heartbeat_s and now >= next_beat:
                    next_beat = now + self.config.heartbeat_s
                    self._heartbeat(now)
                if now >= next_scale:
                    next_scale = now + 1.0
                    if self.provider is not None:
                        self._scale()
                    if not getattr(self.provider, "sizes_workers", False):
                        self._fail_too_big(now)
        except Exception as e:  # a bug: say so to the engine instead of leaving it waiting
            log.exception("manager loop crashed")
            mailbox.crash(f"{type(e).__name__}: {e}")
        finally:
            self._settle_cancelled()
            # Workers this run started leave with it, quietly; one started by hand stays,
            # to serve the next manager (it says it is looking for one).
            bye = encode(Shutdown("the workflow is done")) if getattr(
                self.provider, "owns_workers", True) and self.provider is not None else b""
            for w in list(self.workers.values()):
                if bye:
                    try:
                        w.sock.send(bye)
                    except OSError:
                        pass
                w.sock.close()
            self._listener.close()

    def _settle_cancelled(self) -> None:
        """Before leaving, hear how the tasks cancelled on this host's workers ended (a
        worker answers every cancel): one that ended anyway has its outputs removed
        (_unplace). Bounded: a worker that does not answer is not waited for."""
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline and any(
                w.same_host and tid in self.recovery.cancelled
                for w in self.workers.values() for tid in w.running):
            for key, mask in self.sel.select(timeout=0.05):
                if mask & selectors.EVENT_READ and isinstance(key.data, ConnectedWorker):
                    self.conns.read(key.data)

    def _heartbeat(self, now: float) -> None:
        """Tell every worker we are here; lose the ones silent too long (stopped, hung)."""
        for w in list(self.workers.values()):
            if self.config.silence_s and now - w.heard > self.config.silence_s:
                self._lose(w, f"silent for {now - w.heard:.0f} s (no heartbeat; stopped or "
                              "hung?)")
            else:
                self.conns.send(w, Heartbeat())
        self.conns.flush_all()

    def _fail_too_big(self, now: float) -> None:
        """Fail each queued task bigger than every connected worker once it has waited
        too_big_wait_s for a bigger one (without workers, nothing to compare: all wait)."""
        big = largest(w.total for w in self.workers.values())
        if big is None or not self.queue:
            self._too_big.clear()
            return
        # One check per shape, not per task: the engine's tasks share a Resources a category
        # (by identity: hashing a Resources costs more than the rest of a task's turn here).
        shapes = {id(task.resources): task.resources for task in self.queue}
        problems = {i: excess(r, big) for i, r in shapes.items()}
        if not any(problems.values()):  # the common case: everything queued fits
            self._too_big.clear()
            return
        failed = []
        for task in self.queue:
            problem = problems[id(task.resources)]
            if problem is None or task.id in self.recovery.silent:
                self._too_big.pop(task.id, None)
                continue
            since = self._too_big.setdefault(task.id, now)
            if now - since >= self.config.too_big_wait_s:
                failed.append(TaskResult(task.id, "error", reason=(
                    f"{problem}; waited {self.config.too_big_wait_s:g} s for a bigger worker "
                    "to join")))
        if failed:
            gone = {r.task_id for r in failed}
            kept = [t for t in self.queue if t.id not in gone]
            self.queue.clear()
            self.queue.extend(kept)
            for tid in gone:
                del self._too_big[tid]
            self.mailbox.report(failed)

    def _drain_wake(self) -> None:
        tasks, events = self.mailbox.drain()
        self.replicas.note_inputs(tasks)
        self.queue.extend(tasks)
        for fn in events:
            fn()

    def _scale(self) -> None:
        idle = sum(1 for w in self.workers.values() if not w.running)
        waiting = list(self.queue)[:1000]
        batch_options = tuple(t.batch_options for t in waiting)
        try:
            self.provider.scale(Demand(
                waiting=tuple(t.resources for t in waiting),
                connected_workers=len(self.workers),
                idle_workers=idle, workers_joined=self.workers_joined,
                workers_left=self.workers_left,
                waiting_batch_options=batch_options if any(batch_options) else ()))
        except InfrastructureError as e:
            # Workers can never start (e.g. the batch system refuses the request for good):
            # waiting would be forever, so the engine hears it from wait().
            self.mailbox.fail(e)
        except Exception as e:  # a provider's hiccup must not stop running work
            log.warning("worker provider failed to scale: %s", e)

    def _cancel_all(self) -> None:
        self.queue.clear()
        for w in self.workers.values():
            for tid in w.running:
                self.recovery.cancel(tid)
            if w.running:
                self.conns.send(w, Kill(list(w.running)))
        self.conns.flush_all()

    def _withdraw(self) -> None:
        gone = [t.id for t in self.queue if not t.after]
        # Submitted ahead (here or held on a worker): as if never submitted, as today.
        back = [t.id for t in self.queue if t.after]
        self.queue.clear()
        for w in self.workers.values():
            # Sent ahead: the worker forgets them, or kills one that started meanwhile; either
            # way its outcome is dropped, as for cancel_all. Calls sent ahead wait there for a
            # slot of their library: those not known to have begun go the same way.
            ahead = [t.id for t in w.waiting]
            ahead += [t.id for t in w.running.values()
                      if t.library is not None and t.id not in self._started]
            held = list(w.held)
            for tid in (*ahead, *held):
                self.recovery.cancel(tid)
            if ahead or held:
                self.conns.send(w, Kill(ahead + held))
            gone += ahead
            back += held
        self.conns.flush_all()
        self.mailbox.report([TaskResult(task_id=tid, status="withdrawn",
                                        reason="not started: an earlier rule failed")
                             for tid in gone] +
                            [TaskResult(task_id=tid, status="held_back",
                                        reason="not started: an earlier rule failed")
                             for tid in back])

    # ------------------------------------------------------------ joining

    def _accept(self) -> None:
        while True:
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("accept failed: %s", e)
                return
            admitted = self.gate.admit(sock, addr[0])
            if admitted is None:
                log.debug("too many handshakes waiting: closed a connection from %s", addr[0])
                sock.close()
                continue
            threading.Thread(target=self._handshake, args=(sock, addr[0], admitted),
                             name="handshake", daemon=True).start()

    def _handshake(self, sock: socket.socket, addr: str, admitted) -> None:
        """Authenticate a newcomer off the loop; the loop then adopts it."""
        newcomer = handshake(sock, addr, self.secret, self.ssl_context, admitted,
                             self.refusals, lambda: self.mailbox.closed)
        if newcomer is not None:
            self.mailbox.post(lambda: self._adopt(newcomer))

    def _adopt(self, n: Newcomer) -> None:
        wid = unique_name(n.hello.name or n.addr, self.workers, self._names)
        w = ConnectedWorker.joined(wid, n.sock, n.addr, n.file_port,
                                   n.hello.host_id == self.host_id, n.resources,
                                   self.config.max_tasks)
        try:
            n.sock.sendall(encode(welcome_for(n.hello, self.secret, worker_id=wid,
                                              same_host=w.same_host,
                                              transfer_limit=self.config.transfer_limit,
                                              file_port=self.files.port,
                                              max_tasks=self.config.max_tasks or 0,
                                              heartbeat_s=self.config.heartbeat_s,
                                              silence_s=self.config.silence_s)))
        except OSError as e:
            log.warning("worker %s left during its welcome: %s", wid, e)
            n.sock.close()
            return
        self.workers[wid] = w
        w.sizes = self.replicas.sizes
        w.heard = time.monotonic()
        self.conns.add(w)
        self.workers_joined += 1
        r = n.resources
        log.info("worker %s joined from %s (%s): %g cores, %s MB memory, %s MB disk", wid,
                 n.addr, "same host" if w.same_host else "remote", r.cores or 0,
                 r.memory_mb or 0, r.disk_mb or 0)
        self.events.emit("worker_join", worker=wid, host=n.addr, cores=r.cores,
                         memory_mb=r.memory_mb, disk_mb=r.disk_mb)

    # ------------------------------------------------------------ messages from workers

    def _handle(self, w: ConnectedWorker, msg) -> None:
        if isinstance(msg, Done):
            for d in msg.outcomes:
                self._finished(w, outcome_from_wire(d))
        elif isinstance(msg, Started):
            self._began(w, msg)
        elif isinstance(msg, Transferred):
            self._transferred(w, msg)
        elif isinstance(msg, LibraryStarted):
            self.events.emit("library_start", t=msg.end, library=msg.library, worker=w.id,
                             start=msg.start, end=msg.end)
        elif isinstance(msg, Heartbeat):
            pass  # its bytes renewed w.heard
        elif isinstance(msg, Cached):
            for key, size, digest in msg.entries:  # what outlives a worker: `@cache forever`
                self.replicas.sizes[key] = size
                self.replicas.add(w, key, digest, forever=True)
        else:
            raise ProtocolError(f"unexpected {msg.TYPE} from a worker")

    def _serve_path(self, key: str) -> str | None:
        return self.replicas.paths.get(key)

    # ------------------------------------------------------------ results

    def _began(self, w: ConnectedWorker, msg: Started) -> None:
        """Commands began on `w`: the start events (not for silent re-runs: the engine saw
        those tasks end already)."""
        for tid, t in msg.tasks:
            task = w.running.get(tid)
            cached = self._cached.pop(tid, None)
            # (not was_cancelled: that is asked once, by its end, which must still know)
            if task is None or tid in self.recovery.silent or tid in self.recovery.cancelled:
                continue
            self._started.add(tid)
            ev = {"t": t, "ev": "start", "rule": tid, "worker": w.id, "host": w.addr,
                  "attempt": task.attempt}
            if cached:
                ev["cached"] = cached
            self.events.emit_event(ev)  # (one a task: made whole here, not from keywords)

    def _record_caches(self) -> None:
        """A `cache` event for each worker whose cache size changed (once per loop pass, not
        per file: the report draws cache bytes over time from them)."""
        self._caches_seen = self.replicas.epoch
        for w in self.workers.values():
            if self._cache_bytes.get(w.id) != w.cache_bytes:
                self._cache_bytes[w.id] = w.cache_bytes
                self.events.emit("cache", worker=w.id, bytes=w.cache_bytes)

    def _file(self, key: str) -> str:
        """What the events call the file of `key`: its path here, else its key."""
        return self.replicas.paths.get(key) or key

    def _sent(self, w: ConnectedWorker, task: Task, fetches: list, cached: list) -> None:
        """`task` went to `w`: a `transfer_start` for each copy just ordered there (its
        `transfer` ends it); the inputs `w` held already go with the task's start event."""
        if cached:
            self._cached[task.id] = cached
        else:
            self._cached.pop(task.id, None)
        if not fetches:
            return
        now = time.time()
        declared = {f.key: f.size or None for f in task.inputs}  # 0: not known (a URL's)
        named = {f.key: f.url for f in task.inputs if f.url}  # a URL's key names no file
        for key, _, sources in fetches:
            label = sources[0][2]
            own = label in (MANAGER, URL)
            self.events.emit("transfer_start", t=now, file=named.get(key) or self._file(key),
                             key=key,
                             size=self.replicas.sizes.get(key, declared.get(key)),
                             source=label if own else "peer",
                             from_worker=None if own else label, to_worker=w.id, start=now)

    def _transfer_event(self, source: str, dest: str, key: str, size: int, start: float,
                        end: float, ok: bool) -> None:
        """Every transfer the log records, as an event (any thread: deliveries have theirs).

        `source`: the manager, a URL the worker fetched itself, a `@mini` rule that made the
        file on the worker, another worker (a peer), or, for an output coming back, the worker.
        """
        own = source in (MANAGER, URL, MINI)
        kind = source if own else "worker" if dest == MANAGER else "peer"
        self.events.emit("transfer", t=end, file=self._file(key), key=key,
                         size=size, source=kind, from_worker=None if own else source,
                         to_worker=None if dest == MANAGER else dest, start=start, end=end,
                         ok=ok)

    def _transferred(self, w: ConnectedWorker, t: Transferred) -> None:
        if t.source == PUSH_FAILED:
            self.delivery.stored(t.key, 0, t.reason or "the worker could not push it")
            return
        if t.source == MINI:  # made there (a `@mini` output, an environment): never to move
            self.replicas.sizes[t.key] = t.size
            self.replicas.add(w, t.key, t.hash)
            if not t.key.startswith(ENVIRONMENT):
                self.replicas.remake_s[t.key] = t.end - t.start
            return
        self.transfer_log.record(t.source, w.id, t.key, t.size, t.start, t.end, t.ok)
        if not t.ok:
            if t.source != URL:  # a URL's failure is its rule's, reported with it
                log.warning("transfer of %s from %s to %s failed: %s", t.key, t.source, w.id,
                            t.reason)
            return
        self.replicas.arrived(w, t.key, t.size, t.hash, t.end - t.start)

    @staticmethod
    def _unplace(task: Task, outputs) -> None:
        """`task` was cancelled (the engine told it never ran or does not count) and ended
        anyway, its cancel crossing its end: the outputs its worker on this host renamed to
        their paths go, or they would sit there unrecorded, made from what may not count."""
        paths = {(f.key, f.path) for f in task.outputs if f.path is not None}
        for key, _, _, path in outputs:
            if (key, path) in paths:
                remove_path(path)

    def _finished(self, w: ConnectedWorker, outcome) -> None:
        r = outcome.result
        task = w.running.pop(r.task_id, None)
        if task is None:
            return
        self._started.discard(task.id)
        self._cached.pop(task.id, None)
        self.scheduler.release(w, task)
        if w.held_for:  # as on the worker: what was held for it starts, or goes back
            w.producer_ended(task.id, r.ok)
        if r.ok or r.status in COMMAND_FAILURES:  # its command ran: how long it took
            self.scheduler.ran(task, r.measured.wall_time_s)
        if self.recovery.was_cancelled(task.id):
            if r.ok and w.same_host:
                self._unplace(task, outcome.outputs)
            return
        if outcome.unfetched and self.recovery.unreachable(task, outcome.unfetched,
                                                           self.workers):
            return  # queued again: an input's source was unreachable, not the rule's fault
        if task.stops_run and r.status in COMMAND_FAILURES:
            self._withdraw()  # before this turn's scheduling pass places another task
        placed = self.replicas.made(w, task, outcome.outputs)
        wanted = [] if len(placed) == len(task.outputs) else [
            (f, entry) for f in task.outputs if f.path is not None
            for entry in outcome.outputs if entry[0] == f.key and f.key not in placed]
        if task.id in self.recovery.silent:
            if outcome.failed:
                self.conns.send(w, Drop([key for _, key, _ in outcome.failed]))
            self.recovery.rerun_ended(task, r)
            return
        failed = [(os.path.join(task.failed_dir, flat(name)), key, path)
                  for name, key, path in outcome.failed] if task.failed_dir else []
        if outcome.failed and not failed:
            self.conns.send(w, Drop([key for _, key, _ in outcome.failed]))
        if not wanted and not failed:
            self.mailbox.report([r])
            return
        origin = Origin(w.id, w.addr, w.file_port, w.same_host)
        kept = [Install(target, key, "", path) for target, key, path in failed]
        # not dropped to make room until delivered
        self.delivering[task.id] = [key for _, (key, *_rest) in wanted] + [i.key for i in kept]
        if outcome.inline:  # installed off the loop, with the rest of this turn's (_loop)
            self._inline.append(Inline(origin, r, outcome.inline, wanted, kept))
            return
        installs = [Install(f.path, key, digest, path) for f, (key, _s, digest, path) in wanted]
        self.delivery.deliver(origin, r, installs + kept)

    def _ask_push(self, wid: str, key: str) -> None:
        w = self.workers.get(wid)
        if w is None:
            self.delivery.worker_lost(wid)
        else:
            self.conns.send(w, Push(key))

    def _drop(self, wid: str, keys: list[str]) -> None:
        w = self.workers.get(wid)
        if w is not None and keys:
            self.conns.send(w, Drop(keys))
            for key in keys:
                self.replicas.forget(w, key)

    def _delivered(self, results: list[TaskResult]) -> None:
        """Delivery is done with these tasks' files: they may be dropped to make room again."""
        ids = [r.task_id for r in results]
        self.mailbox.post(lambda: [self.delivering.pop(i, None) for i in ids])
        self.mailbox.report(results)

    def _forget_dead(self) -> None:
        self._forget_everywhere(self.mailbox.take_dead())

    def _forget_everywhere(self, keys: list[str]) -> None:
        """Drop dead files from every worker and from our accounting, so their disk is free.

        A file some queued or running task still reads, or one on its way or awaiting
        delivery, is kept: the engine's word is checked against what the manager knows.
        """
        keep = self.scheduler.needed()
        for key in keys:
            if key in keep:
                continue
            for wid in sorted(self.replicas.holders.pop(key, ())):
                self._drop(wid, [key])
                self.forgotten += 1
            # its producer stays known: a lost file further down a chain may need it re-made

    # ------------------------------------------------------------ losing a worker

    def _lose(self, w: ConnectedWorker, why: str) -> None:
        if self.workers.get(w.id) is not w:
            return  # already lost (a namesake may have joined since)
        del self.workers[w.id]
        self.workers_left += 1
        log.warning("worker %s left: %s", w.id, why)
        self.delivery.worker_lost(w.id)
        self.conns.close(w)
        self.scheduler.worker_lost(w)
        # Held for tasks that ran there, never started: back to the engine, which submits
        # them again once their inputs are made (by those tasks, queued again below).
        back = [TaskResult(task_id=tid, status="held_back", worker=w.id,
                           reason=f"not started: lost with worker {w.id}")
                for tid in w.held if w.running.pop(tid, None) is not None
                and not self.recovery.was_cancelled(tid)]
        started = [t for t in w.running.values() if t.id in self._started]
        for tid in w.running:
            self._cached.pop(tid, None)
        results = self.recovery.worker_lost(w, why) + back
        self._ended_with(w, started, {r.task_id for r in results}, why)
        self.events.emit("worker_leave", worker=w.id, reason=why)
        w.running.clear()
        self.mailbox.report(results)


    def _ended_with(self, w: ConnectedWorker, started: list[Task], reported: set[int],
                    why: str) -> None:
        """Tasks that began on a lost worker and run again elsewhere: their attempt there
        ended (the engine, which never hears of it, emits the end of the ones it is told)."""
        for task in started:
            self._started.discard(task.id)
            if task.id not in reported:
                self.events.emit("end", rule=task.id, status="lost", attempt=task.attempt,
                                 worker=w.id, host=w.addr, exit=None, signal=None,
                                 message=f"lost with worker {w.id}: {why}")


class _NoEvents:
    def emit(self, kind: str, /, **fields) -> None:
        pass

    def emit_event(self, ev: dict) -> None:
        pass
