"""The parser's output: one plain statement per Vinefile line, with where its parts start."""

from __future__ import annotations

from typing import NamedTuple

from vinemake.common.errors import VinefileError
from vinemake.common.spec import Location

__all__ = ["Text", "Assign", "BadAssign", "Export", "Directive", "Annotation", "Rule",
           "PlainRule", "SourceText"]


class Text(NamedTuple):
    """Raw text of a line part as written, and where it starts (1-based line and column)."""

    raw: str
    line: int
    col: int


class Assign(NamedTuple):
    """`NAME=value`, `NAME = value`, `NAME+=value`, `@NAME=value`; `head` is `NAME+=`."""

    head: Text
    value: Text | None


class BadAssign(NamedTuple):
    """An assignment with an operator Makeflow does not have, or without a name."""

    head: Text


class Export(NamedTuple):
    """`export A B=value`."""

    keyword: Text
    args: Text | None


class Directive(NamedTuple):
    """`.MAKEFLOW WORD value` or `.SIZE file size` (or an unknown `.WORD`)."""

    word: Text
    args: Text | None


class Annotation(NamedTuple):
    """`@word args` above a rule header."""

    word: Text
    args: Text | None


class Rule(NamedTuple):
    """Annotations, header, rule-local statements and the one command line of a rule."""

    annotations: tuple[Annotation, ...]
    targets: Text | None
    colon: Text
    sources: Text | None
    local: tuple[Assign | BadAssign | Directive, ...]
    command: Text


class PlainRule(NamedTuple):
    """A rule as almost every rule of a big workflow is written: `targets: sources` and the
    command on the next line, nothing to expand, unquote or join (no `$`, quote, `\\`, `#`).

    It means exactly what the same text read as a Rule means; it exists because making four
    Texts and a Rule per line is a good part of the time spent on a million-rule file.
    """

    targets: str
    sources: str
    command: str  # after the indent, up to the end of the line
    line: int
    col: int
    command_col: int

    def rule(self) -> Rule:
        """The same rule in the general form."""
        colon = Text(":", self.line, self.col + len(self.targets))
        return Rule((), Text(self.targets, self.line, self.col) if self.targets.strip() else None,
                    colon,
                    Text(self.sources, self.line, colon.col + 1) if self.sources.strip() else None,
                    (), Text(self.command, self.line + 1, self.command_col))


class SourceText:
    """The Vinefile being read: its name and text, to locate errors."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.text = text
        self._lines: list[str] | None = None

    def line_text(self, line: int) -> str:
        if self._lines is None:
            self._lines = self.text.split("\n")
        return self._lines[line - 1] if 0 < line <= len(self._lines) else ""

    def error(self, line: int, col: int, message: str) -> VinefileError:
        return VinefileError(Location(self.path, line, col), message, self.line_text(line))

    def error_at(self, text: Text, offset: int, message: str) -> VinefileError:
        """An error at `offset` characters into `text` (which may span continued lines)."""
        line, col = text.line, text.col + offset
        newlines = text.raw.count("\n", 0, offset)
        if newlines:
            line += newlines
            col = offset - text.raw.rfind("\n", 0, offset)
        return self.error(line, col, message)
