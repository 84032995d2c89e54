"""Pygments lexer for Vinefiles and Makeflow files (`pygmentize -l vinefile`, Sphinx, mkdocs).

The lexer follows the line structure of grammar/vinefile.lark: a line starting with a TAB or
SPACE is a command, any other line is a comment, directive, assignment, annotation, `export` or
a rule header; a backslash at the end of a line continues it. The reserved words come from
vinemake/keywords.py, so the lexer cannot drift from the parser's list. What the parser would
reject (an unknown directive, annotation or annotation key, `$$`, `-=`, a word where a directive
or annotation wants a number) comes out as Error.

No state has a rule for the newline that ends its line: at a newline no rule takes, Pygments
emits it and resets to the root state, which is exactly how every construct ends here (a
backslash-newline is taken, by the `expansion` rules, and so continues the construct).

Token choices (tests/test_lexer.py pins them):
    assignment name Name.Variable (Name.Builtin for CATEGORY, CORES, ...), `=` / `+=` Operator
    `$X` `$(X)` `${X}`  String.Interpol       `\\$` and other escapes  String.Escape
    line continuation   Punctuation.Continuation
    rule targets        Name.Function         rule sources  Name.Other
    a URL source        String.Other
    `:`                 Punctuation           `->`          Operator
    `.MAKEFLOW` `.SIZE` Keyword.Reserved      their words   Name.Constant (modes Keyword.Constant)
    `@annotation`       Name.Decorator        its keys      Name.Attribute
    `@environment FILE` FILE as a source (Name.Other)
    `export`            Keyword.Declaration   LOCAL/MAKEFLOW command prefix  Keyword
"""

from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, include
from pygments.token import (
    Comment,
    Error,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Text,
    Whitespace,
)

from vinemake.language import keywords

__all__ = ["VinefileLexer"]

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_NUMBER = r"(?<![\w.])\d+(?:\.\d+)?(?:[KMGTPkmgtp]i?[Bb]?|[Bb]|[smh])?\b"
# A lookahead that only changes state must not emit an empty token.
_NOTHING = bygroups()
# A file name in a list: anything but blanks, `:`, quotes, `#`, `\`, the `->` arrow, and a `$`
# that starts an expansion (a `$` before no name is a literal `$`).
_FILE = r"(?:[^\s:\"'$#\\-]|-(?!>)|\$(?![A-Za-z_({$]))+"
# A URL source, up to a blank or its `->` rename (grammar/vinefile.lark's _URLREST).
_URL = r"\b(?:" + "|".join(keywords.URL_SCHEMES) + r")://[^\s#\"'\\]*?(?=->|\s|$)"


def _words(words) -> str:
    return "(" + "|".join(words) + r")\b"


# Annotations whose first word is a name: (its pattern, its token).
_FIRST_WORD = {"library": (_NAME, Name.Namespace), "call": (_NAME, Name.Namespace),
               "environment": (_FILE, Name.Other)}


def _annotation_states() -> dict[str, list]:
    """One state per annotation: its own keys are attributes, any other `key=` is an Error."""
    states: dict[str, list] = {}
    for name, keys in keywords.ANNOTATIONS.items():
        rules: list = []
        if keys:
            rules.append((r"\b" + _words(keys), Name.Attribute))
        rules.append(include("annotation-arguments"))
        states[f"annotation-{name}"] = rules
        if name in _FIRST_WORD:
            # The first word names the library (or the environment's file): the `-name` state
            # takes it, then the arguments.
            word, token = _FIRST_WORD[name]
            states[f"annotation-{name}-name"] = [
                (r"([ \t]+)(" + word + ")", bygroups(Whitespace, token),
                 ("#pop", f"annotation-{name}")),
            ]
    return states


def _annotation_rules() -> list:
    rules: list = []
    for name in keywords.ANNOTATIONS:
        then = f"annotation-{name}-name" if name in _FIRST_WORD else f"annotation-{name}"
        rules.append((r"^(@)(" + name + r")\b", bygroups(Name.Decorator, Name.Decorator), then))
    rules.append((r"^@" + _NAME, Error, "value"))
    return rules


