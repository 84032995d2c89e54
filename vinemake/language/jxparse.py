"""Read JX text into nodes (jxsyntax.py): the Lark grammar grammar/jx.lark and its errors.

This and parser.py are the language's parser modules, the only ones that import lark: the
JX front end is its own module because it shares nothing with the Vinefile's line grammar
but the way errors are shown (statements.SourceText: `path:line:col: message`, the line, a
caret). A transformer applied during the LALR parse makes the nodes, so no parse tree is
built. Lark's errors are put in the user's words: what was found, and what could come there.
"""

from __future__ import annotations

import functools
import os
import re

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from vinemake.common.errors import VinefileError
from vinemake.language.grammar import grammar_text
from vinemake.language.jxsyntax import (
    Array,
    Binary,
    Call,
    Comprehension,
    Const,
    Item,
    Lookup,
    Name,
    Node,
    Object,
    Pair,
    Slice,
    Unary,
    start,
)
from vinemake.language.parser import grammar_cache
from vinemake.language.statements import SourceText

__all__ = ["parse_jx", "decode_string"]


def _at(token: Token) -> tuple[int, int]:
    return (token.line, token.column)


_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_ESCAPE = re.compile(r"\\(u[0-9A-Fa-f]{4}|[\s\S])")


def decode_string(raw: str) -> str:
    """The value of a string literal (quotes included in `raw`): JSON's escapes, and a
    backslash before any other character stands for that character (as cctools reads it)."""
    body = raw[1:-1]
    if "\\" not in body:
        return body

    def one(m: re.Match) -> str:
        s = m.group(1)
        if len(s) == 5:
            return chr(int(s[1:], 16))
        return _ESCAPES.get(s, s)

    return _ESCAPE.sub(one, body)


class _Nodes(Transformer):
    """Makes a node of each grammar rule while the parser reduces it."""

    def start(self, children):
        return children[0]

    def string(self, children):
        tok = children[0]
        return Const(decode_string(str(tok)), _at(tok))

    def number(self, children):
        tok = children[0]
        text = str(tok)
        # Digits alone are an integer (leading zeros allowed, as strtoll reads them).
        value = int(text) if text.isdigit() else float(text)
        return Const(value, _at(tok))

    def true(self, children):
        return Const(True, _at(children[0]))

    def false(self, children):
        return Const(False, _at(children[0]))

    def null(self, children):
        return Const(None, _at(children[0]))

    def name(self, children):
        return Name(str(children[0]), _at(children[0]))

    def array(self, children):
        bracket, items = children
        return Array(items or (), _at(bracket))

    def object(self, children):
        brace, pairs = children
        return Object(pairs or (), _at(brace))

    def items(self, children):
        return tuple(c for c in children if c is not None)

    pairs = items

    def item(self, children):
        value, *clauses = children
        return Item(value, tuple(clauses), start(value))

    def pair(self, children):
        key, _colon, value, *clauses = children
        return Pair(key, value, tuple(clauses), start(key))

    def comprehension(self, children):
        keyword, name, _in, iterable, *rest = children
        condition = rest[1] if rest and rest[0] is not None else None
        return Comprehension(str(name), iterable, condition, _at(keyword))

    def binary(self, children):
        left, op, right = children
        return Binary(str(op), left, right, _at(op))

    def unary(self, children):
        op, operand = children
        if str(op) == "-" and type(operand) is Const and type(operand.value) in (int, float):
            # A negative number is a constant, as in JSON.
            return Const(-operand.value, _at(op))
        return Unary(str(op), operand, _at(op))

    def lookup(self, children):
        target, bracket, index = children
        return Lookup(target, index, _at(bracket))

    def slice(self, children):
        start, colon, stop = children
        return Slice(start, stop, _at(colon))

    def call(self, children):
        name, _paren, args = children
        return Call(str(name), args or (), _at(name))

    def method(self, children):
        target, name, _paren, args = children
        first = Item(target, (), start(target))
        return Call(str(name), (first, *(args or ())), _at(name))


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    # The grammar's analysis is kept beside the Vinefile grammar's, on the same terms.
    vinefile_cache = grammar_cache(os.environ)
    cache = os.path.join(os.path.dirname(vinefile_cache), "jx.lark-cache") \
        if vinefile_cache else False
    return Lark(grammar_text("jx.lark"), parser="lalr", lexer="contextual",
                transformer=_Nodes(), maybe_placeholders=True, cache=cache)


