"""The Pygments lexer: one token type per construct, lossless, and no Error on valid input."""

from __future__ import annotations

from pathlib import Path

import pytest
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
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
from test_vim_syntax import assertions, without_language

from vinemake.editors.lexer import VinefileLexer

ROOT = Path(__file__).resolve().parent.parent
SYNTAX = sorted(ROOT.glob("tests/editor/syntax/*.vine"))
VALID = sorted(ROOT.glob("examples/*/Vinefile")) + SYNTAX
INVALID = sorted((ROOT / "tests/editor/invalid").glob("*.vine"))


def lex(text: str) -> list[tuple]:
    """(token type, text) pairs without whitespace; touching tokens of one type are merged."""
    merged: list[list] = []
    touching = False
    for kind, value in VinefileLexer().get_tokens(text):
        if kind in Whitespace:
            touching = False
            continue
        if touching and merged[-1][0] is kind and kind is not Punctuation:
            merged[-1][1] += value
        else:
            merged.append([kind, value])
        touching = True
    return [tuple(pair) for pair in merged]


def test_found_by_name_and_file_name_through_the_entry_point():
    for alias in ("vinefile", "makeflow"):
        assert isinstance(get_lexer_by_name(alias), VinefileLexer)
    for filename in ("Vinefile", "x/pipeline.vine", "Makeflow", "old.makeflow"):
        assert isinstance(get_lexer_for_filename(filename), VinefileLexer)


def test_comment():
    assert lex("# a: b $X\n") == [(Comment.Single, "# a: b $X")]


def test_assignments():
    assert lex("X=1\nY += $(X) # c\n@Z = ${X}\n") == [
        (Name.Variable, "X"), (Operator, "="), (Text, "1"),
        (Name.Variable, "Y"), (Operator, "+="), (String.Interpol, "$(X)"),
        (Comment.Single, "# c"),
        (Name.Variable, "@Z"), (Operator, "="), (String.Interpol, "${X}")]


def test_special_variable_and_value_with_a_colon():
    assert lex("CATEGORY=a:b\n") == [(Name.Builtin, "CATEGORY"), (Operator, "="),
                                     (Text, "a:b")]


def test_export():
    assert lex("export A B=$A\n") == [
        (Keyword.Declaration, "export"), (Name.Variable, "A"),
        (Name.Variable, "B"), (Operator, "="), (String.Interpol, "$A")]


def test_makeflow_directives():
    assert lex(".MAKEFLOW CATEGORY big\n.MAKEFLOW MEMORY 4G\n.MAKEFLOW MODE FIXED\n") == [
        (Keyword.Reserved, ".MAKEFLOW"), (Name.Constant, "CATEGORY"), (Name.Class, "big"),
        (Keyword.Reserved, ".MAKEFLOW"), (Name.Constant, "MEMORY"), (Number, "4G"),
        (Keyword.Reserved, ".MAKEFLOW"), (Name.Constant, "MODE"), (Keyword.Constant, "FIXED")]


def test_size_directive():
    assert lex(".SIZE in.dat 2GB\n") == [
        (Keyword.Reserved, ".SIZE"), (Name.Other, "in.dat"), (Number, "2GB")]


def test_annotations_and_their_keys():
    text = "@resources cores=4 memory=2GB\n@cache forever\n@library ml slots=2\n@call ml\n"
    assert lex(text) == [
        (Name.Decorator, "@resources"), (Name.Attribute, "cores"), (Operator, "="),
        (Number, "4"), (Name.Attribute, "memory"), (Operator, "="), (Number, "2GB"),
        (Name.Decorator, "@cache"), (Name.Attribute, "forever"),
        (Name.Decorator, "@library"), (Name.Namespace, "ml"), (Name.Attribute, "slots"),
        (Operator, "="), (Number, "2"),
        (Name.Decorator, "@call"), (Name.Namespace, "ml")]


def test_a_rule_local_assignment_is_not_an_annotation():
    assert lex("@retries=3\n")[0] == (Name.Variable, "@retries")


