"""The Vinefile examples in README.md and docs/*.md are real: they parse and highlight.

Convention (documented at the top of docs/language.md): a block fenced ```vinefile must parse
and lex without an Error token; a block fenced ```vinefile-error must be rejected by the parser
or, when it parses, by the graph check (the block saved as `Vinefile` in an empty directory).
A ```text block directly after an error block is the exact error vinemake prints.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import pytest
from pygments import highlight, lex
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.token import Error

from vinemake.common.errors import VinefileError
from vinemake.core.graph import BuildGraph
from vinemake.language.parser import parse_file, parse_text

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGE = ROOT / "docs" / "language.md"

# A fence opens at the start of a line; its info word decides what the block is.
_FENCE = re.compile(r"^```([\w-]*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
# A paragraph right after a valid block may state the command of its last rule.
_COMMAND_CLAIM = re.compile(r"\s*The command (?:above )?is `([^`]+)`")
# The environment the examples are read with (the lookup-order example reads HOME).
ENVIRON = {"HOME": "/root"}


class Block(NamedTuple):
    """One fenced Vinefile block: where it is, its text, and the error it must print."""

    doc: str
    line: int
    kind: str  # "vinefile" or "vinefile-error"
    text: str
    expected_error: str | None
    expected_command: str | None = None


def blocks_of(markdown: str, doc: str) -> list[Block]:
    """The ```vinefile and ```vinefile-error blocks of `markdown`, in order."""
    fences = list(_FENCE.finditer(markdown))
    found = []
    for i, m in enumerate(fences):
        kind = m.group(1)
        if kind not in ("vinefile", "vinefile-error"):
            continue
        expected = None
        nxt = fences[i + 1] if i + 1 < len(fences) else None
        if (kind == "vinefile-error" and nxt is not None and nxt.group(1) == "text"
                and not markdown[m.end(): nxt.start()].strip()):
            expected = nxt.group(2).rstrip("\n")
        claim = _COMMAND_CLAIM.match(markdown, m.end())
        line = markdown.count("\n", 0, m.start()) + 1
        found.append(Block(doc, line, kind, m.group(2), expected,
                           claim.group(1) if claim and kind == "vinefile" else None))
    return found


def _all_blocks() -> list[Block]:
    out = []
    for path in DOCS:
        if path.is_file():
            out.extend(blocks_of(path.read_text(encoding="utf-8"), path.name))
    return out


BLOCKS = _all_blocks()
VALID = [b for b in BLOCKS if b.kind == "vinefile"]
ERRORS = [b for b in BLOCKS if b.kind == "vinefile-error"]


def _id(block: Block) -> str:
    return f"{block.doc}:{block.line}"


def _lexer():
    return get_lexer_by_name("vinefile")


def rejection(text: str, directory: Path) -> VinefileError | None:
    """The error vinemake reports for Vinefile `text`, saved in `directory`; None if it is fine."""
    (directory / "Vinefile").write_text(text, encoding="utf-8")
    try:
        workflow = parse_file("Vinefile", environ={})
        BuildGraph.build(workflow, str(directory))
    except VinefileError as e:
        return e
    return None


# ---- the blocks --------------------------------------------------------------------------

def test_the_docs_have_blocks_of_both_kinds():
    assert len(VALID) >= 20
    assert len(ERRORS) >= 10
    assert all(b.expected_error for b in ERRORS if b.doc == "language.md")


@pytest.mark.parametrize("block", VALID, ids=_id)
def test_valid_block_parses(block):
    workflow = parse_text(block.text, f"{block.doc}:{block.line}", ENVIRON)
    if block.expected_command is not None:
        assert workflow.rules[-1].command == block.expected_command


@pytest.mark.parametrize("block", VALID, ids=_id)
def test_valid_block_lexes_without_error_tokens(block):
    errors = [(t, v) for t, v in lex(block.text, _lexer()) if t in Error]
    assert errors == []


@pytest.mark.parametrize("block", BLOCKS, ids=_id)
def test_lexer_tokens_rebuild_the_block(block):
    assert "".join(v for _, v in lex(block.text, _lexer())) == block.text


@pytest.mark.parametrize("block", ERRORS, ids=_id)
def test_error_block_is_rejected_with_its_documented_message(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    error = rejection(block.text, tmp_path)
    assert error is not None, "this example of a mistake is accepted by vinemake"
    if block.expected_error is not None:
        assert str(error) == block.expected_error


def test_first_language_block_is_highlighted():
    first = blocks_of(LANGUAGE.read_text(encoding="utf-8"), LANGUAGE.name)[0]
    html = highlight(first.text, _lexer(), HtmlFormatter())
    classes = set(re.findall(r'<span class="([\w-]+)"', html))
    assert "c1" in classes  # Comment.Single
    assert {"nv", "nb"} & classes  # an assigned variable (Name.Variable or Name.Builtin)
    assert "si" in classes  # a variable reference, String.Interpol
    assert {"k", "kd"} <= classes  # the LOCAL prefix and `export`
    assert "nd" in classes  # an annotation, Name.Decorator


# ---- the checker itself -------------------------------------------------------------------

def test_blocks_of_reads_kinds_lines_and_expected_errors():
    markdown = ("intro\n```vinefile\nout:\n\tdate > out\n```\n\n```vinefile-error\nX -= 1\n```\n"
                "\n```text\nthe error\n```\n```python\nx = 1\n```\n")
    assert blocks_of(markdown, "d.md") == [
        Block("d.md", 2, "vinefile", "out:\n\tdate > out\n", None),
        Block("d.md", 7, "vinefile-error", "X -= 1\n", "the error"),
    ]


def test_blocks_of_reads_a_command_claim():
    markdown = "```vinefile\nout:\n\tdate > out\n```\n\nThe command is `date > out`.\n"
    assert blocks_of(markdown, "d.md")[0].expected_command == "date > out"


def test_the_docs_state_commands():
    assert len([b for b in VALID if b.expected_command]) >= 3


def test_a_broken_valid_block_fails_to_parse():
    broken = VALID[0].text.replace("\t", "", 1) + "\tsecond command\n"
    with pytest.raises(VinefileError):
        parse_text(broken)


def test_a_fixed_error_block_is_not_rejected(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert rejection("out.txt:\n\techo \\$HOME > out.txt\n", tmp_path) is None
    assert rejection("out.txt:\n\techo $$HOME > out.txt\n", tmp_path) is not None


def test_a_lexer_error_token_is_seen():
    tokens = list(lex(".MAKEFLOW COLOUR blue\n", _lexer()))
    assert any(t in Error for t, _ in tokens)
