"""Which worker runs a task: a pure function of the task, the workers and where files are.

    1. the task's resources must fit in what the worker has free (cores, memory, disk, gpus),
       and a task with BATCH_OPTIONS runs only on a worker submitted with the same options
       (its name carries their tag, see `vinemake.backends.options_tag`); a task that
       declares disk must also fit beside the worker's cache (files held and files on their
       way to it) and the inputs it would have to fetch there, so disk is never overcommitted;
    2. among those, the worker already holding the most bytes of the task's inputs (so fewer
       bytes move);
    3. then the least loaded (fewest running tasks), then the name, so ties are deterministic.

When a task that declares disk fits some worker but not beside its cache, `make_room` picks
the files that worker should drop first (see there); the manager drops them, then places.

`random` placement ignores 2 and 3 and picks any worker that fits: the baseline the benchmark
compares locality against. Unspecified resources count as 1 core and nothing else, as in
Makeflow, so tasks that declare nothing still pack one per core.
"""

from __future__ import annotations

import random as _random
from collections.abc import Iterable, Mapping, Sequence, Set

from vinemake.backends import options_tag, worker_options_tag
from vinemake.common.amounts import fits as amounts_fit
from vinemake.common.amounts import held_by, offered_by
from vinemake.common.records import dataclass
from vinemake.common.spec import Resources
from vinemake.common.task import Task

__all__ = ["WorkerView", "Cached", "need", "fits", "cache_fits", "place", "holder",
           "make_room", "locality_wait_s", "missing_bytes", "blend_rate"]

MB = 1_000_000  # disk is offered and declared in MB (as `--disk` counts them)
# Before any transfer has been timed, copies are assumed to flow at 100 Mbit/s: slow enough
# that a task waits for its holder rather than moving a large file on a guess.
DEFAULT_RATE_BPS = 12_500_000


@dataclass(frozen=True)
class WorkerView:
    """What placement knows of one worker: free resources now and how busy it is."""

    id: str
    free: Resources  # disk: offered minus what running tasks declared; the cache is apart
    running: int = 0
    cached_mb: float = 0.0  # files in its cache, including those on their way to it
    incoming: frozenset[str] = frozenset()  # keys on their way to it (in cached_mb already)
    same_host: bool = False  # inputs with a path here are linked, not copied into its cache


@dataclass(frozen=True)
class Cached:
    """One file in a worker's cache, as eviction weighs it."""

    key: str
    size: int  # bytes
    copies: int = 0  # other places it can be fetched from: other workers, the manager's path
    recreatable: bool = False  # its producer is known: running it again makes the file again
    forever: bool = False  # `@cache forever`: kept across workflows, so dropped last


def need(r: Resources) -> Resources:
    """A task's declared resources with the defaults filled in (common/amounts.py's rule)."""
    return Resources(*held_by(r))


def fits(want: Resources, free: Resources) -> bool:
    return amounts_fit(offered_by(want), offered_by(free))


def cache_fits(task: Task, want: Resources, w: WorkerView,
               replicas: Mapping[str, Iterable[str]], sizes: Mapping[str, int]) -> bool:
    """Does the task's declared disk fit beside the worker's cache and the inputs it lacks?

    A task that declares no disk is not held back (nothing to account it against).
    """
    if not want.disk_mb:
        return True
    missing = _missing(task, w, replicas, sizes)
    return want.disk_mb + missing / MB <= (w.free.disk_mb or 0) - w.cached_mb


