"""Sub-workflow loops: a MAKEFLOW rule whose workflow file is already running up the chain.

A `MAKEFLOW sub.vf` rule runs another vinemake on `sub.vf`. If `sub.vf` is the file that is
running (or one that started it), that vinemake would start the same rule again, without
end. Each vinemake hands its children the chain of workflow files above them (real paths, in
VINEMAKE_WORKFLOW_CHAIN); a rule whose file is on that chain, or is the running file itself,
is refused before anything starts, naming the files of the loop.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping

__all__ = ["CHAIN_VARIABLE", "chain", "loop"]

CHAIN_VARIABLE = "VINEMAKE_WORKFLOW_CHAIN"


def chain(workflow_file: str, environ: Mapping[str, str]) -> tuple[str, ...]:
    """The real paths of the workflow files running, outermost first, ending with ours."""
    above = [p for p in environ.get(CHAIN_VARIABLE, "").split(os.pathsep) if p]
    return (*above, os.path.realpath(workflow_file))


def loop(files: tuple[str, ...], command: str, root: str) -> str | None:
    """'a runs b runs a' when the sub-workflow `command` (`file [args]`) would run a file of
    the chain `files` again, else None. Names are shown relative to `root`."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None  # not a loop; the child reports the command line itself
    if not words:
        return None
    target = os.path.realpath(os.path.join(root, words[0]))
    if target not in files:
        return None
    return " runs ".join(_shown(p, root) for p in (*files[files.index(target):], target))


def _shown(path: str, root: str) -> str:
    relative = os.path.relpath(path, os.path.realpath(root))
    return path if relative.startswith("..") else relative
