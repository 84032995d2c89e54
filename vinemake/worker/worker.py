"""A worker: connects to a manager, runs the tasks it is sent, serves its cache to peers.

    connect (retrying with backoff) → handshake → read Run/Drop/Shutdown messages → each Run
    starts at once if it fits this worker's free resources, else waits its turn in `Slots` →
    a command is spawned by the reading thread (by a pool thread if inputs must be fetched
    first, or for a library call) and reaped by the monitor's thread, which starts the next
    waiting task and sends the outcome; outcomes that end together go back in one Done → on
    disconnect, reconnect; exit after --timeout seconds idle or unable to reach the manager,
    or at once on stop() (SIGTERM, SIGINT: see stopping.py).

The run directory (cache, sandboxes) is removed on exit; `forever` entries stay in --workdir.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from vinemake.common import batching
from vinemake.common.paths import remove_path
from vinemake.common.process import identity, still_running
from vinemake.common.records import dataclass
from vinemake.common.spec import Resources
from vinemake.common.task import COMMAND_FAILURES
from vinemake.wire import tls
from vinemake.wire.fileserver import Arrivals, FileServer, Growing, fetch, push
from vinemake.wire.protocol import (
    PUSH_FAILED,
    URL,
    Cached,
    Connection,
    Done,
    Drop,
    Heartbeat,
    Kill,
    LibraryStarted,
    ProtocolError,
    Push,
    Run,
    Runs,
    Shutdown,
    Started,
    Transferred,
    client_context,
    client_handshake,
    connect,
    host_id,
    new_hello,
    outcome_to_wire,
    read_secret,
    resources_to_wire,
    task_from_wire,
)
from vinemake.wire.urlfetch import UrlFetchError, fetch_url
from vinemake.worker.cachedir import CacheDir
from vinemake.worker.holding import BACK, WAIT, Holds
from vinemake.worker.libraries import LibraryPool
from vinemake.worker.memlimit import MemoryLimits
from vinemake.worker.monitor import Monitor
from vinemake.worker.runner import Fetch, FileSource, Runner, Slots

if TYPE_CHECKING:
    import ssl

# How long a peer asking for a file this worker neither holds nor receives yet waits for it:
# the manager names a worker as a source as soon as it has sent it the task that fetches the
# file, so the fetch usually starts a moment after the peer asks.
ARRIVAL_WAIT_S = 5.0
# The longest a worker that served a manager waits between attempts to reach the next one.
REJOIN_S = 0.5
# How long a task killed by SIGTERM waits to learn whether the worker itself is stopping.
STOPPING_GRACE_S = 1.0
# While more than two tasks per core wait here (the manager sends tasks ahead), outcomes are
# held back and leave together (common/batching.py). Two per core left waiting when they
# leave keep the slots busy while the manager answers with more.
HOLD_S = batching.SEND_WAIT_S
HOLD_MAX = batching.SEND_MAX

__all__ = ["WorkerOptions", "Worker"]

log = logging.getLogger("vinemake.worker")


@dataclass(frozen=True)
class WorkerOptions:
    host: str
    port: int
    resources: Resources
    workdir: str
    timeout_s: float = 900.0
    password_file: str | None = None
    ssl: bool = False
    name: str = ""
    as_remote: bool = False
    idle_exit: bool = True
    stop_grace_s: float = STOPPING_GRACE_S
    memory_limits: str = "auto"  # how a task's declared memory is enforced (memlimit.py)


class Worker:
    def __init__(self, opts: WorkerOptions):
        self.opts = opts
        self.name = opts.name or f"{socket.gethostname()}:{os.getpid()}"
        self.secret = read_secret(opts.password_file)
        self.ssl_context: ssl.SSLContext | None = client_context() if opts.ssl else None
        self.run_dir = os.path.join(opts.workdir, f"run-{identity()}")
        _remove_stale_runs(opts.workdir)
        self.cache = CacheDir(self.run_dir, os.path.join(opts.workdir, "forever"))
        self.libraries = LibraryPool(os.path.join(self.run_dir, "libraries"),
                                     on_ready=self._library_ready)
        self.pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="task")
        self.arrivals = Arrivals()  # files being received, forwarded to peers as they land
        self.files = FileServer("0.0.0.0", self._resolve, self.secret, None,
                                on_error=lambda r: log.warning("%s", r))
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._starts: queue.SimpleQueue = queue.SimpleQueue()  # [task id, time], to say
        self._sending = threading.Lock()
        self._running = 0  # tasks accepted and not yet reported (waiting or running)
        self._running_lock = threading.Lock()
        self.slots = Slots(opts.resources)
        self.holds = Holds()  # tasks sent ahead of the tasks making their inputs
        self._hold_above = 2 * max(1, int(opts.resources.cores or 1))
        self._held_since: float | None = None
        self._starts_since: float | None = None  # the oldest start left for the tick to send
        memory = MemoryLimits(opts.memory_limits)
        log.info("%s", memory.describe())
        self.monitor = Monitor(tick=self._tick, defer=self._may_defer, memory=memory)
        self._last_activity = time.monotonic()
        self._stop = threading.Event()
        self._conn: Connection | None = None  # the session's, for sending
        self._line: Connection | None = None  # the manager connection open now, for stop()
        self.runner: Runner | None = None
        self.exit_status = 0
        self._served = False  # reached a manager once: giving up later is no failure
        # A task whose failure ends the run failed in this session: start nothing more.
        self._run_over = False
        # (heartbeat_s, silence_s) the manager asked for; when its last message came
        self._beat = (0.0, 0.0)
        self._heard = time.monotonic()
        self._beating = threading.Event()  # wakes the heartbeat thread: a session began, stop
        self._manager_files = 0  # the manager's file server port, for uploads it asks for

    def _may_defer(self) -> bool:
        """Finishing a task may wait a moment (monitor.py) while, as for holding outcomes,
        enough tasks queue here that nothing needs its result to go on."""
        return self.slots.waiting() > self._hold_above

    # ------------------------------------------------------------ life cycle

    def run(self) -> int:
        """Serve managers until idle for timeout_s or stopped; the process exit status."""
        threading.Thread(target=self._idle_watch, name="idle", daemon=True).start()
        threading.Thread(target=self._heartbeats, name="heartbeat", daemon=True).start()
        try:
            while not self._stop.is_set():
                conn = self._connect_with_backoff()
                if conn is None:
                    return self.exit_status
                self._session(conn)
            return self.exit_status
        finally:
            self.close()

    def stop(self) -> None:
        """Make run() return soon, through close(). Any thread, never a signal handler:
        Event.set takes a lock the interrupted thread may hold (see stopping.py)."""
        self._stop.set()
        self._beating.set()
        line = self._line  # read after the set: _open_line checks _stop after it writes
        if line is not None:
            _hang_up(line)

    def close(self) -> None:
        self._stop.set()
        self._beating.set()
        self.monitor.kill_all("the worker is exiting")
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.libraries.close()
        self.monitor.close()
        # A task the monitor's thread was starting as the first kill went out (a slot freed
        # by a killed command) is running now: the monitor has stopped, kill it too.
        self.monitor.kill_all("the worker is exiting")
        self.files.close()
        remove_path(self.run_dir)

    def _connect_with_backoff(self) -> Connection | None:
        """A connection to the manager, handshake done; None when stopped or giving up.

        Each new reason it cannot connect is printed once ("..., retrying"); a reason no retry
        can cure (refused, TLS on one side only) ends the worker with status 1, and so does
        giving up after --timeout without ever having reached the manager."""
        delay = 0.1
        deadline = time.monotonic() + self.opts.timeout_s
        where = f"{self.opts.host}:{self.opts.port}"
        said = ""
        while not self._stop.is_set():
            try:
                conn = self._open_line(connect(self.opts.host, self.opts.port,
                                               self.ssl_context))
                if conn is None:
                    return None
                welcome = client_handshake(conn, new_hello(
                    "worker", name=self.name, resources=resources_to_wire(self.opts.resources),
                    host_id=host_id() + (f"/remote-{os.getpid()}" if self.opts.as_remote
                                         else ""),
                    file_port=self.files.port), self.secret)
                conn.send(Cached([[e.key, e.size, e.hash] for e in self.cache.entries()]))
            except (ProtocolError, tls.SSLError) as e:
                self._close_line()
                if self._stop.is_set():
                    return None  # stop() cut the handshake short
                if not isinstance(e, ProtocolError) and not _tls_mismatch(e):
                    said = self._retrying(where, _why(e), said)
                else:
                    # Wrong secret or version, TLS on one side only: retrying cannot help.
                    log.error("manager %s: %s", where, e if isinstance(e, ProtocolError) else
                              f"TLS handshake failed ({e.reason or e}): the manager does "
                              "not speak TLS? remove --ssl")
                    self.exit_status = 1
                    return None
            except (OSError, EOFError) as e:  # EOFError: it hung up mid-handshake (busy?)
                self._close_line()
                said = self._retrying(where, _why(e), said)
            else:
                conn.sock.settimeout(None)
                self.name = welcome.worker_id or self.name
                self._manager_files = welcome.file_port
                self.slots.max_tasks = welcome.max_tasks
                self.files.set_limit(welcome.transfer_limit)
                self.runner = Runner(self.cache, self.monitor, self._fetch, self.run_dir,
                                     self.name, welcome.same_host, self.libraries,
                                     self._on_transfer, self._on_start,
                                     self.runner.spares() if self.runner is not None else ())
                self._beat = (welcome.heartbeat_s, welcome.silence_s)
                self._run_over = False
                self._last_activity = self._heard = time.monotonic()
                self._served = True
                self._beating.set()
                log.info("connected to manager %s as %s", where, self.name)
                return conn
            if time.monotonic() + delay > deadline:
                if self._served:
                    log.info("manager %s unreachable for %.0f s: exiting", where,
                             self.opts.timeout_s)
                else:
                    log.error("gave up: could not reach manager %s in %.0f s", where,
                              self.opts.timeout_s)
                    self.exit_status = 1
                return None
            self._stop.wait(delay)
            # A worker that served a manager waits for the next one (a rerun, a restart) and
            # joins it within half a second; one still looking for its first backs off more.
            delay = min(delay * 2, REJOIN_S if self._served else 5.0)
        return None

    @staticmethod
    def _retrying(where: str, why: str, said: str) -> str:
        """Say why the manager cannot be reached, once per reason; the reason said."""
        if why != said:
            log.info("cannot reach manager %s: %s, retrying", where, why)
        return why

    def _session(self, conn: Connection) -> None:
        self._conn = conn
        try:
            while True:
                msg = conn.recv()
                self._heard = time.monotonic()
                if isinstance(msg, Heartbeat):
                    continue
                self._last_activity = self._heard
                if isinstance(msg, Run):
                    self._start_task(msg)
                elif isinstance(msg, Runs):
                    for run in msg.each():
                        self._start_task(run)
                elif isinstance(msg, Kill):
                    for tid in msg.task_ids:
                        self._kill(tid)
                elif isinstance(msg, Push):
                    self.pool.submit(self._push, msg.key)
                elif isinstance(msg, Drop):
                    for key in msg.keys:
                        self.cache.remove(key)
                elif isinstance(msg, Shutdown):
                    self._stop.set()
                    return
        except (EOFError, OSError) as e:
            log.info("manager connection ended: %s", e)
        except ProtocolError as e:  # after stop() hung up mid-frame, no news
            (log.info if self._stop.is_set() else log.error)("closing manager connection: %s", e)
        finally:
            self._conn = None
            if self.runner is not None:
                self.runner.close()  # its library calls stop, as its commands are killed below
            self._close_line()
            for box in (self._outbox, self._starts):  # held for this session: nobody's now
                while True:  # (see _ended)
                    try:
                        box.get_nowait()
                    except queue.Empty:
                        break
            # That manager re-queues whatever ran here and forgets what this worker held.
            for _ in (*self.slots.clear(), *self.holds.clear()):
                with self._running_lock:
                    self._running -= 1
            self.monitor.kill_all("the manager went away")
            for entry in self.cache.entries():
                if not entry.forever:
                    self.cache.remove(entry.key)

    def _open_line(self, conn: Connection) -> Connection | None:
        """Make `conn` the one stop() hangs up; None (and closed) if stop() came first."""
        self._line = conn
        if self._stop.is_set():
            self._close_line()
            return None
        return conn

    def _close_line(self) -> None:
        line, self._line = self._line, None
        if line is not None:
            line.close()

    def _heartbeats(self) -> None:
        """Tell the manager we are here; hang up on a manager silent too long (stopped, hung,
        cut off), so the session ends and the worker reconnects (or gives up)."""
        while True:
            # Before the first session nothing is due: woken when it begins (or by stop()).
            self._beating.wait(self._beat[0] or None)
            if self._stop.is_set():
                return
            self._beating.clear()
            every, silence = self._beat
            conn = self._conn
            if conn is None or not every:
                continue
            quiet = time.monotonic() - self._heard
            if silence and quiet > silence:
                log.warning("the manager has been silent for %.0f s: reconnecting", quiet)
                self._heard = time.monotonic()
                _hang_up(conn)
                continue
            try:
                conn.try_send(Heartbeat())
            except OSError:
                pass  # the session's reader hears of it

    def _idle_watch(self) -> None:
        """Leave when nothing happened for timeout_s and nothing runs."""
        # Checked when the time could be up at the earliest, not every second: an idle
        # worker should cost nothing.
        while not self._stop.wait(max(1.0, self.opts.timeout_s -
                                      (time.monotonic() - self._last_activity))):
            idle = time.monotonic() - self._last_activity
            if (self.opts.idle_exit and self._running == 0 and idle > self.opts.timeout_s
                    and self._conn is not None):
                log.info("idle for %.0f s: exiting", idle)
                self.stop()

    # ------------------------------------------------------------ tasks

    def _start_task(self, msg: Run) -> None:
        task = task_from_wire(msg.task)
        try:
            fetches = tuple(Fetch(key, digest, tuple(FileSource(h, int(p), label, bool(tls))
                                                     for h, p, label, tls in sources))
                            for key, digest, sources in msg.fetch) if msg.fetch else ()
        except (TypeError, ValueError) as e:
            raise ProtocolError(f"garbled fetch list: {e}") from None
        with self._running_lock:
            self._running += 1
        self.holds.began(task.id)
        if self._run_over:  # sent before the manager heard of the failure
            self._ended(task, self.runner._result(
                task, "withdrawn", reason="not started: an earlier rule failed"), freed=True)
            return
        if task.after:  # sent ahead of the tasks that make its inputs (holding.py)
            verdict = self.holds.hold(task, (self.runner, fetches))
            if verdict == WAIT:
                return
            if verdict == BACK:
                self._send_back([(task, (self.runner, fetches))], drain=True)
                return
        # A call runs inside its library's instance, which holds the resources: not queued.
        if task.library is not None:
            self.slots.call_started()
            self._begin(self.runner, task, fetches)
        elif self.slots.offer(task, (self.runner, fetches)):
            self._begin(self.runner, task, fetches)

    def _begin(self, runner: Runner, task, fetches) -> None:
        """Start a task: here if that cannot block, else on the pool; not once stopping."""
        if self._stop.is_set():
            return
        if fetches or task.library is not None or task.minis:
            self.pool.submit(self._run_task, runner, task, fetches)
        else:
            self._run_task(runner, task, fetches)

    def _run_task(self, runner: Runner, task, fetches) -> None:
        reported = []
        freed = []

        def exited() -> None:  # the command is gone: its slot goes to the next task now
            freed.append(True)
            if task.stops_run:
                watch = runner.watch_of(task.id)
                if watch is not None and (watch.code or watch.reason):
                    self._withdraw_waiting()  # the run ends: not one more task starts here
            self._free_slot(task)

        def done(outcome) -> None:
            reported.append(outcome)
            self._ended(task, outcome, freed=bool(freed), runner=runner)

        try:
            runner.start(task, fetches, done, exited)
        except Exception as e:  # a bug here must not leave the manager waiting forever
            log.exception("task %s crashed the runner", task.id)
            if not reported:
                self._ended(task, runner._result(task, "error", reason=f"worker error: {e}"),
                            freed=bool(freed), runner=runner)
        # Released from the queue as its session ended: that session's end killed what it
        # saw running and emptied the queue, but this one started after. It would run for
        # nobody (or write outputs for a manager that is gone): kill it too. (The session
        # drops _conn before killing, and this looks after the start is watched.)
        if self._session_over(runner):
            watch = runner.watch_of(task.id)
            if watch is not None:
                self.monitor.kill(watch, "the manager went away")

    def _session_over(self, runner: Runner) -> bool:
        """Did the session that `runner` serves end (a new one has its own runner)?"""
        return runner is not self.runner or self._conn is None

    def _free_slot(self, task) -> None:
        for waiting, (runner, fetches) in self.slots.release(task):
            self._begin(runner, waiting, fetches)

    def _ended(self, task, outcome, freed: bool = False, runner: Runner | None = None) -> None:
        """A task's outcome is known (any thread): start what waited for it, report it.

        Not if it ran for a session that has ended (`runner` is not the current one): that
        manager re-queued it, and a new one may have sent the same task id here again.
        """
        with self._running_lock:
            self._running -= 1
        self._last_activity = time.monotonic()
        if task.stops_run and outcome.result.status in COMMAND_FAILURES:
            self._withdraw_waiting()
        if not freed:
            self._free_slot(task)
        if runner is not None and self._session_over(runner):
            return
        r = outcome.result
        # Its outcome is queued before anything held for it starts or goes back: the manager
        # and the engine hear of a task before of what waited for it.
        released, back = self.holds.ended(task.id, r.ok)
        if r.status == "signaled" and r.exit_code == -signal.SIGTERM:
            # _stopped_with waits a moment: not on the monitor's thread, which reaps others.
            self.pool.submit(self._report_unless_stopping, outcome)
        else:
            self._outbox.put(outcome_to_wire(outcome))
        if back:
            self._send_back(back)
        for held, (held_runner, fetches) in released:
            if self.slots.offer(held, (held_runner, fetches)):
                self._begin(held_runner, held, fetches)
        # In a batch of tasks the monitor finishes together, the last one's tick sends all.
        if not self.monitor.finishing and not self._hold():
            self._drain_outbox()

    def _send_back(self, pairs: list, drain: bool = False,
                   reason: str = "not started: a task it waited for did not succeed here"
                   ) -> None:
        """Report held tasks that will not start here ("held_back": the engine submits each
        again once its inputs are made)."""
        for task, (runner, _) in pairs:
            with self._running_lock:
                self._running -= 1
            self._outbox.put(outcome_to_wire(runner._result(task, "held_back", reason=reason)))
        if drain:
            self._drain_outbox()

    def _withdraw_waiting(self) -> None:
        """A task whose failure ends the run failed: every task waiting here is reported
        withdrawn (never started), before its slot can start one of them, and so is every
        task the manager sent before it heard of the failure."""
        self._run_over = True
        for task, (runner, _) in self.slots.clear():
            with self._running_lock:
                self._running -= 1
            self._outbox.put(outcome_to_wire(runner._result(
                task, "withdrawn", reason="not started: an earlier rule failed")))
        self._send_back(self.holds.clear(), reason="not started: an earlier rule failed")

    def _hold(self) -> bool:
        """Should outcomes wait to leave together? Only while tasks queue here: the manager
        then needs no result to keep this worker busy, and each message it reads costs it
        about as much as the task's result itself. A chain, where every result releases the
        next task, has nothing queued and is never held."""
        if self._outbox.qsize() >= HOLD_MAX or self.slots.waiting() <= self._hold_above:
            return False
        now = time.monotonic()
        if self._held_since is None:
            self._held_since = now
        return now - self._held_since < HOLD_S

    def _on_start(self, task_id: int, t: float) -> None:
        """A command (or call) began: tell the manager, with held outcomes when they wait.
        On the monitor's thread, whose tick comes next, it may wait for an outcome to leave
        with (common/batching.py)."""
        self._starts.put([task_id, t])
        if self.monitor.on_its_thread():
            if self._starts_since is None:
                self._starts_since = time.monotonic()
        elif not self._hold():
            self._drain_outbox()

    def _tick(self) -> float | None:
        """On the monitor's thread: send held outcomes (and starts) once they are due."""
        if self._outbox.empty() and self._starts.empty():
            return None
        if self._hold():
            return HOLD_S
        since = self._starts_since
        if since is not None and self._outbox.empty():  # only starts, which may wait a little
            left = batching.START_WAIT_S - (time.monotonic() - since)
            if left > 0:
                return left
        self._drain_outbox()
        return None

    def _report_unless_stopping(self, outcome) -> None:
        if not self._stopped_with(outcome):
            self._outbox.put(outcome_to_wire(outcome))
            self._drain_outbox()

    def _kill(self, task_id: int) -> None:
        """The manager cancelled a task: kill it if it runs, forget it if it waits."""
        watch = self.runner.watch_of(task_id) if self.runner else None
        if watch is not None:
            self.monitor.kill(watch, "cancelled by the manager")
            return
        if self.runner is not None and self.runner.cancel_call(task_id):
            return  # a library call: withdrawn if it waited for a slot, else cancelled there
        pair, back = self.holds.cancel(task_id)
        if back:
            self._send_back(back)
        if pair is None:
            pair = self.slots.cancel(task_id)
        if pair is not None:
            task, (runner, _) = pair
            with self._running_lock:
                self._running -= 1
            self._outbox.put(outcome_to_wire(runner._result(
                task, "error", reason="cancelled by the manager before it started")))
            self._drain_outbox()

    def _stopped_with(self, outcome) -> bool:
        """True when a task died of SIGTERM because this worker itself is being stopped.

        A batch system stops a pilot job (scancel, a time limit) by signalling every process
        of the job at once, so the command often dies before this worker's own handler runs.
        Reporting that as the rule's failure would fail the workflow; saying nothing lets the
        manager see a lost worker and run the task elsewhere.
        """
        r = outcome.result
        if r.status != "signaled" or r.exit_code != -signal.SIGTERM:
            return False
        return self._stop.wait(self.opts.stop_grace_s)

    def _drain_outbox(self) -> None:
        """Send every outcome waiting, in one message; whoever finds the outbox free does it.

        The thread that finished a task sends directly (no hand-off to another thread on the
        hot path); outcomes that finish meanwhile ride along in the same Done message.
        """
        while self._sending.acquire(blocking=False):
            try:
                starts = _take(self._starts, 2000)  # first: a start precedes its own end
                batch = _take(self._outbox, 500)  # keeps a Done frame far below MAX_FRAME
                self._held_since = self._starts_since = None
                msgs = ([Started(starts)] if starts else []) + ([Done(batch)] if batch else [])
                if msgs:
                    self._send(*msgs)
            finally:
                self._sending.release()
            if self._outbox.empty() and self._starts.empty():
                return

    def _library_ready(self, name: str, started: float, ready: float) -> None:
        """A library instance started here: the manager records it (rare: sent at once)."""
        self._send(LibraryStarted(name, started, ready))

    def _send(self, *msgs) -> None:
        conn = self._conn
        if conn is None:
            return  # the manager is gone; it re-queues what this worker was running
        try:
            conn.send(*msgs)
        except OSError as e:
            log.info("cannot send to manager: %s", e)

    # ------------------------------------------------------------ files

    def _resolve(self, key: str) -> str | Growing | None:
        """What the file server sends for `key`: the cached file, or the file as it arrives."""
        deadline = time.monotonic() + ARRIVAL_WAIT_S
        while True:
            entry = self.cache.get(key)
            if entry is not None:
                return entry.path
            growing = self.arrivals.find(key)
            if growing is not None:
                return growing
            left = deadline - time.monotonic()
            if left <= 0 or self._stop.is_set():
                return None
            # woken by a new arrival; the short poll covers a finished one entering the cache
            self.arrivals.wait(min(left, 0.05))

    def _fetch(self, source: FileSource, key: str, dest: str, expected: str) -> tuple[int, str]:
        """Fetch one file, which peers may fetch from here while it arrives."""
        tls = self.ssl_context if source.tls else None
        growing = self.arrivals.start(key)
        try:
            if source.label == URL:  # a URL source, from its own server
                result = fetch_url(source.host, dest, growing, stop=self._stop)
                if expected and result[1] != expected:
                    raise UrlFetchError(f"{source.host}: the document changed during the run "
                                        f"(content hash {result[1]}, not {expected})")
            else:
                result = fetch(source.host, source.port, key, dest, self.secret, tls,
                               expected, growing)
        except BaseException as e:
            self.arrivals.end(growing, False, str(e) or type(e).__name__)
            raise
        self.arrivals.end(growing, True)
        return result

    def _push(self, key: str) -> None:
        """Upload a file the manager asked for to its file server (encrypted with --ssl)."""
        entry = self.cache.get(key)
        start = time.time()
        try:
            if entry is None:
                raise ProtocolError(f"no such file: {key}")
            push(self.opts.host, self._manager_files, key, entry.path, self.secret,
                 self.ssl_context)
        except (ProtocolError, OSError, EOFError) as e:
            log.warning("cannot push %s to the manager: %s", key, e)
            # so the manager stops waiting for it
            self._send(Transferred(key=key, source=PUSH_FAILED, size=0, start=start,
                                   end=time.time(), ok=False, reason=str(e)))

    def _on_transfer(self, key, source, size, start, end, ok, digest, reason) -> None:
        self._send(Transferred(key=key, source=source, size=size, start=start, end=end, ok=ok,
                               hash=digest, reason=reason))


