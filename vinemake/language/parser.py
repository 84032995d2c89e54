"""Read a Vinefile into a Workflow: the Lark grammar, syntax errors, then evaluation.

This and jxparse.py (JX) are the parser modules, the only ones that import lark. The grammar
(grammar/vinefile.lark) describes lines; a transformer applied during the LALR parse turns each
line into a plain statement (language/statements.py), so no parse tree is ever built;
language/evaluate.py then gives the statements their meaning in file order. Lark's errors are
translated into located messages in the user's words.

Lark is loaded only when a piece of the file needs it: a Vinefile of plain rules (the common
shape, and what a generated workflow writes) is read without it, and loading Lark and the
`regex` module it takes along costs a short run more than its whole parse.
"""

from __future__ import annotations

import functools
import gc
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from vinemake.common.errors import InputError, VinefileError, VinefileErrors, VinemakeError
from vinemake.common.private import private_dir
from vinemake.common.spec import Location, Workflow
from vinemake.language.evaluate import StatementEvaluator, evaluate
from vinemake.language.grammar import grammar_text
from vinemake.language.statements import (
    Annotation,
    Assign,
    BadAssign,
    Directive,
    Export,
    PlainRule,
    Rule,
    SourceText,
    Text,
)

if TYPE_CHECKING:
    from lark import Lark, Token
    from lark.exceptions import UnexpectedInput

__all__ = ["parse_file", "parse_bytes", "parse_text", "grammar_text"]


def _text(token: Token) -> Text:
    return Text(str(token), token.line, token.column)


# The pieces of the HEADER and COMMAND terminals, to take them apart again. These mirror
# _FILETEXT and _TEXT in the grammar (the fuzz tests check the two agree).
_QUOTED = r"""'(?:[^'\n]|\\\n)*'|"(?:[^"\\\n]|\\[\s\S])*"|\\[\s\S]"""
_URLREST = r"""(?:(?<=http)|(?<=https)|(?<=file))://[^\s#"'\\]*"""
_FILEPLAIN = rf"""[^\n#"'\\:]*(?:{_URLREST}[^\n#"'\\:]*)*"""
_FILETEXT = rf"""{_FILEPLAIN}(?:(?:{_QUOTED}){_FILEPLAIN})*"""
_HEADER = re.compile(rf"({_FILETEXT}):({_FILETEXT})[ \t]*(?:#[^\n]*)?\n(?:[ \t]*(?:#[^\n]*)?\n)*")
_CONTENT = re.compile(rf"""[^\n#"'\\]*(?:(?:{_QUOTED})[^\n#"'\\]*)*""")
# A header and command line with nothing to expand, unquote, join or strip a comment from:
# (targets, sources, the command's indent, the command). The header's newline is followed
# directly by the command (as in _COMMAND_LINE, it starts with neither a blank nor `#`).
_PLAIN_RULE = re.compile(
    r"""([^\n#"'\\:$]*):([^\n#"'\\:$]*)\n([ \t]+)([^ \t\n#"'\\$][^\n#"'\\$]*)\n""")


# A plain rule where a statement may start, with the blank and comment lines after it: exactly
# what the lexer takes there as one HEADER_AND_COMMAND token that _PLAIN_RULE matches. No
# terminal of higher priority can match such a line: an ANNOTATION starts with `@`, EXPORT
# with `export` and a blank, ASSIGN and BAD_ASSIGN need a `=` (none here), and DIRECTIVE
# needs a line without `:`. A header line starting with a blank would be a command line.
_FAST_RULE = (r"""(?![ \t@]|export[ \t])([^\n#"'\\:$=]*):([^\n#"'\\:$=]*)\n"""
              r"""([ \t]+)([^ \t\n#"'\\$][^\n#"'\\$]*)\n((?:[ \t]*(?:#[^\n]*)?\n)*)""")
_FAST = re.compile(_FAST_RULE)
_NEXT_FAST = re.compile("(?m)^" + _FAST_RULE)
_BLANK_LINES = re.compile(r"(?:[ \t]*(?:#[^\n]*)?\n)*")  # the grammar's leading _NL
# Segments tried before the rest of the file goes to Lark at once (see _segment).
_SEGMENT_TRIES = 3
_DENSE = 16  # fewer plain rules than this between two segments: the rest goes to Lark


def _shift(text: Text, offset: int, raw: str) -> Text:
    """A Text for `raw`, which starts `offset` characters into `text`."""
    newlines = text.raw.count("\n", 0, offset)
    if not newlines:
        return Text(raw, text.line, text.col + offset)
    return Text(raw, text.line + newlines, offset - text.raw.rfind("\n", 0, offset))


class _Statements:
    """Turns each grammar rule into a statement while the parser reduces it (made a Lark
    Transformer by _new_lark, when Lark is loaded)."""

    def start(self, children):
        return children[0] if children else []

    def lines(self, children):
        if len(children) == 1:
            return children
        statements, line = children
        statements.append(line)
        return statements

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

    def HEADER_AND_COMMAND(self, tok):  # noqa: N802 (Lark names terminal callbacks so)
        # Called when the token is shifted, also under annotations (then `rule` gets this).
        m = _PLAIN_RULE.match(tok)
        if m is not None:
            targets, sources, indent, command = m.groups()
            # tuple.__new__: a NamedTuple's own __new__ is a Python function, called per rule.
            return _tuple_new(PlainRule, (targets, sources, command, tok.line, tok.column,
                                          len(indent) + 1))
        targets, colon, sources, end = _header(tok)
        return Rule((), targets, colon, sources, (), _command(tok, end))

    def rule(self, children):
        i = 0
        while type(children[i]) is Annotation:
            i += 1
        header = children[i]
        if not isinstance(header, str):  # not a Token: a HEADER_AND_COMMAND, a statement
            if type(header) is PlainRule:
                header = header.rule()
            return header._replace(annotations=tuple(children[:i]))
        targets, colon, sources, _ = _header(header)
        return Rule(tuple(children[:i]), targets, colon, sources, tuple(children[i + 1:-1]),
                    _command(children[-1], 0))


_tuple_new = tuple.__new__


def _command(tok: Token, start: int) -> Text:
    """The command line that starts `start` characters into `tok`, without its comment."""
    raw = _CONTENT.match(tok, start).group()
    if not start:
        return Text(raw, tok.line, tok.column)
    return Text(raw, tok.line + tok.count("\n", 0, start), 1)


def _header(tok: Token) -> tuple[Text | None, Text, Text | None, int]:
    """Take a header apart: (targets, the colon, sources, where the next line starts)."""
    m = _HEADER.match(tok)
    targets, sources = m.group(1, 2)
    line, col = tok.line, tok.column
    if "\n" in targets:  # continued lines before the colon
        colon = _shift(Text(targets, line, col), len(targets), ":")
    else:
        colon = Text(":", line, col + len(targets))
    return (Text(targets, line, col) if targets.strip() else None, colon,
            Text(sources, colon.line, colon.col + 1) if sources.strip() else None, m.end())


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    # The transformer is stateless, so one parser serves every parse.
    return _new_lark(grammar_cache(os.environ))


def _new_lark(cache: str | None) -> Lark:
    from lark import Lark, Transformer

    transformer = type("Statements", (_Statements, Transformer), {})()
    return Lark(grammar_text(), parser="lalr", lexer="contextual", transformer=transformer,
                propagate_positions=False, maybe_placeholders=False, cache=cache or False)


def _unexpected() -> type[Exception]:
    """Lark's UnexpectedInput, for an `except` (evaluated only once something was raised)."""
    from lark.exceptions import UnexpectedInput

    return UnexpectedInput


def grammar_cache(environ: Mapping[str, str]) -> str | None:
    """Where Lark may keep the grammar's analysis (saved at every run), or None.

    Lark checks the file against the grammar and its own version before using it, but it
    unpickles it: so only in a directory of the user's own that nobody else can write, never
    the shared temporary directory (Lark's own default).
    """
    base = environ.get("XDG_CACHE_HOME") or (
        os.path.join(environ["HOME"], ".cache") if environ.get("HOME") else None)
    if not base or not os.path.isabs(base):
        return None
    directory = os.path.join(base, "vinemake")
    return os.path.join(directory, "grammar.lark-cache") if private_dir(directory) else None


