"""Where the language grammars are: inside the installed package, or the repository's grammar/."""

from __future__ import annotations

import os

__all__ = ["grammar_path", "grammar_text"]

_GRAMMAR = "vinefile.lark"
_PACKAGE = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


def grammar_path(name: str = _GRAMMAR) -> str:
    """The grammar file `name`: the wheel force-includes grammar/*.lark as vinemake/grammar/;
    a checkout has them beside the package. (A plain path: importlib.resources would load
    pathlib, zipfile and tempfile into every run for this one look-up.)"""
    shipped = os.path.join(_PACKAGE, "grammar", name)
    if os.path.isfile(shipped):
        return shipped
    return os.path.join(os.path.dirname(_PACKAGE), "grammar", name)


def grammar_text(name: str = _GRAMMAR) -> str:
    """The grammar's text (the Vinefile's unless another is named)."""
    with open(grammar_path(name), encoding="utf-8") as f:
        return f.read()
