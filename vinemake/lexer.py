"""Pygments lexer for Vinefiles and Makeflow files (`pygmentize -l vinefile`, Sphinx, mkdocs).

The lexer follows the line structure of grammar/vinefile.lark: a line starting with a TAB or
SPACE is a command, any other line is a comment, directive, assignment, annotation, `export` or
a rule header; a backslash at the end of a line continues it. The reserved words come from
vinemake/keywords.py, so the lexer cannot drift from the parser's list. What the parser would
reject (an unknown directive, annotation or annotation key, `$$`, `-=`) comes out as Error.

Token choices (tests/test_lexer.py pins them):
    assignment name Name.Variable (Name.Builtin for CATEGORY, CORES, ...), `=` / `+=` Operator
    `$X` `$(X)` `${X}`  String.Interpol       `\\$` and other escapes  String.Escape
    line continuation   Punctuation.Continuation
    rule targets        Name.Function         rule sources  Name.Other
    `:`                 Punctuation           `->`          Operator
    `.MAKEFLOW` `.SIZE` Keyword.Reserved      their words   Name.Constant (modes Keyword.Constant)
    `@annotation`       Name.Decorator        its keys      Name.Attribute
    `export`            Keyword.Declaration   LOCAL/MAKEFLOW command prefix  Keyword
"""

from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, default, include
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

from vinemake import keywords

__all__ = ["VinefileLexer"]

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_NUMBER = r"(?<![\w.])\d+(?:\.\d+)?(?:[KMGTPkmgtp]i?[Bb]?|[Bb]|[smh])?\b"
# A file name in a list: anything but blanks, `:`, quotes, `$`, `#`, `\`, and the `->` arrow.
# A lookahead that only changes state must not emit an empty token.
_NOTHING = bygroups()
_FILE = r"(?:[^\s:\"'$#\\-]|-(?!>))+"


def _words(words) -> str:
    return "(" + "|".join(words) + r")\b"


def _annotation_states() -> dict[str, list]:
    """One state per annotation: its own keys are attributes, any other `key=` is an Error."""
    states: dict[str, list] = {}
    for name, keys in keywords.ANNOTATIONS.items():
        rules: list = []
        if keys:
            rules.append((r"\b" + _words(keys), Name.Attribute))
        rules.append(include("annotation-arguments"))
        states[f"annotation-{name}"] = rules
        if name in ("library", "call"):
            # The first word names the library; a `-names` state sees it before the arguments.
            states[f"annotation-{name}-name"] = [
                (r"([ \t]+)(" + _NAME + ")", bygroups(Whitespace, Name.Namespace),
                 ("#pop", f"annotation-{name}")),
                default(("#pop", f"annotation-{name}")),
            ]
    return states


def _annotation_rules() -> list:
    rules: list = []
    for name in keywords.ANNOTATIONS:
        then = f"annotation-{name}-name" if name in ("library", "call") else f"annotation-{name}"
        rules.append((r"^(@)(" + name + r")\b", bygroups(Name.Decorator, Name.Decorator), then))
    rules.append((r"^@" + _NAME, Error, "value"))
    return rules


class VinefileLexer(RegexLexer):
    """Vinefiles: Makeflow's classic syntax plus vinemake's `@` annotations."""

    name = "Vinefile"
    aliases = ["vinefile", "makeflow"]
    filenames = ["Vinefile", "*.vine", "Makeflow", "*.makeflow"]
    mimetypes = ["text/x-vinefile"]
    url = "https://cctools.readthedocs.io/en/latest/makeflow/"

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
            (r"\n|[ \t]+", Whitespace),
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
            # An unclosed quote ends with its line, as the parser reports it there.
            default("#pop"),
        ],
        "single-quoted": [
            (r"'", String.Single, "#pop"),
            (r"\\\n|[^'\n]+", String.Single),
            default("#pop"),
        ],
        "end-of-line": [
            (r"\n", Whitespace, "#pop"),
            (r"[ \t]+", Whitespace),
        ],
        "value": [
            include("end-of-line"),
            include("expansion"),
            (r"[^\s#\"'\\$]+|\$", Text),
        ],
        "command": [
            include("end-of-line"),
            include("expansion"),
            (r"[^\s#\"'\\$]+|\$", Text),
        ],
        "export": [
            include("end-of-line"),
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
            include("end-of-line"),
            include("expansion"),
            (r"->", Operator),
            (_FILE, Name.Function),
            (r"\$", Name.Function),
        ],
        "sources": [
            include("end-of-line"),
            include("expansion"),
            (r"->", Operator),
            (_FILE, Name.Other),
            (r"[$:]", Name.Other),
        ],
        "makeflow-directive": [
            (r"([ \t]+)(CATEGORY)([ \t]+)([^\s#]+)",
             bygroups(Whitespace, Name.Constant, Whitespace, Name.Class), ("#pop", "arguments")),
            (r"([ \t]+)" + _words(w for w in keywords.MAKEFLOW_DIRECTIVES if w != "CATEGORY"),
             bygroups(Whitespace, Name.Constant), ("#pop", "arguments")),
            (r"([ \t]+)([^\s#]+)", bygroups(Whitespace, Error), ("#pop", "arguments")),
            default(("#pop", "arguments")),
        ],
        "size-directive": [
            (r"([ \t]+)(" + _FILE + ")", bygroups(Whitespace, Name.Other), ("#pop", "arguments")),
            default(("#pop", "arguments")),
        ],
        "arguments": [
            include("end-of-line"),
            (_words(keywords.ALLOCATION_MODES), Keyword.Constant),
            (_NUMBER, Number),
            include("expansion"),
            (r"[^\s#\"'\\$]+|\$", Text),
        ],
        "annotation-arguments": [
            include("end-of-line"),
            (_NAME + r"(?==)", Error),
            (r"=", Operator),
            (_NUMBER, Number),
            include("expansion"),
            (r"[^\s#\"'\\$=]+|\$", Text),
        ],
        **_annotation_states(),
    }