def parse_jx(text: str, path: str, source: SourceText | None = None) -> Node:
    """The expression in `text`; a syntax error raises VinefileError located in `path`
    (shown with the lines of `source` if given, else of `text`)."""
    try:
        return _lark().parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(e, source or SourceText(path, text), text) from None


# ---- syntax errors in the user's words -------------------------------------------------

_WORDS = {
    "$END": "the end of the file", "COMMA": "','", "RSQB": "']'", "RBRACE": "'}'",
    "RPAR": "')'", "COLON": "':'", "LBRACKET": "'['", "LBRACE": "'{'", "LPAREN": "'('",
    "DOT": "'.'", "STRING": "a string", "NUMBER": "a number", "NAME": "a name",
    "TRUE": "true", "FALSE": "false", "NULL": "null", "FOR": "'for'", "IN": "'in'",
    "IF": "'if'", "AND": "'and'", "OR": "'or'", "NOT": "'not'", "C_AND": "'&&'",
    "C_OR": "'||'", "C_NOT": "'!'", "COMPARE": "a comparison", "PLUS": "'+'",
    "MINUS": "'-'", "STAR": "'*'", "SLASH": "'/'", "PERCENT": "'%'",
}
# What may follow a complete value: listed in a message only as "an operator".
_OPERATORS = {"AND", "OR", "C_AND", "C_OR", "COMPARE", "PLUS", "MINUS", "STAR", "SLASH",
              "PERCENT", "LBRACKET", "DOT", "FOR", "IF"}
_VALUE_STARTS = {"STRING", "NUMBER", "NAME", "TRUE", "FALSE", "NULL", "LBRACKET", "LBRACE",
                 "LPAR", "LPAREN", "MINUS", "PLUS", "NOT", "C_NOT"}


def _expected(expected: set[str]) -> str:
    if _VALUE_STARTS & expected and len(expected & _VALUE_STARTS) > 3:
        words = ["a value"]
        rest = expected - _VALUE_STARTS - _OPERATORS
    else:
        words = []
        rest = expected - _OPERATORS
    words += sorted(_WORDS.get(name, name) for name in rest)
    if not words:
        return "an operator"
    return " or ".join(words) if len(words) <= 2 else ", ".join(words[:-1]) + " or " + words[-1]


def _syntax_error(e: UnexpectedInput, source: SourceText, text: str) -> VinefileError:
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream]
        if ch == '"':
            return source.error(e.line, e.column, "unterminated string: this \" is never closed")
        if ch == "'":
            return source.error(e.line, e.column, "strings are written in double quotes (\")")
        if ch == "=":
            return source.error(e.line, e.column, "'=' is not an operator (compare with '==')")
        return source.error(e.line, e.column, f"unexpected character {ch!r}")
    if isinstance(e, UnexpectedEOF):
        line, col = _end(text)
        return source.error(line, col, "unexpected end of file")
    assert isinstance(e, UnexpectedToken)
    token = e.token
    expected = set(e.expected)
    if e.interactive_parser is not None:
        # What the parser really accepts here: LALR states merge their lookaheads.
        expected = set(e.interactive_parser.accepts()) or expected
    if token.type == "$END":
        line, col = _end(text)
        return source.error(line, col, f"unexpected end of file: expected {_expected(expected)}")
    found = f"string {token}" if token.type == "STRING" else repr(str(token))
    return source.error(token.line, token.column,
                        f"unexpected {found}: expected {_expected(expected)}")


def _end(text: str) -> tuple[int, int]:
    """Just after the last character that is not blank: where something is missing."""
    stripped = text.rstrip()
    line = stripped.count("\n") + 1
    return line, len(stripped) - (stripped.rfind("\n") + 1) + 1