class VinefileLexer(RegexLexer):
    """Vinefiles: Makeflow's classic syntax plus vinemake's `@` annotations."""

    name = "Vinefile"
    aliases = ["vinefile", "makeflow"]
    filenames = ["Vinefile", "*.vine", "Makeflow", "*.makeflow"]
    mimetypes = ["text/x-vinefile"]

    def __init__(self, **options):
        # Keep leading and trailing blank lines: line numbers must match the parser's messages.
        options.setdefault("stripnl", False)
        super().__init__(**options)

    tokens = {
        "root": [
            (r"^[ \t]*#[^\n]*", Comment.Single),
            (r"^(\.MAKEFLOW)\b", Keyword.Reserved, "makeflow-directive"),
            (r"^(\.SIZE)\b", Keyword.Reserved, "size-directive"),
            (r"^\.[A-Za-z_][A-Za-z0-9_]*(?=[ \t#\n]|$)", Error, "value"),
            (r"^(@?)" + _words(keywords.SPECIAL_VARIABLES) + r"([ \t]*)(\+?=)",
             bygroups(Name.Builtin, Name.Builtin, Whitespace, Operator), "value"),
            (r"^(@?)(" + _NAME + r")([ \t]*)(\+?=)",
             bygroups(Name.Variable, Name.Variable, Whitespace, Operator), "value"),
            (r"^@?(?:" + _NAME + r")?[ \t]*(?:[-?:!]=|\+?=)", Error, "value"),
            *_annotation_rules(),
            (r"^(" + keywords.EXPORT + r")\b", Keyword.Declaration, "export"),
            (r"^([ \t]+)" + _words(keywords.COMMAND_PREFIXES), bygroups(Whitespace, Keyword),
             "command"),
            (r"^[ \t]+(?=[^\s])", Whitespace, "command"),
            (r"^(?=[^\s#:])", _NOTHING, "targets"),
            (r":", Punctuation, "sources"),
            (r"[ \t]+", Whitespace),
        ],
        # What may appear in any expanded text: values, file lists, commands.
        "expansion": [
            (r"#[^\n]*", Comment.Single),
            (r'"', String.Double, "double-quoted"),
            (r"'", String.Single, "single-quoted"),
            (r"\\\n", Punctuation.Continuation),
            (r"\\.", String.Escape),
            (r"\$\$", Error),
            (r"\$\(" + _NAME + r"\)|\$\{" + _NAME + r"\}|\$" + _NAME, String.Interpol),
        ],
        "double-quoted": [
            (r'"', String.Double, "#pop"),
            (r"\\[\s\S]", String.Escape),
            (r"\$\(" + _NAME + r"\)|\$\{" + _NAME + r"\}|\$" + _NAME, String.Interpol),
            (r'[^"\\$\n]+|\$', String.Double),
        ],
        "single-quoted": [
            (r"'", String.Single, "#pop"),
            # A backslash-newline inside single quotes still joins lines (vinefile.lark).
            (r"[^'\n\\]+|\\\n|\\", String.Single),
        ],
        "blanks": [
            (r"[ \t]+", Whitespace),
        ],
        "value": [
            include("blanks"),
            include("expansion"),
            (r"[^\s#\"'\\$]+|\$", Text),
        ],
        "command": [
            include("blanks"),
            include("expansion"),
            (r"[^\s#\"'\\$]+|\$", Text),
        ],
        "export": [
            include("blanks"),
            include("expansion"),
            (r"(" + _NAME + r")(=)", bygroups(Name.Variable, Operator), "export-value"),
            (_NAME, Name.Variable),
        ],
        "export-value": [
            (r"(?=[ \t\n])", _NOTHING, "#pop"),
            include("expansion"),
            (r"[^\s#\"'\\$]+|\$", Text),
        ],
        "targets": [
            (r"(?=:)", _NOTHING, "#pop"),
            include("blanks"),
            include("expansion"),
            (r"->", Operator),
            (_FILE, Name.Function),
        ],
        "sources": [
            include("blanks"),
            include("expansion"),
            (r"->", Operator),
            (_URL, String.Other),
            (_FILE, Name.Other),
        ],
        "makeflow-directive": [
            include("blanks"),
            (r"(CATEGORY)([ \t]+)([^\s#]+)", bygroups(Name.Constant, Whitespace, Name.Class),
             ("#pop", "arguments")),
            (_words(w for w in keywords.MAKEFLOW_DIRECTIVES if w != "CATEGORY"), Name.Constant,
             ("#pop", "arguments")),
        ],
        "size-directive": [
            (r"([ \t]+)(" + _FILE + ")", bygroups(Whitespace, Name.Other), ("#pop", "arguments")),
        ],
        "arguments": [
            include("blanks"),
            (_words(keywords.ALLOCATION_MODES), Keyword.Constant),
            (_NUMBER, Number),
            include("expansion"),
        ],
        "annotation-arguments": [
            include("blanks"),
            (r"=", Operator),
            (_NUMBER, Number),
            include("expansion"),
        ],
        **_annotation_states(),
    }
