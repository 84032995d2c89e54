"""The processes each running command started, found in one pass over /proc for all of them.

The monitor samples every process of a command's tree. Finding them means reading the
parent of processes on the host (this kernel has no /proc/PID/task/TID/children), and a
`/proc/PID/stat` read costs the kernel about ten microseconds per process: psutil's
`children()` reads every process's, once for each command sampled. Here one pass serves
every command sampled at once, and reads only the processes that can be a command's
descendants: as long as the pid counter did not wrap around since a command started, every
process it started has a pid between the command's own and the counter's value now. The
counter (`/proc/sys/kernel/ns_last_pid`) read at every pass says whether it wrapped; a
command that lived through a wrap, or a host where the counter cannot be read, has every
process looked at, as before.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from vinemake.common.records import dataclass

__all__ = ["Lineage", "ProcessTrees", "children_of", "descendants", "pid_range"]

PROC = "/proc"
COUNTER = "/proc/sys/kernel/ns_last_pid"
# A range of this many pids or fewer is looked up pid by pid (a missing one costs little),
# a wider one by listing /proc.
FEW = 128


@dataclass
class Lineage:
    """What one pass needs to know of a command to find its processes cheaply."""

    pid: int  # the command's own process, which leads its tree
    counter: int  # the pid counter when last looked at (the pid itself at first)
    wrapped: bool = False  # the counter wrapped since it started: its pids may be anything

    @classmethod
    def of(cls, pid: int) -> Lineage:
        return cls(pid, pid)

    def advance(self, counter: int | None) -> None:
        """The counter read now (None: unknown, so anything may have happened)."""
        if counter is None or counter < self.counter:
            self.wrapped = True
        else:
            self.counter = counter


def pid_range(lineages: Iterable[Lineage], counter: int | None) -> tuple[int, int | None]:
    """(floor, ceiling): only a process with floor < pid <= ceiling can be in these
    commands' trees (ceiling None: no bound). Pure."""
    floor = None
    for lineage in lineages:
        if lineage.wrapped:
            return 0, None
        floor = lineage.pid if floor is None else min(floor, lineage.pid)
    if floor is None or counter is None:
        return 0, None
    return floor, counter


def children_of(parents: Mapping[int, int]) -> dict[int, list[int]]:
    """pid -> parent pid turned around: parent pid -> its children's pids. Pure."""
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    return children


def descendants(children: Mapping[int, list[int]], pid: int) -> list[int]:
    """Every process below `pid` (`children`: parent pid -> children's pids). Pure."""
    found: list[int] = []
    todo = [pid]
    while todo:
        below = children.get(todo.pop(), ())
        found.extend(below)
        todo.extend(below)
    return found


class ProcessTrees:
    """Reads /proc: the processes under each of the commands sampled in one pass."""

    def __init__(self, proc: str = PROC, counter: str = COUNTER):
        self.proc = proc
        self.counter = counter

    def read_counter(self) -> int | None:
        """The pid last handed out, or None where the kernel does not say."""
        try:
            with open(self.counter, "rb") as f:
                return int(f.read())
        except (OSError, ValueError):
            return None

    def trees(self, lineages: list[Lineage]) -> dict[int, list[int]]:
        """Each command's pid -> the pids below it now; updates each Lineage's counter."""
        counter = self.read_counter()
        for lineage in lineages:
            lineage.advance(counter)
        children = children_of(self.parents(*pid_range(lineages, counter)))
        return {lineage.pid: descendants(children, lineage.pid) for lineage in lineages}

    def parents(self, floor: int = 0, ceiling: int | None = None) -> dict[int, int]:
        """pid -> parent pid of every process with floor < pid <= ceiling."""
        if ceiling is not None and ceiling - floor <= FEW:
            pids = range(floor + 1, ceiling + 1)  # fewer look-ups than listing /proc
        else:
            try:
                names = os.listdir(self.proc)
            except OSError:
                return {}
            pids = (int(n) for n in names if n.isdigit())
        parents = {}
        for pid in pids:
            if pid <= floor or (ceiling is not None and pid > ceiling):
                continue
            parent = _parent(f"{self.proc}/{pid}/stat")
            if parent is not None:
                parents[pid] = parent
        return parents


def _parent(stat_path: str) -> int | None:
    """The parent pid in a /proc/PID/stat file (None if the process is gone). The command
    name, in parentheses, may hold spaces and parentheses: the fields follow the last ')'."""
    try:
        fd = os.open(stat_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 512)
    except OSError:
        return None
    finally:
        os.close(fd)
    fields = data[data.rfind(b")") + 2:].split(b" ", 2)
    try:
        return int(fields[1])
    except (IndexError, ValueError):
        return None
