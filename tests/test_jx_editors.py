"""JX highlighting in every editor, run for real: VS Code's TextMate grammar, Vim and Pygments.

The fixtures tests/editor/syntax/*.jx and tests/editor/invalid/*.jx carry `^^^ scope`
assertions (they are `#` comments, so a fixture is a JX file itself). vscode-tmgrammar-test
checks them against grammar/jx.tmLanguage.json through the extension's package.json; a
headless Vim (tests/editor/syndump.vim) and the Pygments lexer are held to the same assertions,
translated to Vim groups (JX_GROUPS) and tokens (JX_TOKENS). Removing any rule of any of the
three must break some assertion. Every reserved word, key and built-in of
vinemake/language/keywords.py is highlighted as its kind by each, and no editor names a word
keywords.py lacks. The workflows in docs/ and the JX of tests/test_jx_equivalence.py get no
invalid mark, and broken or unfinished input neither hangs nor crashes any of them.

Needs node with `npm ci --prefix tests/editor`, and vim: missing ones skip outside CI and fail
under CI=true.
"""

from __future__ import annotations

import json
import re
import subprocess
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
    Whitespace,
)
from test_editor_keywords import run_word_fixture, tm_patterns, vim_patterns, words_in_patterns
from test_jx_docs import fences
from test_jx_equivalence import PAIRS
from test_jx_errors import CASES
from test_jx_functions import DOCUMENTED, FUNCTIONS, SOURCE_BEHAVIOUR
from test_lexer import fixture_failures, lexer_survivors
from test_tmgrammar import (  # noqa: F401  (node is a fixture)
    EDITOR,
    EXTENSION,
    contributed,
    mutant_survivors,
    node,
    run_tmgrammar,
    source_of,
)
from test_vim_syntax import PLUGIN, required_groups, vim_dump, vim_failures, vim_survivors

from vinemake.common.errors import VinefileError
from vinemake.editors.jxlexer import JxLexer
from vinemake.language import keywords
from vinemake.language.jxworkflow import parse_jx_workflow

ROOT = Path(__file__).resolve().parent.parent
GRAMMAR = ROOT / "grammar" / "jx.tmLanguage.json"
VIM_SYNTAX = PLUGIN / "syntax" / "jx.vim"
LARK = ROOT / "grammar" / "jx.lark"
VALID = sorted((EDITOR / "syntax").glob("*.jx"))
INVALID = sorted((EDITOR / "invalid").glob("*.jx"))
FIXTURES = VALID + INVALID
# Real JX: every JX block of the docs, every workflow of the equivalence tests, every
# expression of the function and operator tests (cctools' reference's examples among them).
REAL_JX = ([text for text, _ in fences("jx")] + [jx for _, jx in PAIRS.values()]
           + [text for text, _ in DOCUMENTED + SOURCE_BEHAVIOUR + FUNCTIONS])
# Broken and unfinished input, as it is while being typed, and every mistake of the error tests.
BROKEN = [case[1] for case in CASES] + [
    '{"command": "echo', '{"rules": [', '"\\', "}}}]]]", "format(", '"a" : : :', "\\u", "#", "",
    '"x\\u12"', '{"é": "ü", "ключ": 1}', "[1 for", "a.", "a..b()", "1e", ".e5",
    '"' + "\\" * 301, "[" * 300 + "]" * 299, '{"a": 1' * 50, "\t\v\f", "\0"]