def _take(box: queue.SimpleQueue, most: int) -> list:
    """Up to `most` items waiting in `box`, without blocking."""
    got = []
    while len(got) < most:
        try:
            got.append(box.get_nowait())
        except queue.Empty:
            break
    return got


def _hang_up(conn: Connection) -> None:
    """Wake a thread blocked reading `conn` (at end of file), even mid-frame or over TLS.
    Only the socket is shut down: closing it here could hand its number to a new descriptor
    while that thread still reads it."""
    try:
        socket.socket.shutdown(conn.sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _why(e: BaseException) -> str:
    """`connection refused`, `Name or service not known`: why a connection failed."""
    if isinstance(e, EOFError):
        return "the manager closed the connection during the handshake"
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return text[0].lower() + text[1:] if text[:2].istitle() else text


def _tls_mismatch(e: ssl.SSLError) -> bool:
    """Did a TLS handshake fail because the other side sent plain bytes (no TLS there)?
    An early end of file is not that: a network or a busy manager, worth a retry."""
    return not isinstance(e, (tls.SSLEOFError, tls.SSLZeroReturnError))


def _remove_stale_runs(workdir: str) -> None:
    """Remove run directories left by workers that were killed (their process is gone)."""
    try:
        names = os.listdir(workdir)
    except FileNotFoundError:
        return
    for name in names:
        if name.startswith("run-") and not still_running(name.removeprefix("run-")):
            remove_path(os.path.join(workdir, name))
