"""Pygments lexer for Makeflow's JX workflows (`pygmentize -l jx`, Sphinx, mkdocs).

JX is JSON with `#` comments, names, operators, comprehensions and calls (grammar/jx.lark). The
reserved words, the keys a workflow reads and the built-in functions come from
vinemake/language/keywords.py, so the lexer cannot drift from the reader's lists. What the
reader refuses at sight (a character JX has no token for: a lone `=`, `&` or `|`, single
quotes, `;`, `$`, `@`, ...; a call of a function vinemake does not have) comes out as Error.

Token choices (tests/test_jx_editors.py pins them, the same constructs as the TextMate scopes):
    `#` comment         Comment.Single        a string  String.Double, its escapes String.Escape
    a key vinemake reads ("command", "inputs", "cores", ...)  Keyword.Reserved in its quotes
    true false null     Keyword.Constant      for in if  Keyword
    and or not          Operator.Word         && || ! == != < <= > >= + - * / %  Operator
    a built-in's name where it is called      Name.Builtin      another name  Name.Variable
    numbers             Number                , : . [ ] { } ( )  Punctuation
"""

from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups
from pygments.token import (
    Comment,
    Error,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Whitespace,
)

from vinemake.language import keywords

__all__ = ["JxLexer"]

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


def _words(words) -> str:
    return r"\b(?:" + "|".join(words) + r")\b"


class JxLexer(RegexLexer):
    """Makeflow's JX: JSON plus expressions, as vinemake reads it."""

    name = "JX"
    aliases = ["jx"]
    filenames = ["*.jx"]
    mimetypes = ["text/x-jx"]

    def __init__(self, **options):
        # Keep leading and trailing blank lines: line numbers must match the reader's messages.
        options.setdefault("stripnl", False)
        super().__init__(**options)

    tokens = {
        "root": [
            (r"\s+", Whitespace),
            (r"#[^\n]*", Comment.Single),
            (r'(")(' + "|".join(keywords.JX_KEYS) + r')(")(?=\s*:)',
             bygroups(String.Double, Keyword.Reserved, String.Double)),
            (r'"', String.Double, "string"),
            (r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", Number),
            (_words(keywords.JX_CONSTANTS), Keyword.Constant),
            (_words(keywords.JX_CLAUSES), Keyword),
            (_words(keywords.JX_WORD_OPERATORS), Operator.Word),
            (_words(keywords.JX_FUNCTIONS) + r"(?=\s*\()", Name.Builtin),
            (_NAME + r"(?=\s*\()", Error),
            (_NAME, Name.Variable),
            (r"==|!=|<=|>=|<|>|&&|\|\||!|[-+*/%]", Operator),
            (r"[,:.\[\]{}()]", Punctuation),
            # Any other character is taken by no rule: Pygments makes it an Error token.
        ],
        # A string may run over lines; a backslash escapes any character, a newline too.
        "string": [
            (r'"', String.Double, "#pop"),
            (r"\\(?:u[0-9A-Fa-f]{4}|[\s\S])", String.Escape),
            (r'[^"\\]+', String.Double),
        ],
    }

