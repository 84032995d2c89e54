"""Read a Vinefile into a Workflow: the Lark grammar, syntax errors, then evaluation.

This is the only module that imports lark. The grammar (grammar/vinefile.lark) describes
lines; a transformer applied during the LALR parse turns each line into a plain statement
(vinemake.evaluate), so no parse tree is ever built. The statements are then evaluated in
file order. Lark's errors are translated into located messages in the user's words.
"""

from __future__ import annotations

import functools
import gc
import importlib.resources
import os
import re
from collections.abc import Mapping
from pathlib import Path

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from vinemake.errors import VinefileError
from vinemake.evaluate import (
    Annotation,
    Assign,
    BadAssign,
    Directive,
    Export,
    Rule,
    Source,
    Text,
    evaluate,
)
from vinemake.spec import Location, Workflow

__all__ = ["parse_file", "parse_text", "grammar_text"]

_GRAMMAR = "vinefile.lark"


def grammar_text() -> str:
    """The grammar: shipped inside the installed package, or in the repository's grammar/."""
    shipped = importlib.resources.files("vinemake") / "grammar" / _GRAMMAR
    if shipped.is_file():
        return shipped.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent / "grammar" / _GRAMMAR).read_text(
        encoding="utf-8")


def _text(token: Token) -> Text:
    return Text(str(token), token.line, token.column)


# The pieces of the HEADER and COMMAND terminals, to take them apart again. These mirror
# _FILETEXT and _TEXT in the grammar (the fuzz tests check the two agree).
_QUOTED = r"""'(?:[^'\n]|\\\n)*'|"(?:[^"\\\n]|\\[\s\S])*"|\\[\s\S]"""
_HEADER = re.compile(rf"""((?:[^\n#"'\\:]|{_QUOTED})*):((?:[^\n#"'\\:]|{_QUOTED})*)""")
_CONTENT = re.compile(rf"""(?:[^\n#"'\\]|{_QUOTED})*""")


def _shift(text: Text, offset: int, raw: str) -> Text:
    """A Text for `raw`, which starts `offset` characters into `text`."""
    newlines = text.raw.count("\n", 0, offset)
    if not newlines:
        return Text(raw, text.line, text.col + offset)
    return Text(raw, text.line + newlines, offset - text.raw.rfind("\n", 0, offset))


class _Statements(Transformer):
    """Turns each grammar rule into a statement while the parser reduces it."""

    def start(self, children):
        return children

    def assignment(self, children):
        return Assign(_text(children[0]), _text(children[1]) if len(children) > 1 else None)

    def bad_assignment(self, children):
        return BadAssign(_text(children[0]))

    def export(self, children):
        return Export(_text(children[0]), _text(children[1]) if len(children) > 1 else None)

    def directive(self, children):
        return Directive(_text(children[0]), _text(children[1]) if len(children) > 1 else None)

    def annotation(self, children):
        return Annotation(_text(children[0]), _text(children[1]) if len(children) > 1 else None)

    def header(self, children):
        tok = children[0]
        m = _HEADER.match(tok)
        targets, sources = m.group(1), m.group(2)
        colon = _shift(Text(targets, tok.line, tok.column), len(targets), ":")
        return (Text(targets, tok.line, tok.column) if targets.strip() else None, colon,
                _shift(colon, 1, sources) if sources.strip() else None)

    def command(self, children):
        tok = children[0]
        return Text(_CONTENT.match(tok).group(), tok.line, tok.column)

    def rule(self, children):
        notes = []
        i = 0
        while isinstance(children[i], Annotation):
            notes.append(children[i])
            i += 1
        targets, colon, sources = children[i]
        return Rule(tuple(notes), targets, colon, sources, tuple(children[i + 1:-1]),
                    children[-1])


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    # The transformer is stateless, so one parser serves every parse.
    return Lark(grammar_text(), parser="lalr", lexer="contextual", transformer=_Statements(),
                propagate_positions=False, maybe_placeholders=False)


def parse_text(text: str, path: str = "<string>",
               environ: Mapping[str, str] | None = None) -> Workflow:
    """Parse and evaluate Vinefile `text`; errors raise VinefileError located in `path`."""
    if environ is None:
        environ = os.environ
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    source = Source(path, text)
    body = text if text.endswith("\n") else text + "\n"
    # A big Vinefile makes millions of small objects that all live until the end: the
    # cyclic garbage collector would rescan them over and over, for nothing.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            statements = _lark().parse(body)
        except UnexpectedInput as e:
            raise _syntax_error(e, source) from None
        return evaluate(statements, source, environ)
    finally:
        if was_enabled:
            gc.enable()


def parse_file(path: str, environ: Mapping[str, str] | None = None) -> Workflow:
    """Parse the Vinefile at `path`."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise VinefileError(Location(path, 1, 1), f"not a text file: {e.reason}") from None
    return parse_text(text, path, environ)


# ---- syntax errors in the user's words -------------------------------------------------

def _syntax_error(e: UnexpectedInput, source: Source) -> VinefileError:
    line, col = e.line, e.column
    if isinstance(e, UnexpectedCharacters):
        char = source.text[e.pos_in_stream: e.pos_in_stream + 1]
        if char in "\"'":
            return source.error(line, col, f"unbalanced quote: this {char} is never closed")
        return source.error(line, col, f"unexpected {char!r}")
    assert isinstance(e, UnexpectedToken)
    token, expected = e.token, set(e.expected)
    if token.type == "$END":
        line, col = _end_position(source.text)
    return source.error(line, col, _token_message(token.type, expected))


def _token_message(found: str, expected: set[str]) -> str:
    if "COMMAND" in expected:
        return "expected the rule's command line (indented with a tab or space)"
    if found == "COMMAND":
        return ("a rule has exactly one command line: join lines with a trailing '\\' "
                "or start a new rule")
    if "COLON" in expected and "ASSIGN" not in expected:
        if "ANNOTATION" in expected and "TARGETS" in expected:
            return "an annotation must be directly followed by a rule header"
        return "expected ':' after the targets of a rule (or '=' for an assignment)"
    return "unexpected " + _WORDS.get(found, found)


_WORDS = {"$END": "end of file", "_NL": "end of line", "COLON": "':'"}


def _end_position(text: str) -> tuple[int, int]:
    lines = text.rstrip("\n").split("\n")
    return len(lines), len(lines[-1]) + 1
