"""Each editor grammar knows exactly the reserved words of keywords.py and of the Lark grammar.

Two directions. Every word in keywords.py is written into a generated Vinefile and each editor
(VS Code's TextMate grammar, Vim, Pygments) must highlight it as that kind of word; and no
editor grammar may name a word keywords.py does not have. The Lark grammar keeps its reserved
words in keywords.py too (its DIRECTIVE and ANNOTATION terminals are generic): its terminals must
accept every such word, and a new kind of line in it must be taught to the editors here first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from pygments.token import Keyword, Name, String
from test_tmgrammar import node, run_tmgrammar  # noqa: F401  (node is a fixture)
from test_vim_syntax import required_groups, vim_dump

from vinemake.editors.lexer import VinefileLexer
from vinemake.language import keywords

ROOT = Path(__file__).resolve().parent.parent
TM_GRAMMAR = ROOT / "grammar" / "vinefile.tmLanguage.json"
VIM_SYNTAX = ROOT / "grammar" / "vim" / "syntax" / "vinefile.vim"
LARK = ROOT / "grammar" / "vinefile.lark"

DOT_WORDS = {d.lstrip(".") for d in keywords.DOT_DIRECTIVES}
ALL_WORDS = (DOT_WORDS | set(keywords.MAKEFLOW_DIRECTIVES) | set(keywords.ALLOCATION_MODES)
             | set(keywords.ANNOTATIONS) | {k for ks in keywords.ANNOTATIONS.values() for k in ks}
             | set(keywords.COMMAND_PREFIXES) | set(keywords.SPECIAL_VARIABLES)
             | {keywords.EXPORT} | set(keywords.URL_SCHEMES))
# The Lark terminals for the kinds of line the editor grammars tell apart.
LINE_TERMINALS = {"HEADER", "COMMAND", "ASSIGN", "BAD_ASSIGN", "EXPORT", "DIRECTIVE",
                  "ANNOTATION", "VALUE", "ARGUMENTS"}
# Terminals that join kinds of line the editors know (a parser speed-up), no new kind of line.
JOINED_TERMINALS = {"HEADER_AND_COMMAND"}

PYGMENTS_TOKEN = {
    "support.constant.directive.vinefile": Name.Constant,
    "support.constant.mode.vinefile": Keyword.Constant,
    "storage.type.annotation.vinefile": Name.Decorator,
    "entity.other.attribute-name.vinefile": Name.Attribute,
    "variable.language.special.vinefile": Name.Builtin,
    "keyword.control.prefix.vinefile": Keyword,
    "keyword.other.export.vinefile": Keyword.Declaration,
    "keyword.control.directive.vinefile": Keyword.Reserved,
    "markup.underline.link.url.vinefile": String.Other,
}


def keyword_lines() -> list[tuple[str, str, str]]:
    """(line, word in it, the scope it must get) for every reserved word in keywords.py."""
    lines = [(f"{d} x 1", d, "keyword.control.directive.vinefile")
             for d in keywords.DOT_DIRECTIVES]
    lines += [(f".MAKEFLOW {w} 1", w, "support.constant.directive.vinefile")
              for w in keywords.MAKEFLOW_DIRECTIVES]
    lines += [(f".MAKEFLOW MODE {m}", m, "support.constant.mode.vinefile")
              for m in keywords.ALLOCATION_MODES]
    for name, keys in keywords.ANNOTATIONS.items():
        head = f"@{name} lib" if name in ("library", "call") else f"@{name}"
        lines.append((head, name, "storage.type.annotation.vinefile"))
        lines += [(f"{head} {key}=1", key, "entity.other.attribute-name.vinefile")
                  for key in keys]
    lines += [(f"{v}=1", v, "variable.language.special.vinefile")
              for v in keywords.SPECIAL_VARIABLES]
    lines += [("out:", "out", "entity.name.function.target.vinefile")]
    lines += [(f"\t{p} x", p, "keyword.control.prefix.vinefile")
              for p in keywords.COMMAND_PREFIXES]
    lines.append((f"{keywords.EXPORT} X", keywords.EXPORT, "keyword.other.export.vinefile"))
    lines += [(f"x: {s}://h/y", s, "markup.underline.link.url.vinefile")
              for s in keywords.URL_SCHEMES]
    return lines


def test_every_word_of_keywords_py_is_in_the_generated_lines():
    words = {w.lstrip("@.") for _, w, _ in keyword_lines()}
    assert words - {"out"} == ALL_WORDS


def run_word_fixture(node: str, grammar: Path, lines: list[tuple[str, str, str]],  # noqa: F811
                     column: Callable[[str, str], int], tmp_path: Path) -> str:
    """vscode-tmgrammar-test's report on `lines` (line, word, scope), each with a caret under
    its word (at `column(line, word)`); empty when every word has its scope."""
    scope_name = json.loads(grammar.read_text())["scopeName"]
    text = [f'# SYNTAX TEST "{scope_name}" "generated from vinemake/language/keywords.py"']
    for line, word, scope in lines:
        col = column(line, word)
        marker = "# <- " if col == 0 else "#" + " " * (col - 1) + "^" * len(word) + " "
        text += [line, marker + scope]
    fixture = tmp_path / "keywords.txt"
    fixture.write_text("\n".join(text) + "\n")
    result = run_tmgrammar(node, "-g", str(grammar), str(fixture))
    return "" if result.returncode == 0 else result.stdout + result.stderr


def test_vscode_highlights_every_reserved_word(node, tmp_path):  # noqa: F811
    assert run_word_fixture(node, TM_GRAMMAR, keyword_lines(), str.index, tmp_path) == ""


def test_vim_highlights_every_reserved_word(tmp_path):
    lines = keyword_lines()
    _, items = vim_dump("\n".join(line for line, _, _ in lines) + "\n", "Vinefile", tmp_path)
    wrong = [(line, sorted(items[n][line.index(word)]))
             for n, (line, word, scope) in enumerate(lines)
             if any(not required_groups(scope) & items[n][col]
                    for col in range(line.index(word), line.index(word) + len(word)))]
    assert wrong == []


def test_pygments_highlights_every_reserved_word():
    for line, word, scope in keyword_lines():
        if scope not in PYGMENTS_TOKEN:
            continue
        tokens = [(kind, value) for _, kind, value in
                  VinefileLexer().get_tokens_unprocessed(line + "\n") if word in value]
        assert tokens and tokens[0][0] is PYGMENTS_TOKEN[scope], (line, tokens)


def words_in_patterns(patterns: list[str]) -> set[str]:
    """The literal words a list of regular expressions names (not escapes or [classes])."""
    words: set[str] = set()
    for pattern in patterns:
        pattern = re.sub(r"\\.", " ", pattern)
        pattern = re.sub(r"\[[^\]]*\]", " ", pattern)
        words |= set(re.findall(r"[A-Za-z_][A-Za-z0-9_]+", pattern))
    return words


def tm_patterns(rule) -> list[str]:
    if isinstance(rule, dict):
        found = [v for k, v in rule.items() if k in ("match", "begin", "end")]
        return found + [p for k, v in rule.items() if k != "comment" for p in tm_patterns(v)]
    if isinstance(rule, list):
        return [p for item in rule for p in tm_patterns(item)]
    return []


def test_textmate_grammar_names_no_word_keywords_py_lacks():
    words = words_in_patterns(tm_patterns(json.loads(TM_GRAMMAR.read_text())))
    assert words - {"vinefile"} == ALL_WORDS


def vim_patterns(text: str) -> tuple[list[str], set[str]]:
    """The regular expressions of a Vim syntax file, and the words of its `syn keyword` lines."""
    text = re.sub(r"\n\s*\\", "", text)  # join continued lines
    lines = [line for line in text.splitlines() if line.startswith("syn ")]
    keyword_words = {w for line in lines if line.startswith("syn keyword ")
                     for w in line.split()[3:] if w != "contained"}
    patterns = [p for line in lines if not line.startswith("syn keyword ")
                for p in re.findall(r"=?/((?:[^/\\]|\\.)*)/", line)]
    return [p.replace(r"\%(", "(").replace(r"\|", "|").replace(r"\)", ")")
            .replace(r"\>", " ").replace(r"\<", " ") for p in patterns], keyword_words


def test_vim_syntax_names_no_word_keywords_py_lacks():
    patterns, keyword_words = vim_patterns(VIM_SYNTAX.read_text())
    assert words_in_patterns(patterns) | keyword_words == ALL_WORDS


def test_the_word_readers_see_through_escapes_and_classes():
    assert words_in_patterns([r"^(@)(cache)\b", r"[A-Za-z_]\w*", r"\G\s+(LOCAL|MAKEFLOW)\b"]) == {
        "cache", "LOCAL", "MAKEFLOW"}
    vim = "syn keyword g contained FIXED\nsyn match g /\\<a\\%(b\\|cd\\)/\n"
    patterns, words = vim_patterns(vim)
    assert words == {"FIXED"} and words_in_patterns(patterns) == {"cd"}


def lark_terminals() -> dict[str, str]:
    """Terminal name → definition, from grammar/vinefile.lark."""
    found = re.findall(r"^([A-Z_][A-Z0-9_]*)(?:\.\d+)?:\s*(.+)$", LARK.read_text(), re.M)
    return dict(found)


def lark_regex(definition: str) -> re.Pattern:
    (body,) = re.findall(r"/((?:[^/\\]|\\.)*)/", definition)
    return re.compile(body)


def test_lark_grammar_has_only_the_kinds_of_line_the_editors_know():
    public = {name for name in lark_terminals() if not name.startswith("_")}
    assert LINE_TERMINALS <= public
    assert public - LINE_TERMINALS - JOINED_TERMINALS == set(), (
        "teach the editor grammars the new kind of line first")


@pytest.mark.parametrize("word", sorted(keywords.DOT_DIRECTIVES))
def test_lark_directive_terminal_takes_every_dot_directive(word):
    assert lark_regex(lark_terminals()["DIRECTIVE"]).match(word + " ")


@pytest.mark.parametrize("name", sorted(keywords.ANNOTATIONS))
def test_lark_annotation_terminal_takes_every_annotation(name):
    assert lark_regex(lark_terminals()["ANNOTATION"]).fullmatch("@" + name)


def test_lark_export_terminal_is_the_export_keyword():
    assert lark_regex(lark_terminals()["EXPORT"]).match(keywords.EXPORT + " ")
    assert not lark_regex(lark_terminals()["EXPORT"]).match(keywords.EXPORT + "s ")

