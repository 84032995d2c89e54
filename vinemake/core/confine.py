"""Outputs stay inside the workflow directory, judged by real paths, not by their spelling.

The graph refuses a target that is absolute or climbs out with `..`, but that check reads the
name: a target `lnk/x` where `lnk` is a symbolic link to a directory elsewhere would still be
written (restored, installed, cleaned) outside. So before vinemake writes or removes a target,
the real path of its parent directory must lie inside the workflow directory's real path. The
target itself may be a link: it is replaced, never written through.
"""

from __future__ import annotations

import os

__all__ = ["Confinement"]


class Confinement:
    """Answers "does this target's real path leave `root`?", once per parent directory."""

    def __init__(self, root: str):
        self.root = os.path.realpath(root)
        self._inside: set[str] = set()  # parent directories found inside

    def escape(self, full: str) -> str | None:
        """None if `full` (an absolute target path) stays inside, else its real path."""
        parent = os.path.dirname(full)
        if parent in self._inside:
            return None
        real = os.path.realpath(parent)
        if real == self.root or real.startswith(self.root + os.sep):
            self._inside.add(parent)
            return None
        return os.path.join(real, os.path.basename(full))

    def problem(self, path: str, full: str) -> str | None:
        """The refusal for target `path` (as the workflow names it), or None if it is inside."""
        real = self.escape(full)
        if real is None:
            return None
        return (f"target '{path}' is outside the workflow directory: its real path is {real} "
                f"(a symbolic link on the way leads out)")