def test_rule_targets_sources_colon_and_rename():
    assert lex('a my-b x->y : "C D" $(IN) s -> t\n') == [
        (Name.Function, "a"), (Name.Function, "my-b"), (Name.Function, "x"),
        (Operator, "->"), (Name.Function, "y"), (Punctuation, ":"),
        (String.Double, '"C D"'), (String.Interpol, "$(IN)"), (Name.Other, "s"),
        (Operator, "->"), (Name.Other, "t")]


def test_url_sources_with_and_without_a_rename():
    assert lex("c: https://h.org:8080/w.txt?v=1->w.txt file:///d/x.csv in\n") == [
        (Name.Function, "c"), (Punctuation, ":"),
        (String.Other, "https://h.org:8080/w.txt?v=1"), (Operator, "->"), (Name.Other, "w.txt"),
        (String.Other, "file:///d/x.csv"), (Name.Other, "in")]


def test_rule_header_continued_over_lines():
    assert lex("a \\\n  b : \\\n  c\n") == [
        (Name.Function, "a"), (Punctuation.Continuation, "\\\n"), (Name.Function, "b"),
        (Punctuation, ":"), (Punctuation.Continuation, "\\\n"), (Name.Other, "c")]


def test_command_with_prefix_quotes_escapes_and_comment():
    text = "out:\n\tLOCAL echo \"# $X\" '$Y # z' \\$HOME a:b # done\n"
    assert lex(text)[2:] == [
        (Keyword, "LOCAL"), (Text, "echo"),
        (String.Double, '"# '), (String.Interpol, "$X"), (String.Double, '"'),
        (String.Single, "'$Y # z'"), (String.Escape, "\\$"), (Text, "HOME"), (Text, "a:b"),
        (Comment.Single, "# done")]


def test_makeflow_prefix_only_at_the_start_of_a_command():
    assert lex("out:\n\tMAKEFLOW sub.vine\n\techo LOCAL\n")[2:] == [
        (Keyword, "MAKEFLOW"), (Text, "sub.vine"), (Text, "echo"), (Text, "LOCAL")]


def test_command_continued_over_lines():
    assert lex("out:\n\techo a \\\n\t  b\n")[2:] == [
        (Text, "echo"), (Text, "a"), (Punctuation.Continuation, "\\\n"), (Text, "b")]


