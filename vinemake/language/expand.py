"""Variable expansion and quote-aware word splitting of Vinefile text (no I/O, no lark).

Expansion rules (LANGUAGE.md §1), as cctools makeflow's lexer reads text:
- `$NAME`, `$(NAME)`, `${NAME}` are replaced eagerly by the value found through `lookup`;
  the inserted text is not expanded again (the value was expanded when it was assigned).
- Inside single quotes nothing expands; inside double quotes `$` expands. Quotes are kept:
  commands and values reach /bin/sh with their quotes.
- `\\` + newline (a continued line) becomes one space, swallowing the blanks around it.
- In commands and values (mode COMMAND, VALUE) a backslash escapes the next character and is
  removed, whatever that character is and inside quotes too, as Makeflow's lexer does:
  `\\$` is a `$` vinemake does not expand (so /bin/sh expands it where the command runs),
  `\\\\` one backslash, `\\"` a quote character that does not end a quoted string. So
  `echo "{\\\\"k\\\\": 1}"` gives /bin/sh `echo "{\\"k\\": 1}"`, which prints
  `{"k": 1}`. Inside double quotes, and in a value outside quotes, `\\n \\t \\r \\a
  \\b \\f \\v` are the control characters (Makeflow's escapes).
- In a command, a value inserted outside quotes is read once more the same way (its
  backslashes and quotes, not its `$`): Makeflow reads it again as command text.
- In file lists, directives and annotations (mode WORDS) backslashes are kept for the word
  splitting that follows (split_words removes them as /bin/sh would); `\\$` is `$`.
- `$$` is an error (Make's escape for `$` is not Makeflow's); so are Make's automatic
  variables `$@ $< $^`, which the compatible subset does not have. A `$` followed by anything
  else (`$1`, `$?`, a blank) is left alone for the shell.

Errors are raised as ExpandError with an offset into the raw text; the parser turns that
offset into a line and column.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["ExpandError", "expand", "split_words", "split_files", "scan_words"]

# The characters that need the slow path; text without them expands to itself.
_SPECIAL = re.compile(r"[$\\'\"]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CLOSE = {"(": ")", "{": "}"}
_AUTOMATIC = "@<^"


class ExpandError(Exception):
    """A problem at `offset` in the raw text being expanded or split."""

    def __init__(self, offset: int, message: str):
        super().__init__(message)
        self.offset = offset
        self.message = message


Lookup = Callable[[str], "str | None"]


WORDS, VALUE, COMMAND = "words", "value", "command"
# Makeflow's escapes for control characters (inside double quotes, and in values).
_CONTROL = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def expand(raw: str, lookup: Lookup, mode: str = WORDS) -> str:
    """Expand variables in `raw` and join continued lines; quotes are kept, backslashes as
    `mode` says (WORDS, VALUE or COMMAND: see the module's docstring)."""
    if _SPECIAL.search(raw) is None:
        return raw
    out: list[str] = []
    pos, end = 0, len(raw)
    quote = ""  # the quote character we are inside, if any
    while pos < end:
        m = _SPECIAL.search(raw, pos)
        if m is None:
            out.append(raw[pos:])
            break
        i = m.start()
        out.append(raw[pos:i])
        ch = raw[i]
        if ch == "\\":
            pos = _escape(raw, i, out, mode, quote)
        elif quote == "'":
            # Inside single quotes only the closing quote and escapes matter.
            if ch == "'":
                quote = ""
            out.append(ch)
            pos = i + 1
        elif ch in "'\"":
            if not quote:
                quote = ch
            elif quote == ch:
                quote = ""
            out.append(ch)
            pos = i + 1
        elif mode == _REREAD:
            out.append(ch)  # an inserted value's `$` is not expanded again
            pos = i + 1
        else:
            start = len(out)
            pos = _variable(raw, i, lookup, out)
            if mode == COMMAND and not quote and len(out) > start:
                out[start:] = [unescape("".join(out[start:]))]
    return "".join(out)


def unescape(text: str) -> str:
    """Read `text` as Makeflow reads a command, without expanding anything: each escaping
    backslash removed (Makeflow's control escapes inside double quotes), quotes kept."""
    return expand(text, _no_variables, _REREAD) if "\\" in text else text


_REREAD = "reread"  # COMMAND, for text already expanded


def _no_variables(name: str) -> None:
    return None


def _escape(raw: str, i: int, out: list[str], mode: str, quote: str) -> int:
    """Copy the escape at raw[i] to `out`; return the offset after it."""
    nxt = raw[i + 1: i + 2]
    if nxt == "\n":
        _join_lines(out)
        j = i + 2
        while j < len(raw) and raw[j] in " \t":
            j += 1
        return j
    if nxt == "$":
        out.append("$")
        return i + 2
    if quote == "'" and nxt == "'":
        # A single-quoted string ends at its quote, backslash or not (as the grammar reads it).
        out.append("\\")
        return i + 1
    if mode == WORDS or not nxt:
        out.append(raw[i: i + 2])
        return i + 2
    if nxt in _CONTROL and (quote == '"' or (mode == VALUE and not quote)):
        out.append(_CONTROL[nxt])
    else:
        out.append(nxt)
    return i + 2


def _join_lines(out: list[str]) -> None:
    """Replace the blanks at the end of `out` with one space (the continued line's joint)."""
    while out:
        last = out[-1].rstrip(" \t")
        if last:
            out[-1] = last
            break
        out.pop()
    out.append(" ")


def _variable(raw: str, i: int, lookup: Lookup, out: list[str]) -> int:
    """Expand the variable reference starting with the `$` at raw[i]; return the next offset."""
    nxt = raw[i + 1: i + 2]
    if nxt == "$":
        raise ExpandError(i, "'$$' is not supported: write '\\$' to pass a '$' to the shell")
    if nxt and nxt in _AUTOMATIC:
        raise ExpandError(i, f"'${nxt}' (a make automatic variable) is not supported: "
                             "name the files explicitly")
    if nxt in _CLOSE:
        close = raw.find(_CLOSE[nxt], i + 2)
        name = raw[i + 2: close] if close >= 0 else ""
        if close < 0 or _NAME.fullmatch(name) is None:
            raise ExpandError(i, f"bad variable reference: expected a name and "
                                 f"'{_CLOSE[nxt]}' after '${nxt}'")
        after = close + 1
    else:
        m = _NAME.match(raw, i + 1)
        if m is None:
            out.append("$")  # `$1`, `$?`, a lone `$`: the shell's business
            return i + 1
        name, after = m.group(), m.end()
    value = lookup(name)
    if value is None:
        raise ExpandError(i, f"undefined variable '{name}'")
    out.append(value)
    return after


def split_words(text: str) -> list[str]:
    """Split expanded text into words like /bin/sh: blanks separate, quotes and `\\` removed."""
    if _SPECIAL.search(text) is None:
        return text.split()
    return [word for word, _ in scan_words(text, arrows=False)]


def split_files(text: str) -> list[tuple[str, str]]:
    """Split an expanded file list into (path, sandbox name) pairs; `a->b` renames `a` to `b`.

    Spaces around `->` are allowed; a quoted `->` is part of a name, and a `-` not followed by
    `>` is an ordinary character.
    """
    if "->" not in text:
        return [(w, w) for w in split_words(text)]
    items = scan_words(text, arrows=True)
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(items):
        word, offset = items[i]
        if word is None:
            raise ExpandError(offset, "expected a file name before '->'")
        if i + 1 < len(items) and items[i + 1][0] is None:
            if i + 2 >= len(items) or items[i + 2][0] is None:
                raise ExpandError(items[i + 1][1], "expected a file name after '->'")
            pairs.append((word, items[i + 2][0]))
            i += 3
        else:
            pairs.append((word, word))
            i += 1
    return pairs


def scan_words(text: str, arrows: bool = False) -> list[tuple[str | None, int]]:
    """Words of `text` with their offsets; an unquoted `->` is the item (None, offset)."""
    items: list[tuple[str | None, int]] = []
    word: list[str] = []
    start = -1
    quote = ""
    i, end = 0, len(text)
    while i < end:
        ch = text[i]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == "\\" and quote == '"' and i + 1 < end and text[i + 1] in '"\\$`':
                i += 1
                word.append(text[i])
            else:
                word.append(ch)
        elif ch in " \t\n":
            if start >= 0:
                items.append(("".join(word), start))
                word, start = [], -1
        elif arrows and ch == "-" and text.startswith("->", i):
            if start >= 0:
                items.append(("".join(word), start))
                word, start = [], -1
            items.append((None, i))
            i += 1
        else:
            if start < 0:
                start = i
            if ch in "'\"":
                quote = ch
            elif ch == "\\" and i + 1 < end:
                i += 1
                word.append(text[i])
            else:
                word.append(ch)
        i += 1
    if quote:
        raise ExpandError(start, "unbalanced quote")
    if start >= 0:
        items.append(("".join(word), start))
    return items