def parse_text(text: str, path: str = "<string>", environ: Mapping[str, str] | None = None,
               read: dict[str, str | None] | None = None) -> Workflow:
    """Parse and evaluate Vinefile `text`; errors raise VinefileError located in `path`.

    If `read` is given, every environment variable the evaluation looked up goes into it
    with its value (None: unset), for the rules cache's key.
    """
    if environ is None:
        environ = os.environ
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    source = SourceText(path, text)
    body = text if text.endswith("\n") else text + "\n"
    # A big Vinefile makes millions of small objects that all live until the end: the
    # cyclic garbage collector would rescan them over and over, for nothing.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            return _read(body, source, environ, read)
        except (_unexpected(), VinemakeError):
            pass
        # Read again the way that defines the language (the whole file through Lark, then
        # evaluated): so every syntax error is told before any error of meaning, all of
        # them exactly as written in _syntax_errors.
        try:
            statements = _lark().parse(body)
        except _unexpected() as e:
            raise _syntax_errors(e, source, body) from None
        return evaluate(statements, source, environ, read)
    finally:
        if was_enabled:
            gc.enable()


def _read(body: str, source: SourceText, environ: Mapping[str, str],
          read: dict[str, str | None] | None) -> Workflow:
    """Parse and evaluate `body` as one pass: the plain rules that make up almost all of a big
    Vinefile are matched here (_FAST) and evaluated at once, and only the text between them
    goes through Lark. Raises UnexpectedInput or VinemakeError for any error, for the caller
    to read the file again the defining way.

    The same statements come out as from Lark over the whole file: a piece of text that Lark
    parses completely ends where a statement ends, so what follows it starts a statement
    (the lexer's contexts and the LALR state are those of the file's start).
    """
    evaluator = StatementEvaluator(source, environ, read)
    statement = evaluator.statement
    end = len(body)
    pos = _BLANK_LINES.match(body).end()
    line = body.count("\n", 0, pos) + 1
    since = _DENSE  # plain rules since the last segment
    while pos < end:
        pos, line, count = evaluator.plain_rules(_FAST.match, body, pos, line)
        since += count
        if pos >= end:
            break
        stop, statements = _segment(body, pos, since < _DENSE)
        for stmt in statements:
            statement(_moved(stmt, line - 1))
        line += body.count("\n", pos, stop)
        pos = stop
        since = 0
    return evaluator.finish()


def _segment(body: str, pos: int, rest: bool) -> tuple[int, list]:
    """(where they end, the statements) from `pos` up to the start of a later plain rule.

    The text up to the next plain rule may not parse alone (annotations above that rule, or a
    header waiting for its command): then up to the plain rule after it, a few times, and
    after that (or when `rest`) the rest of the file.
    """
    stop = pos
    for _ in range(0 if rest else _SEGMENT_TRIES):
        m = _NEXT_FAST.search(body, stop + 1)
        if m is None:
            break
        stop = m.start()
        try:
            return stop, _lark().parse(body[pos:stop])
        except _unexpected():
            continue
    return len(body), _lark().parse(body[pos:])


def _moved(item, lines: int):
    """A statement parsed from a piece of the file, with its line numbers made the file's."""
    if item is None or not lines:
        return item
    kind = type(item)
    if kind is Text:
        return Text(item.raw, item.line + lines, item.col)
    if kind is PlainRule:
        return item._replace(line=item.line + lines)
    if kind is tuple:
        return tuple(_moved(part, lines) for part in item)
    return kind(*(_moved(part, lines) for part in item))


def parse_file(path: str, environ: Mapping[str, str] | None = None) -> Workflow:
    """Parse the Vinefile at `path`."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from None
    return parse_bytes(data, path, environ)


def parse_bytes(data: bytes, path: str, environ: Mapping[str, str] | None = None,
                read: dict[str, str | None] | None = None) -> Workflow:
    """Parse the contents of the Vinefile at `path`: UTF-8, any line ending (as text mode)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise VinefileError(Location(path, 1, 1), f"not a text file: {e.reason}") from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return parse_text(text, path, environ, read)


# ---- syntax errors in the user's words -------------------------------------------------

MAX_SYNTAX_ERRORS = 20


