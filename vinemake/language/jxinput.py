"""How the command line asks for a JX workflow to be read (--jx, --json, --jx-args,
--jx-define, or a file named *.jx / *.json): plain data, and no lark, so the command line can
decide it before anything is parsed."""

from __future__ import annotations

import re
from collections.abc import Iterable

from vinemake.common.errors import InputError
from vinemake.common.records import dataclass

__all__ = ["JxInput", "jx_input"]


@dataclass(frozen=True)
class JxInput:
    """How to read a JX workflow: as plain JSON (--json), and the context the command line
    gives (--jx-args files, --jx-define NAME=EXPR, in order)."""

    plain: bool = False
    args_files: tuple[str, ...] = ()
    defines: tuple[str, ...] = ()

    def fingerprint(self, workflow: bytes) -> str | None:
        """What a workflow's meaning depends on besides its own bytes (for the up-to-date
        snapshot, which looks no further), or None when it lists directories or fetches
        documents: then only reading it again can tell."""
        parts = [repr(self)]
        texts = [workflow]
        for path in self.args_files:
            try:
                with open(path, "rb") as f:
                    texts.append(f.read())
            except OSError:
                return None
            parts.append(texts[-1].decode("utf-8", "replace"))
        if any(_EXTERNAL.search(t) for t in [*texts, *(d.encode() for d in self.defines)]):
            return None
        return "\0".join(parts)


_EXTERNAL = re.compile(rb"\b(?:listdir|fetch)\b")


def jx_input(path: str, jx: bool = False, plain: bool = False, args_files: Iterable[str] = (),
             defines: Iterable[str] = ()) -> JxInput | None:
    """The JX reading of the workflow at `path`, or None for a Vinefile: --jx, --json,
    --jx-args or --jx-define say so, else a name ending in .jx (JX) or .json (plain JSON)."""
    args_files, defines = tuple(args_files), tuple(defines)
    if jx and plain:
        raise InputError("--jx and --json cannot be combined (--jx reads JSON too)")
    context = args_files or defines
    if plain and context:
        raise InputError("--jx-args and --jx-define need --jx (a --json workflow is plain JSON)")
    if not (jx or plain or context):
        if path.endswith(".jx"):
            jx = True
        elif path.endswith(".json"):
            plain = True
        else:
            return None
    return JxInput(plain=plain, args_files=args_files, defines=defines)