# TextMate scope (without `.jx`) → the Vim groups that stand for it (longest listed prefix).
JX_GROUPS = {
    "comment": {"jxComment"},
    "punctuation.definition.comment": {"jxComment"},
    "string.quoted": {"jxString", "jxKey"},
    "punctuation.definition.string": {"jxString", "jxKey"},
    "constant.character.escape": {"jxEscape"},
    "keyword.other.key": {"jxKey"},
    "constant.numeric": {"jxNumber"},
    "constant.language": {"jxConstant"},
    "keyword.control.comprehension": {"jxClause"},
    "keyword.operator.word": {"jxWordOperator"},
    "keyword.operator.logical": {"jxOperator"},
    "keyword.operator.comparison": {"jxOperator"},
    "keyword.operator.arithmetic": {"jxOperator"},
    "support.function.builtin": {"jxBuiltin"},
    "variable.other": {"jxName"},
    "punctuation.separator": {"jxDelimiter"},
    "punctuation.accessor": {"jxDelimiter"},
    "punctuation.section": {"jxDelimiter"},
    "invalid.illegal.character": {"jxError"},
    "invalid.illegal.function": {"jxCallError"},
}
# TextMate scope (without `.jx`) → the Pygments token that stands for it.
JX_TOKENS = {
    "comment": Comment.Single,
    "punctuation.definition.comment": Comment.Single,
    "string.quoted": String.Double,
    "punctuation.definition.string": String.Double,
    "constant.character.escape": String.Escape,
    "keyword.other.key": Keyword.Reserved,
    "constant.numeric": Number,
    "constant.language": Keyword.Constant,
    "keyword.control.comprehension": Keyword,
    "keyword.operator.word": Operator.Word,
    "keyword.operator": Operator,
    "support.function.builtin": Name.Builtin,
    "variable.other": Name.Variable,
    "punctuation": Punctuation,
    "invalid": Error,
}


def keyword_lines() -> list[tuple[str, str, str]]:
    """(JX line, word in it, the scope it must get) for every JX word of keywords.py."""
    lines = [(f'{{"{key}": 1}}', key, "keyword.other.key.jx") for key in keywords.JX_KEYS]
    lines += [(f"[{name}(1), x.{name}()]", name, "support.function.builtin.jx")
              for name in keywords.JX_FUNCTIONS]
    lines += [(f"[{word}]", word, "constant.language.jx") for word in keywords.JX_CONSTANTS]
    lines += [("[x for y in z if x]", word, "keyword.control.comprehension.jx")
              for word in keywords.JX_CLAUSES]
    lines += [(f"[a {word} b]" if word != "not" else "[not a]", word, "keyword.operator.word.jx")
              for word in keywords.JX_WORD_OPERATORS]
    return lines


def word_at(line: str, word: str) -> int:
    return re.search(r"(?<![\w-])" + re.escape(word) + r"(?![\w-])", line).start()


ALL_WORDS = {w for _, word, _ in keyword_lines()
             for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]+", word)}