def _syntax_errors(first: UnexpectedInput, source: SourceText, body: str) -> VinefileError:
    """The first syntax error and those after it, so a Vinefile's typos come out together.

    After each error the parse resumes at a line that can only start a statement (see
    _next_statement), the text before it blanked to newlines (so lines and columns stay
    those of the file). Where that is unsure it skips ahead: an error may go untold, but
    one that cascades from the one before is unlikely.
    """
    errors = [_syntax_error(first, source)]
    while len(errors) <= MAX_SYNTAX_ERRORS:
        start = _next_statement(body, errors[-1].location.line)
        if start is None:
            break
        rest = "\n" * body.count("\n", 0, start) + body[start:]
        try:
            _lark().parse(rest)
            break
        except _unexpected() as e:
            error = _syntax_error(e, SourceText(source.path, rest))
            if error.location.line <= errors[-1].location.line:
                break  # no further on (the end of the file, say): nothing new to tell
            errors.append(error)
    if len(errors) == 1:
        return errors[0]
    untold = ""
    if len(errors) > MAX_SYNTAX_ERRORS:
        errors = errors[:MAX_SYNTAX_ERRORS]
        untold = f"(stopped after {MAX_SYNTAX_ERRORS} syntax errors)"
    return VinefileErrors(errors, untold)


def _next_statement(body: str, after_line: int) -> int | None:
    """Where the parse may resume after an error on line `after_line` (1-based): the first
    later line that starts a statement (not indented, not a comment) and comes after a blank
    or indented line, comments aside. A line straight after a header may be the rule's own
    assignment or directive before its command, which alone would not parse; a line after a
    trailing backslash continues the one before."""
    resumable = continued = False
    offset = 0
    for number, line in enumerate(body.split("\n"), start=1):
        if (number > after_line and resumable and not continued
                and line[:1] not in ("", " ", "\t", "#")):
            return offset
        if not continued and not line.startswith("#"):
            resumable = not line.strip() or line[:1] in (" ", "\t")
        continued = line.endswith("\\")
        offset += len(line) + 1
    return None

def _syntax_error(e: UnexpectedInput, source: SourceText) -> VinefileError:
    from lark.exceptions import UnexpectedToken

    text = source.text
    pos = min(e.pos_in_stream or 0, len(text))
    start = text.rfind("\n", 0, pos) + 1
    line = text.count("\n", 0, start) + 1
    quote_at, end = _scan_line(text, start)
    if quote_at is not None:
        # Lexing stops at a quote that never closes, whatever was expected there.
        return source.error(line, quote_at - start + 1,
                            f"unbalanced quote: this {text[quote_at]} is never closed")
    token = getattr(e, "token", None)
    if token is None or (token.type in ("VALUE", "ARGUMENTS") and pos == start):
        # Nothing that may start a line matches it.
        if text[pos: pos + 1] not in (" ", "\t") and pos == start:
            col = len(text[start:end].rstrip(" \t")) + 1
            return source.error(line, col, "expected ':' after the targets of a rule "
                                           "(or '=' for an assignment)")
        return source.error(line, pos - start + 1, f"unexpected {text[pos: pos + 1]!r}")
    assert isinstance(e, UnexpectedToken)
    expected = set(e.expected)
    line, col = e.line, e.column
    if token.type == "$END":
        line, col = _end_position(text)
    if "COMMAND" in expected:
        message = "expected a command line (indented with a tab or space) for the rule above"
    elif token.type == "COMMAND":
        previous = getattr((e.token_history or [None])[-1], "type", None)
        message = ("a rule has exactly one command line: join lines with a trailing '\\' "
                   "or start a new rule" if previous in ("COMMAND", "HEADER_AND_COMMAND") else
                   "a command line (indented with a tab or space) must follow a rule header")
    elif "HEADER" in expected and "ASSIGN" not in expected:
        message = "an annotation must be directly followed by a rule header"
    else:
        message = f"unexpected {_WORDS.get(token.type, 'text')}"
    return source.error(line, col, message)


_WORDS = {"$END": "end of file", "_NL": "end of line"}


def _scan_line(text: str, i: int) -> tuple[int | None, int]:
    """(offset of an unclosed quote or None, offset where the line's content ends)."""
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in "\n#":
            return None, i
        if ch == "\\":
            i += 2
            continue
        if ch in "'\"":
            close = i + 1
            while close < n and text[close] != ch and text[close] != "\n":
                close += 2 if ch == '"' and text[close] == "\\" else 1
            if close >= n or text[close] != ch:
                return i, i
            i = close
        i += 1
    return None, n


def _end_position(text: str) -> tuple[int, int]:
    """Just after the last line that is not blank or a comment: where a line is missing."""
    lines = text.split("\n")
    n = len(lines)
    while n > 1 and lines[n - 1].strip()[:1] in ("", "#"):
        n -= 1
    return n, len(lines[n - 1].rstrip()) + 1