def place(task: Task, workers: Iterable[WorkerView], replicas: Mapping[str, Iterable[str]],
          rng: _random.Random | None = None,
          sizes: Mapping[str, int] | None = None, room_first: bool = True,
          remake_s: Mapping[str, float] | None = None, rate: float | None = None) -> str | None:
    """The id of the worker to run `task`, or None if none has room now.

    `replicas` maps a file key to the ids of the workers holding it; `sizes` gives the bytes
    of files whose TaskFile does not know them (intermediates made after the task was built).
    A held file counts at least one byte, so holding something beats holding nothing. With
    `rng` the choice among fitting workers is random (placement "random").

    With `room_first`, a task that declares disk gets None when a worker holding more of its
    inputs than any fitting one is kept out only by its cache: the manager first tries to
    make room there (`make_room`), rather than copy the inputs elsewhere, and calls again
    with room_first=False if it cannot.

    A `@mini` rule's outputs (task.minis) can be made on any worker: holding them is worth
    what making them again would cost, the transfer of the mini's inputs plus its measured
    run time (`remake_s`, by output key) at the transfer `rate`; a worker without them is
    worth the bytes of the mini's inputs it holds.
    """
    want = need(task.resources)
    sizes = sizes or {}
    wanted = offered_by(want)  # once, not once per worker
    usable = [w for w in workers if amounts_fit(wanted, offered_by(w.free))]
    if task.batch_options:
        tag = options_tag(task.batch_options)
        usable = [w for w in usable if worker_options_tag(w.id) == tag]
    fitting = [w for w in usable if cache_fits(task, want, w, replicas, sizes)]
    if not fitting:
        return None
    if rng is not None:
        return rng.choice(fitting).id
    room_first = room_first and bool(want.disk_mb) and len(usable) > len(fitting)
    if len(fitting) == 1 and not room_first:
        return fitting[0].id
    held = _held(task, usable if room_first else fitting, replicas, sizes)
    if task.minis:
        _held_minis(held, task, replicas, sizes, remake_s or {}, rate or DEFAULT_RATE_BPS)
    best = min(fitting, key=lambda w: (-held[w.id], w.running, w.id))
    if room_first and max(held.values()) > held[best.id]:
        return None
    return best.id


def _held(task: Task, workers: Iterable[WorkerView], replicas: Mapping[str, Iterable[str]],
          sizes: Mapping[str, int]) -> dict[str, int]:
    """Bytes of the task's inputs each worker holds (a held file counts at least one)."""
    held = {w.id: 0 for w in workers}
    for f in task.inputs:
        size = max(f.size, sizes.get(f.key, 0), 1)
        for wid in replicas.get(f.key, ()):
            if wid in held:
                held[wid] += size
    return held


def _held_minis(held: dict[str, int], task: Task, replicas: Mapping[str, Iterable[str]],
                sizes: Mapping[str, int], remake_s: Mapping[str, float], rate: float) -> None:
    """Add what each worker holds of the task's `@mini` rules (see `place`)."""
    for m in task.minis:
        inputs = {f.key: max(f.size, sizes.get(f.key, 0), 1) for f in m.inputs}
        outputs = [o.key for o in m.outputs]
        cost = sum(inputs.values()) + int(remake_s.get(outputs[0], 0.0) * rate) if outputs \
            else 0
        for wid in held:
            if outputs and all(wid in replicas.get(k, ()) for k in outputs):
                held[wid] += cost
            else:
                held[wid] += sum(s for k, s in inputs.items() if wid in replicas.get(k, ()))
            # _held counted the outputs as plain inputs: they are weighed here instead
            held[wid] -= sum(max(sizes.get(k, 0), 1) for k in outputs
                             if wid in replicas.get(k, ()))


def holder(task: Task, workers: Iterable[WorkerView], replicas: Mapping[str, Iterable[str]],
           only: set[str] | frozenset[str] = frozenset()) -> str | None:
    """The worker holding the most inputs of `task` among the keys in `only`, busy or not.

    The manager waits a moment for that worker when it is busy rather than copying an
    intermediate that exists on one worker only (delay scheduling).
    """
    tag = options_tag(task.batch_options)
    ids = {w.id for w in workers if worker_options_tag(w.id) == tag or not tag}
    count: dict[str, int] = {}
    for f in task.inputs:
        if f.key in only:
            for wid in replicas.get(f.key, ()):
                if wid in ids:
                    count[wid] = count.get(wid, 0) + 1
    return min(count, key=lambda wid: (-count[wid], wid)) if count else None