def tokenize(node: str, tmp_path: Path, texts: list[str]) -> list:  # noqa: F811
    files = []
    for i, text in enumerate(texts):
        files.append(tmp_path / f"t{i}.jx")
        files[-1].write_text(text)
    result = subprocess.run([node, str(EDITOR / "tokens.js"), str(GRAMMAR), *map(str, files)],
                            cwd=EDITOR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    return [report[str(f)] for f in files]


# ---- VS Code ------------------------------------------------------------------------------

def test_extension_registers_jx_files_with_its_grammar_and_comments():
    language = contributed("languages", "jx")
    assert (language["extensions"], language["aliases"]) == ([".jx"], ["JX", "jx"])
    config = json.loads((EXTENSION / language["configuration"]).read_text())
    assert config["comments"] == {"lineComment": "#"}
    grammar = contributed("grammars", "jx")
    assert (EXTENSION / grammar["path"]).resolve() == GRAMMAR
    assert (EXTENSION / "syntaxes" / "jx.tmLanguage.json").resolve() == GRAMMAR
    assert grammar["scopeName"] == json.loads(GRAMMAR.read_text())["scopeName"] == "source.jx"
    package = json.loads((EXTENSION / "package.json").read_text())
    assert {language["configuration"][2:], grammar["path"][2:]} <= set(package["files"])


def test_extension_grammar_passes_every_jx_fixture(node):  # noqa: F811
    result = run_tmgrammar(node, "--config", str(EXTENSION / "package.json"), *map(str, FIXTURES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("run successfuly") == len(FIXTURES)


def test_jx_fixtures_hold_positive_and_negative_assertions():
    for fixture in FIXTURES:
        text = fixture.read_text()
        assert text.startswith('# SYNTAX TEST "source.jx"'), fixture.name
        assert re.search(r"^#\s*(\^|<-).* - ", text, re.M), f"{fixture.name}: no negative"


@pytest.mark.parametrize("fixture", VALID, ids=lambda p: p.name)
def test_valid_jx_fixture_is_a_workflow_vinemake_reads(fixture):
    assert parse_jx_workflow(source_of(fixture), str(fixture), environ={}).rules


@pytest.mark.parametrize("fixture", INVALID, ids=lambda p: p.name)
def test_every_jx_line_marked_invalid_is_refused_by_the_reader(fixture):
    lines = [line for line in source_of(fixture).splitlines() if line and line[0] != "#"]
    assert len(lines) == 9
    for line in lines:
        workflow = '{"rules": [{"command": "true", "outputs": ["o"]}], "x": [' + line + "]}"
        with pytest.raises(VinefileError):
            parse_jx_workflow(workflow, "invalid.jx", environ={})


def test_every_jx_rule_and_scope_is_needed_by_some_assertion(node, tmp_path):  # noqa: F811
    survivors, count = mutant_survivors(node, GRAMMAR, FIXTURES, tmp_path)
    assert survivors == [], f"rules no assertion needs: {survivors}"
    assert count > 30


def test_real_workflows_get_no_invalid_scope(node, tmp_path):  # noqa: F811
    assert len(REAL_JX) > 100
    invalid = [(n, line, token) for n, lines in enumerate(tokenize(node, tmp_path, REAL_JX))
               for line, tokens in enumerate(lines) for token in tokens
               if any(scope.startswith("invalid") for scope in token[2:])]
    assert invalid == []


def test_broken_input_is_tokenized_whole_and_in_time(node, tmp_path):  # noqa: F811
    for text, lines in zip(BROKEN, tokenize(node, tmp_path, BROKEN), strict=True):
        assert lines != "timeout", text[:40]
        for line, tokens in zip(text.split("\n"), lines, strict=True):
            assert tokens[0][0] == 0 and tokens[-1][1] >= len(line), text[:40]
            assert all(a[1] == b[0] for a, b in zip(tokens, tokens[1:], strict=False)), text[:40]


def test_an_unfinished_string_runs_to_the_end_and_a_stray_brace_is_no_error(node, tmp_path):  # noqa: F811
    unfinished, stray = tokenize(node, tmp_path, ['{"command": "echo\n  more', "}}]"])
    assert [token[2:] for token in unfinished[1]] == [["source.jx", "string.quoted.double.jx"]]
    assert [token[2:] for token in stray[0]] == [
        ["source.jx", "punctuation.section.braces.jx"]] * 2 + [
        ["source.jx", "punctuation.section.brackets.jx"]]


def test_vscode_highlights_every_jx_word(node, tmp_path):  # noqa: F811
    assert run_word_fixture(node, GRAMMAR, keyword_lines(), word_at, tmp_path) == ""


def test_textmate_grammar_names_no_word_keywords_py_lacks():
    assert words_in_patterns(tm_patterns(json.loads(GRAMMAR.read_text()))) == ALL_WORDS


# ---- Vim ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,filetype", [("book.jx", "jx"), ("flow.json", "json")])
def test_jx_files_get_the_filetype_and_its_settings(name, filetype, tmp_path):
    options, _ = vim_dump('{"rules": []}\n', name, tmp_path)
    if filetype == "jx":
        assert options == "filetype=jx commentstring=# %s expandtab=1 syntax=jx"
    else:
        assert options.split()[0] == "filetype=json"


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_vim_groups_agree_with_the_jx_fixture_assertions(fixture, tmp_path):
    assert vim_failures(fixture, "fixture.jx", JX_GROUPS, tmp_path) == []


def test_every_jx_vim_syntax_statement_is_needed(tmp_path):
    assert vim_survivors(VIM_SYNTAX, FIXTURES, "fixtures.jx", JX_GROUPS, tmp_path) == []


def test_vim_marks_nothing_wrong_in_real_workflows_and_survives_broken_input(tmp_path):
    text = "\n".join(REAL_JX + BROKEN)
    _, items = vim_dump(text, "all.jx", tmp_path)
    lines = text.split("\n")
    wrong = {(n, lines[n]) for n, line in enumerate(items[:len("\n".join(REAL_JX).split("\n"))])
             for here in line if here & {"jxError", "jxCallError"}}
    assert wrong == set()
    assert len(items) >= len(lines)


def test_vim_highlights_every_jx_word(tmp_path):
    lines = keyword_lines()
    _, items = vim_dump("\n".join(line for line, _, _ in lines) + "\n", "k.jx", tmp_path)
    wrong = [(line, word) for n, (line, word, scope) in enumerate(lines)
             for col in range(word_at(line, word), word_at(line, word) + len(word))
             if not required_groups(scope, JX_GROUPS) & items[n][col]]
    assert wrong == []


def test_vim_syntax_names_no_word_keywords_py_lacks():
    patterns, keyword_words = vim_patterns(VIM_SYNTAX.read_text())
    assert words_in_patterns(patterns) | keyword_words == ALL_WORDS


# ---- Pygments -----------------------------------------------------------------------------

def jx_lex(text: str) -> list[tuple]:
    return [(kind, value) for kind, value in JxLexer().get_tokens(text) if kind not in Whitespace]


def test_jx_lexer_found_by_name_and_file_name_through_the_entry_point():
    assert isinstance(get_lexer_by_name("jx"), JxLexer)
    assert isinstance(get_lexer_for_filename("x/book.jx"), JxLexer)


def test_jx_lexer_tokens_of_a_rule():
    assert jx_lex('{"command": format("%d", n) for n in range(2)}  # two\n') == [
        (Punctuation, "{"), (String.Double, '"'), (Keyword.Reserved, "command"),
        (String.Double, '"'), (Punctuation, ":"), (Name.Builtin, "format"),
        (Punctuation, "("), (String.Double, '"'), (String.Double, "%d"),
        (String.Double, '"'), (Punctuation, ","), (Name.Variable, "n"), (Punctuation, ")"),
        (Keyword, "for"), (Name.Variable, "n"), (Keyword, "in"), (Name.Builtin, "range"),
        (Punctuation, "("), (Number, "2"), (Punctuation, ")"), (Punctuation, "}"),
        (Comment.Single, "# two")]


def test_jx_lexer_operators_constants_and_escapes():
    assert jx_lex('not a && b != null or "\\t\\u0041"\n') == [
        (Operator.Word, "not"), (Name.Variable, "a"), (Operator, "&&"), (Name.Variable, "b"),
        (Operator, "!="), (Keyword.Constant, "null"), (Operator.Word, "or"),
        (String.Double, '"'), (String.Escape, "\\t"), (String.Escape, "\\u0041"),
        (String.Double, '"')]


def test_what_the_jx_reader_refuses_is_an_error_token():
    source = [line for line in source_of(INVALID[0]).splitlines() if line[:1] != "#"]
    errors = [[v for kind, v in jx_lex(line + "\n") if kind in Error] for line in source]
    assert errors == [["="], ["&"], ["|"], ["'", "'"], [";"], ["$"], ["@"], ["fromat"],
                      ["jion"]]


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_jx_tokens_agree_with_the_fixture_assertions(fixture):
    assert fixture_failures(JxLexer, fixture, JX_TOKENS) == []


def test_every_jx_lexer_rule_is_needed():
    assert lexer_survivors(JxLexer, FIXTURES, REAL_JX, JX_TOKENS) == []


def test_jx_lexer_is_lossless_and_quiet_on_real_workflows_and_survives_broken_input():
    for text in REAL_JX + BROKEN:
        tokens = list(JxLexer().get_tokens(text))
        assert "".join(v for _, v in tokens).rstrip("\n") == text.rstrip("\n")
        if text in REAL_JX:
            assert [v for kind, v in tokens if kind in Error] == []


def test_pygments_highlights_every_jx_word():
    for line, word, scope in keyword_lines():
        col = word_at(line, word)
        kinds = {kind for start, kind, value in JxLexer().get_tokens_unprocessed(line + "\n")
                 if start <= col < start + len(value)}
        assert kinds == {JX_TOKENS[scope.removesuffix(".jx")]}, (line, word, kinds)


# ---- the reader's own word lists ----------------------------------------------------------

def test_jx_lark_reserved_words_are_those_of_keywords_py():
    words = set(re.findall(r'^[A-Z_]+: "([a-z]+)"$', LARK.read_text(), re.M))
    assert words == set(keywords.JX_CONSTANTS + keywords.JX_CLAUSES + keywords.JX_WORD_OPERATORS)


def test_every_jx_word_is_in_the_generated_lines():
    words = {word for _, word, _ in keyword_lines()}
    assert words == set(keywords.JX_KEYS + keywords.JX_FUNCTIONS + keywords.JX_CONSTANTS
                        + keywords.JX_CLAUSES + keywords.JX_WORD_OPERATORS)
