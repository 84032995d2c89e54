"""Where the Vinefile grammar is: inside the installed package, or the repository's grammar/."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

__all__ = ["grammar_path", "grammar_text"]

_GRAMMAR = "vinefile.lark"


def grammar_path():
    """The grammar file (a Traversable): the wheel force-includes it as vinemake/grammar/."""
    shipped = importlib.resources.files("vinemake") / "grammar" / _GRAMMAR
    if shipped.is_file():
        return shipped
    return Path(__file__).resolve().parents[2] / "grammar" / _GRAMMAR


def grammar_text() -> str:
    """The grammar's text."""
    return grammar_path().read_text(encoding="utf-8")
