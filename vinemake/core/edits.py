"""Outputs changed since vinemake made them: told apart by their bytes, kept before replaced.

An output whose stat moved is hashed again, as a source is. The same bytes (a `touch`, a copy
of the same file) mean it is up to date: the journal takes its new stat and nothing runs. Other
bytes mean someone edited it: vinemake will make it again (or restore it from the store), but
first moves the edited copy to `.vinemake/edited/` and says so, as Snakemake and ninja warn
about a changed output; it never silently overwrites a user's edit. A run with `-n` only looks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TextIO

from vinemake.common.hashing import hash_tree
from vinemake.common.names import flat
from vinemake.core.journal import Journal

__all__ = ["settle", "keep"]

Stat = tuple[int, int] | None


def settle(journal: Journal, disk: Mapping[str, Stat], root: str,
           made_inside: Callable[[str], Collection[str]] = lambda path: ()) -> frozenset[str]:
    """Give each touched output its new stat in the journal; the outputs edited by hand.

    `disk` is the (size, mtime_ns) now of outputs the journal has a record of.
    `made_inside(path)` names what other rules make inside a directory output (relative to
    it): those files arrived after it was made, and are no edit of it."""
    edited = set()
    for path, now in disk.items():
        rec = journal.state.files.get(path)
        if now is None or rec is None or rec.collected or now == (rec.size, rec.mtime_ns):
            continue
        try:
            content = hash_tree(os.path.join(root, path), made_inside(path))[1]
        except OSError:
            content = ""
        if rec.content and content == rec.content:
            journal.restat(path, *now)
        else:
            edited.add(path)
    return frozenset(edited)


def keep(paths: Iterable[str], root: str, where: str, out: TextIO) -> None:
    """Move each edited output to `where` (the state directory's `edited/`), and say so."""
    for path in sorted(paths):
        full = os.path.join(root, path)
        if not os.path.lexists(full):
            continue
        os.makedirs(where, exist_ok=True)
        dest = _free(os.path.join(where, flat(path)))
        os.rename(full, dest)
        out.write(f"vinemake: {path} was changed since vinemake made it: the changed copy "
                  f"is kept as {dest}\n")


def _free(path: str) -> str:
    """`path`, or `path.1`, `path.2`... the first that is free: an older kept copy stays."""
    n, candidate = 0, path
    while os.path.lexists(candidate):
        n += 1
        candidate = f"{path}.{n}"
    return candidate
