"""A LOCAL rule's shadow directory: the workflow directory seen through links, outputs left out.

Why: a LOCAL command runs on this host and may read anything in the workflow directory, but
if it wrote its outputs at their paths, a kill -9 of vinemake would leave them half-written
there, and a command orphaned by that kill would keep writing into the next run's outputs.
So it runs in a directory of its own under `.vinemake/local/`, where every entry of the
workflow directory is a symbolic link to the real one, except the outputs (absent) and the
directories on the way to them (real directories, shadowed the same way). The command reads
what it always read and writes its outputs into the shadow; when it exits 0 they are renamed
into place, as a worker's are. Files it made that nobody declared are moved to where they would
have been (unless something is there now); writes through a link reach the real file, as before.

Building one costs a link per entry of each directory on the way to an output (a listing and
a symlink each), so it is cheap unless an output sits beside tens of thousands of files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from vinemake.common.paths import remove_path

__all__ = ["Shadow"]


class Shadow:
    """The shadow of `root` at `path` for a command whose outputs are `outputs` (relative)."""

    def __init__(self, root: str, path: str, outputs: Iterable[str], skip: str = ".vinemake"):
        self.root, self.path = root, path
        self.outputs = frozenset(outputs)
        self.skip = skip  # the state directory, never shown to a command
        self.spine: set[str] = {""}  # directories on the way to an output ("" is the root)
        for out in self.outputs:
            parts = out.split("/")[:-1]
            self.spine.update("/".join(parts[:i + 1]) for i in range(len(parts)))
        self.linked: set[str] = set()

    def build(self) -> None:
        for rel in sorted(self.spine, key=len):
            os.makedirs(self._at(self.path, rel), exist_ok=True)
            for name in _listing(self._at(self.root, rel)):
                entry = f"{rel}/{name}" if rel else name
                if entry in self.outputs or entry in self.spine or entry == self.skip:
                    continue
                os.symlink(self._at(self.root, entry), self._at(self.path, entry))
                self.linked.add(entry)

    def provide(self, name: str) -> str:
        """Where a file the command reads goes that is not in the workflow directory (a URL
        source, by its plain name): it hides an entry of that name and never leaves here."""
        path = self._at(self.path, name)
        if name in self.linked:
            os.unlink(path)
        self.linked.add(name)
        return path

    def made(self, out: str) -> str:
        """Where the command left output `out`."""
        return self._at(self.path, out)

    def place(self, out: str) -> None:
        """Rename output `out` from the shadow to its path (a directory replaces one there)."""
        src, dest = self._at(self.path, out), self._at(self.root, out)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if os.path.isdir(dest) and not os.path.islink(dest) and not os.path.islink(src):
            old = f"{src}.vinemake-old"
            os.rename(dest, old)
            os.rename(src, dest)
            remove_path(old)
        else:
            os.replace(src, dest)

    def return_side_files(self) -> None:
        """Move what the command made besides its outputs to where it would have been."""
        for rel in sorted(self.spine, key=len):
            for name in _listing(self._at(self.path, rel)):
                entry = f"{rel}/{name}" if rel else name
                if entry in self.outputs or entry in self.spine or entry in self.linked:
                    continue
                dest = self._at(self.root, entry)
                if not os.path.lexists(dest):
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    os.rename(self._at(self.path, entry), dest)

    def remove(self) -> None:
        remove_path(self.path)

    @staticmethod
    def _at(base: str, rel: str) -> str:
        return os.path.join(base, rel) if rel else base


def _listing(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []
