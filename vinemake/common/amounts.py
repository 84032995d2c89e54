"""Resource amounts as the scheduler counts them: what a task holds while it runs, what is free.

One set of rules for the manager's placement and bookkeeping, the worker's slots and the
engine's "no worker could ever run this": a task holds 1 core unless it says otherwise and
nothing of what it leaves unset; a worker offers nothing of what it leaves unset; cores are
fractional, so comparisons allow a rounding error (0.1 + 0.2 cores fit in 0.3).
"""

from __future__ import annotations

from typing import NamedTuple

from vinemake.common.spec import Resources

__all__ = ["Amounts", "NOTHING", "held_by", "offered_by", "fits", "excess", "Pool"]

EPSILON = 1e-9


class Amounts(NamedTuple):
    cores: float = 0.0
    memory_mb: float = 0.0
    disk_mb: float = 0.0
    gpus: float = 0.0


NOTHING = Amounts()
_UNITS = {"cores": "", "memory_mb": " MB", "disk_mb": " MB", "gpus": ""}
_WORDS = {"cores": "cores", "memory_mb": "memory", "disk_mb": "disk", "gpus": "gpus"}


def held_by(r: Resources) -> Amounts:
    """What a task with declared resources `r` holds while it runs."""
    return Amounts(1.0 if r.cores is None else r.cores, r.memory_mb or 0, r.disk_mb or 0,
                   r.gpus or 0)


def offered_by(r: Resources) -> Amounts:
    """What a worker offering `r` has in all."""
    return Amounts(r.cores or 0.0, r.memory_mb or 0, r.disk_mb or 0, r.gpus or 0)


def fits(want: Amounts, free: Amounts) -> bool:
    """Does `want` fit in `free`, every amount of it?"""
    return (want[0] <= free[0] + EPSILON and want[1] <= free[1] + EPSILON
            and want[2] <= free[2] + EPSILON and want[3] <= free[3] + EPSILON)


def excess(want: Resources, have: Resources) -> str | None:
    """What declared `want` asks beyond `have`, as text, or None if it fits. Amounts that
    either side leaves unset are not compared (an unknown is not a limit)."""
    for name, unit in _UNITS.items():
        w, h = getattr(want, name), getattr(have, name)
        if w is not None and h is not None and w > h + EPSILON:
            return (f"needs {_WORDS[name]} {_number(w)}{unit} but the largest worker offers "
                    f"{_number(h)}{unit}")
    return None


def _number(value: float) -> str:
    """A count as written: whole numbers in full (123456789, never 1.23457e+08)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class Pool:
    """Amounts free to take and give back (the caller serialises access)."""

    __slots__ = ("cores", "memory_mb", "disk_mb", "gpus")

    def __init__(self, total: Amounts):
        self.cores, self.memory_mb, self.disk_mb, self.gpus = total

    def amounts(self) -> Amounts:
        return Amounts(self.cores, self.memory_mb, self.disk_mb, self.gpus)

    def fits(self, want: Amounts) -> bool:
        return fits(want, (self.cores, self.memory_mb, self.disk_mb, self.gpus))

    def take(self, a: Amounts) -> None:
        self.cores -= a[0]
        self.memory_mb -= a[1]
        self.disk_mb -= a[2]
        self.gpus -= a[3]

    def give(self, a: Amounts) -> None:
        self.cores += a[0]
        self.memory_mb += a[1]
        self.disk_mb += a[2]
        self.gpus += a[3]

    def __repr__(self) -> str:
        return f"Pool{self.amounts()}"