def make_room(task: Task, workers: Iterable[WorkerView], caches: Mapping[str, Sequence[Cached]],
              replicas: Mapping[str, Iterable[str]], sizes: Mapping[str, int],
              keep: Set[str]) -> tuple[str, tuple[str, ...]] | None:
    """A worker to run `task` once it drops some cache entries, and those keys; None: none.

    Only a worker where the task fits but for its cache is considered, and only if it holds
    more of the task's inputs than every worker where it fits already. `caches` lists each
    worker's files oldest first; a key in `keep` (needed by a waiting or running task, on
    its way somewhere, awaiting delivery) is never dropped, nor a file with no other copy
    that nothing can make again. The least useful go first: files fetchable elsewhere
    (the more copies, the sooner; then the oldest), then `@cache forever` ones, and only
    then sole copies whose producer can re-create them. The worker chosen drops the least
    useful set: lowest worst tier, then the most input bytes held (locality), then fewest
    bytes dropped, then least loaded, then name.
    """
    want = need(task.resources)
    if not want.disk_mb:
        return None
    sizes = sizes or {}
    tag = options_tag(task.batch_options) if task.batch_options else None
    usable = [w for w in workers if fits(want, w.free)
              and (tag is None or worker_options_tag(w.id) == tag)]
    held = _held(task, usable, replicas, sizes)
    blocked = [w for w in usable if not cache_fits(task, want, w, replicas, sizes)]
    ids = {w.id for w in blocked}
    floor = max((held[w.id] for w in usable if w.id not in ids), default=-1)
    best = None
    for w in blocked:
        if held[w.id] <= floor:
            continue
        short = want.disk_mb + _missing(task, w, replicas, sizes) / MB - (
            (w.free.disk_mb or 0) - w.cached_mb)
        drop = _least_useful(caches.get(w.id, ()), keep, short)
        if drop is None:
            continue
        worst = max(_tier(c) for c in drop)
        rank = (worst, -held[w.id], sum(c.size for c in drop), w.running, w.id)
        if best is None or rank < best[0]:
            best = rank, w.id, tuple(c.key for c in drop)
    return None if best is None else (best[1], best[2])


def _missing(task: Task, w: WorkerView, replicas: Mapping[str, Iterable[str]],
             sizes: Mapping[str, int]) -> int:
    """Bytes of the task's inputs that would still have to come to `w`."""
    return sum(max(f.size, sizes.get(f.key, 0)) for f in task.inputs
               if not (f.key in w.incoming or w.id in replicas.get(f.key, ())
                       or (w.same_host and f.path is not None)))


def _tier(c: Cached) -> int:
    """0: fetchable elsewhere, 1: forever, 2: a sole copy its producer can make again."""
    if c.copies == 0:
        return 2 + c.forever
    return int(c.forever)


def _least_useful(cache: Sequence[Cached], keep: Set[str], short_mb: float) -> list | None:
    """The shortest run of droppable entries, least useful first, freeing `short_mb`."""
    droppable = [(i, c) for i, c in enumerate(cache)
                 if c.key not in keep and (c.copies or c.recreatable)]
    droppable.sort(key=lambda ic: (_tier(ic[1]), -ic[1].copies, ic[0]))
    chosen, freed = [], 0
    for _, c in droppable:
        if freed / MB >= short_mb - 1e-9:
            break
        chosen.append(c)
        freed += c.size
    return chosen if chosen and freed / MB >= short_mb - 1e-9 else None


def locality_wait_s(missing: int, rate_bps: float | None, floor_s: float = 1.0,
                    cap_s: float = 60.0) -> float:
    """How long a task may wait for the busy worker holding its inputs before they move.

    About as long as copying the `missing` bytes elsewhere would take at the observed rate,
    so waiting is never much worse than moving; at least `floor_s` (small files still
    cost a round trip and a cache entry), at most `cap_s` (a worker may be busy for long).
    """
    rate = rate_bps if rate_bps and rate_bps > 0 else DEFAULT_RATE_BPS
    return min(cap_s, max(floor_s, missing / rate))


def missing_bytes(task: Task, w: WorkerView, replicas: Mapping[str, Iterable[str]],
                  sizes: Mapping[str, int]) -> int:
    """Bytes of the task's inputs that would have to be copied to `w`."""
    return _missing(task, w, replicas, sizes)


def blend_rate(old: float | None, size: int, seconds: float, weight: float = 0.25) -> float | None:
    """The transfer rate (bytes/s) after one more completed transfer, a moving average.

    Transfers too small or too quick to time (latency, not bandwidth) leave it unchanged.
    """
    if size < MB or seconds <= 0.01:
        return old
    rate = size / seconds
    return rate if old is None else old + weight * (rate - old)
