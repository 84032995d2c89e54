"""Where the language grammars are: inside the installed package, or the repository's grammar/."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

__all__ = ["grammar_path", "grammar_text"]

_GRAMMAR = "vinefile.lark"


def grammar_path(name: str = _GRAMMAR):
    """The grammar file `name` (a Traversable): the wheel force-includes grammar/*.lark as
    vinemake/grammar/."""
    shipped = importlib.resources.files("vinemake") / "grammar" / name
    if shipped.is_file():
        return shipped
    return Path(__file__).resolve().parents[2] / "grammar" / name


def grammar_text(name: str = _GRAMMAR) -> str:
    """The grammar's text (the Vinefile's unless another is named)."""
    return grammar_path(name).read_text(encoding="utf-8")
