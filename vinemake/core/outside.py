"""Sources outside the workflow directory (`/usr/bin/convert`, `../../shared.txt`) in a task.

Makeflow runs a command in the workflow directory, so such names simply resolve there; a
vinemake command runs in a sandbox of its own, so the task is laid out to make them resolve:

- an absolute source is read in place: it is not put in the sandbox, the command names it as
  written, so the machine that runs the command must have it at that path (this one, for
  `-T local` and LOCAL rules; every worker, under `--shared-fs DIR`; see `unseen_by_workers`);
- a `..` source is put in the sandbox above the command's directory: the command runs k
  directories down (the last k names of the workflow directory, k its deepest climb), so
  `../../shared.txt` sits at the sandbox's top and is sent to a worker like any input.

Either way it is hashed like any source, so its content is part of the provenance keys.
"""

from __future__ import annotations

import dataclasses
import posixpath
import shlex
from collections.abc import Iterable, Sequence

from vinemake.common.task import TaskFile

__all__ = ["is_outside", "climb", "command_dir", "placed", "arrange", "climbing_links",
           "unseen_by_workers"]


def is_outside(name: str) -> bool:
    """Does the normalised source name leave the workflow directory?"""
    return name[:1] == "/" or name == ".." or name[:3] == "../"


def climb(name: str) -> int:
    """How many directories `name` climbs above the one it is read from."""
    parts = posixpath.normpath(name).split("/")
    n = 0
    while n < len(parts) and parts[n] == "..":
        n += 1
    return n


def command_dir(names: Iterable[str], root: str) -> str:
    """Where a command reading `names` (sandbox names) runs, relative to its sandbox: the last
    k names of `root`, k the deepest climb among them ("" when none climbs)."""
    depth = max((climb(n) for n in names if n[:1] != "/"), default=0)
    parts = [p for p in root.split("/") if p][-depth:] if depth else []
    return "/".join(["_"] * (depth - len(parts)) + parts)


def placed(cwd: str, name: str) -> str:
    """`name`, read from `cwd`, as a name relative to the sandbox's top."""
    return posixpath.normpath(posixpath.join(cwd, name))


def arrange(inputs: Sequence[TaskFile], outputs: Sequence[TaskFile], command: str,
            root: str) -> tuple[tuple[TaskFile, ...], tuple[TaskFile, ...], str]:
    """The task's inputs, outputs and command with its outside sources laid out as above."""
    cwd = command_dir((f.sandbox for f in inputs), root)

    def place(f: TaskFile) -> TaskFile:
        return dataclasses.replace(f, sandbox=placed(cwd, f.sandbox))

    kept: dict[str, TaskFile] = {}
    for f in inputs:
        if f.sandbox[:1] == "/":
            continue  # read in place
        f = place(f) if cwd else f
        kept.setdefault(f.sandbox, f)  # `../wf/a` and `a` may be one file
    if not cwd:
        return tuple(kept.values()), tuple(outputs), command
    here = shlex.quote(cwd)
    return (tuple(kept.values()), tuple(place(f) for f in outputs),
            f"mkdir -p {here} && cd {here} || exit 1\n{command}")


def climbing_links(inputs: Sequence[TaskFile], root: str) -> tuple[str, list[tuple[str, str]]]:
    """For a LOCAL rule's shadow directory: where its command runs (relative to the shadow's
    top) and, for each `..` source, the link to make (relative to the top) and its target."""
    cwd = command_dir((f.sandbox for f in inputs), root)
    if not cwd:
        return "", []
    return cwd, [(placed(cwd, f.sandbox), f.path) for f in inputs
                 if f.path is not None and f.sandbox[:1] != "/" and climb(f.sandbox)]


def unseen_by_workers(sources: Iterable[str], shared: Sequence[str]) -> list[str]:
    """The absolute sources no `--shared-fs` directory holds: workers started anywhere may
    not have them (Makeflow refuses them on Work Queue and TaskVine the same way)."""
    dirs = [d.rstrip("/") + "/" for d in shared]
    return [s for s in sources if s[:1] == "/" and not any(s.startswith(d) for d in dirs)]
