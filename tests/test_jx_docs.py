"""docs/jx.md is true: its JX blocks read, its worked example runs, its error is the one printed.

Convention (as tests/test_docs.py for Vinefiles): a block fenced ```jx must read as a JX
workflow; a block fenced ```jx-error must be refused, and a ```text block right after it is
the exact error, with the block saved as `book.jx`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_jx_equivalence import _shape

from vinemake.common.errors import VinefileError
from vinemake.language.jxworkflow import parse_jx_workflow
from vinemake.language.parser import parse_text

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "jx.md"
_FENCE = re.compile(r"^```([\w-]*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def fences(kind: str) -> list[tuple[str, str | None]]:
    """(text, the ```text block right after it) of every block fenced `kind`."""
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = []
    for path in docs:
        markdown = path.read_text(encoding="utf-8")
        blocks = list(_FENCE.finditer(markdown))
        for i, m in enumerate(blocks):
            if m.group(1) != kind:
                continue
            nxt = blocks[i + 1] if i + 1 < len(blocks) else None
            after = (nxt.group(2).rstrip("\n") if nxt is not None and nxt.group(1) == "text"
                     and not markdown[m.end(): nxt.start()].strip() else None)
            found.append((m.group(2), after))
    return found


@pytest.mark.parametrize("text", [t for t, _ in fences("jx")])
def test_every_jx_block_reads(text, tmp_path):
    assert parse_jx_workflow(text, "book.jx", environ={}).rules


@pytest.mark.parametrize("text,expected", fences("jx-error"))
def test_every_jx_error_block_prints_its_error(text, expected):
    with pytest.raises(VinefileError) as e:
        parse_jx_workflow(text, "book.jx", environ={})
    if expected is not None:
        assert str(e.value) == expected


def _worked_example() -> tuple[str, str]:
    doc = DOC.read_text(encoding="utf-8")
    jx = next(m.group(2) for m in _FENCE.finditer(doc) if m.group(1) == "jx")
    vinefile = next(m.group(2) for m in _FENCE.finditer(doc) if m.group(1) == "vinefile")
    return jx, vinefile


@pytest.fixture
def book(tmp_path):
    (tmp_path / "chapters").mkdir()
    for name, words in (("intro", 3), ("methods", 5), ("results", 7)):
        (tmp_path / "chapters" / f"{name}.txt").write_text("word " * words + "\n")
    (tmp_path / "book.jx").write_text(_worked_example()[0])
    return tmp_path


def vinemake(root, *args):
    proc = subprocess.run([sys.executable, "-m", "vinemake", *args], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


def started(proc) -> list[str]:
    return sorted(line.split()[-1] for line in proc.stderr.splitlines() if " start " in line)


def test_the_worked_example_runs_as_the_page_says(book):
    assert vinemake(book, "-n", "book.jx").stdout.count("wc -w <") == 3
    assert vinemake(book, "--graph", "dot", "book.jx").stdout.startswith("digraph")
    first = vinemake(book, "book.jx")
    assert any(line.startswith("vinemake: ran 4, restored 0, up to date 0")
               for line in first.stderr.splitlines()), first.stderr
    assert (book / "total.txt").read_text() == "15\n"
    assert (book / "counts" / "methods.txt").read_text() == "5\n"
    assert vinemake(book, "book.jx").stderr == "vinemake: nothing to do, 4 rules up to date\n"
    fewer = vinemake(book, "book.jx", "--jx-define", 'CHAPTERS=["intro", "results"]')
    assert started(fewer) == ["total.txt"]
    assert (book / "total.txt").read_text() == "10\n"


def test_the_worked_example_and_its_vinefile_have_the_same_keys(book):
    jx, vinefile = _worked_example()
    from_jx = _shape(parse_jx_workflow(jx, "book.jx", environ={}), str(book))
    from_vinefile = _shape(parse_text(vinefile, "Vinefile", {}), str(book))
    assert from_jx == from_vinefile