@pytest.mark.parametrize("path", VALID + INVALID, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_tokens_rebuild_the_input_exactly(path):
    text = path.read_text()
    assert "".join(value for _, value in VinefileLexer().get_tokens(text)) == text


@pytest.mark.parametrize("path", VALID, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_error_token_in_a_valid_vinefile(path):
    assert [v for kind, v in VinefileLexer().get_tokens(path.read_text()) if kind in Error] == []


def errors_in(line: str) -> list[str]:
    """The Error tokens of `line`, touching ones joined (unlexable text is one per character)."""
    return [v for kind, v in lex(line + "\n") if kind in Error]


def test_what_the_parser_rejects_is_an_error_token():
    source = [line for line in INVALID[0].read_text().splitlines() if not line.startswith("#")]
    assert [errors_in(line) for line in source] == [
        ["COLOUR", "red"], [".WHATEVER"], ["@frobnicate"], ["colour", "red"], ["$$"],
        [".hidden"], ["X -="], ["="]]


def test_a_word_where_a_number_belongs_is_an_error():
    assert errors_in(".MAKEFLOW CORES abc") == ["abc"]
    assert errors_in("@retries x") == ["x"]
    assert errors_in("@resources cores=four") == ["four"]


# TextMate scope (without `.vinefile`) → the Pygments token standing for it; a scope matches
# its longest listed prefix. Meta scopes have no token: Pygments tokens do not nest.
SCOPE_TOKENS = {
    "comment": Comment,
    "punctuation.definition.comment": Comment,
    "variable.other.assignment": Name.Variable,
    "variable.language.special": Name.Builtin,
    "punctuation.definition.variable.rule-local": Name,
    "keyword.operator.assignment": Operator,
    "string.unquoted.value": Text,
    "variable.other.readwrite": String.Interpol,
    "punctuation.definition.variable": String.Interpol,
    "string.quoted": String,
    "punctuation.definition.string": String,
    "constant.character.escape": String.Escape,
    "constant.character.escape.line-continuation": Punctuation.Continuation,
    "invalid": Error,
    "keyword.other.export": Keyword.Declaration,
    "variable.other.export": Name.Variable,
    "keyword.control.directive": Keyword.Reserved,
    "support.constant.directive": Name.Constant,
    "support.constant.mode": Keyword.Constant,
    "entity.name.type.category": Name.Class,
    "string.unquoted.filename": Name.Other,
    "constant.numeric": Number,
    "punctuation.definition.annotation": Name.Decorator,
    "storage.type.annotation": Name.Decorator,
    "entity.other.attribute-name": Name.Attribute,
    "entity.name.namespace.library": Name.Namespace,
    "entity.name.function.target": Name.Function,
    "punctuation.separator.rule": Punctuation,
    "variable.parameter.source": Name.Other,
    "markup.underline.link.url": String.Other,
    "keyword.operator.rename": Operator,
    "keyword.control.prefix": Keyword,
}


def token_for(scope: str, table: dict = SCOPE_TOKENS):
    parts = without_language(scope).split(".")
    if parts[0] == "meta":
        return None
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in table:
            return table[".".join(parts[:end])]
    raise AssertionError(f"no Pygments token stands for scope {scope!r}: add it to SCOPE_TOKENS")


def tokens_excluded_by(scope: str, table: dict = SCOPE_TOKENS) -> list:
    # Plain Text is what unhighlighted text gets, so no exclusion forbids it.
    prefix = without_language(scope)
    return [t for key, t in table.items()
            if (key == prefix or key.startswith(prefix + ".")) and t is not Text]


def token_per_char(lexer_class, text: str) -> list:
    kinds = [None] * len(text)
    for start, kind, value in lexer_class().get_tokens_unprocessed(text):
        kinds[start:start + len(value)] = [kind] * len(value)
    return kinds


def fixture_failures(lexer_class, fixture: Path, table: dict = SCOPE_TOKENS) -> list[str]:
    """Where `lexer_class` contradicts the fixture's assertions (the innermost scope of each)."""
    source, checks = assertions(fixture)
    text = "\n".join(source) + "\n"
    kinds = token_per_char(lexer_class, text)
    starts = [0]
    for line in source:
        starts.append(starts[-1] + len(line) + 1)
    wrong = []
    for line, first, last, scopes, excluded in checks:
        wanted = [t for t in (token_for(s, table) for s in scopes) if t is not None][-1:]
        unwanted = [t for s in excluded for t in tokens_excluded_by(s, table)]
        for col in range(first, last + 1):
            kind = kinds[starts[line] + col]
            if any(kind not in t for t in wanted) or any(kind in t for t in unwanted):
                wrong.append(f"{line + 1}:{col} {source[line]!r}: {kind}")
    if "".join(v for _, v in lexer_class().get_tokens(text)) != text:
        wrong.append("tokens do not rebuild the text")
    return wrong


@pytest.mark.parametrize("fixture", SYNTAX + INVALID, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_tokens_agree_with_the_fixture_assertions(fixture):
    assert fixture_failures(VinefileLexer, fixture) == []


def lexer_survivors(lexer_class, fixtures: list[Path], valid_texts: list[str],
                    table: dict) -> list[str]:
    """Each rule of the lexer dropped in turn: those no fixture assertion needs and whose loss
    puts no Error token into a valid text."""
    survivors = []
    for state, rules in lexer_class.tokens.items():
        for i in range(len(rules)):
            tokens = dict(lexer_class.tokens)
            tokens[state] = rules[:i] + rules[i + 1:]
            mutant = type("Mutant", (lexer_class,), {"tokens": tokens})
            killed = any(fixture_failures(mutant, f, table) for f in fixtures) or any(
                kind in Error for text in valid_texts for kind, _ in mutant().get_tokens(text))
            if not killed:
                survivors.append(f"{state}[{i}]: {rules[i]}")
    return survivors


def test_every_lexer_rule_is_needed():
    assert lexer_survivors(VinefileLexer, SYNTAX + INVALID,
                           [path.read_text() for path in VALID], SCOPE_TOKENS) == []
