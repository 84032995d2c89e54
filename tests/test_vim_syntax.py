"""The Vim plugin (grammar/vim) in a real headless Vim, held to the VS Code fixtures' assertions.

Each fixture under tests/editor/ is loaded by `vim -es -u NONE` with grammar/vim on the
runtimepath; tests/editor/syndump.vim writes the syntax items at every byte. Every `^^^ scope`
and `- scope` assertion of the fixture is then translated into Vim syntax groups (SCOPE_GROUPS)
and checked, so Vim is tested against exactly what the TextMate grammar is tested against.

Needs vim. Outside CI a missing vim skips; with CI=true it fails.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import require

ROOT = Path(__file__).resolve().parent.parent
EDITOR = ROOT / "tests" / "editor"
PLUGIN = ROOT / "grammar" / "vim"
FIXTURES = sorted((EDITOR / "syntax").glob("*.vine")) + sorted((EDITOR / "invalid").glob("*.vine"))
ASSERTION = re.compile(r"#( *)(?:(\^+)|(<-+)) *(.*)$")

# TextMate scope (without `.vinefile`) → the Vim groups that stand for it. A scope matches its
# longest listed prefix; an excluded scope forbids every group listed under it.
SCOPE_GROUPS = {
    "comment": {"vinefileComment"},
    "punctuation.definition.comment": {"vinefileComment"},
    "variable.other.assignment": {"vinefileAssignName", "vinefileExportAssign"},
    "variable.language.special": {"vinefileSpecialVar"},
    "punctuation.definition.variable.rule-local": {"vinefileAssignName", "vinefileSpecialVar"},
    "keyword.operator.assignment": {"vinefileAssignOp", "vinefileExportOp",
                                    "vinefileAnnotationOp"},
    "string.unquoted.value": {"vinefileValue", "vinefileExportValue"},
    "variable.other.readwrite": {"vinefileVariable"},
    "punctuation.definition.variable": {"vinefileVariable"},
    "string.quoted": {"vinefileString"},
    "punctuation.definition.string": {"vinefileString"},
    "constant.character.escape": {"vinefileEscape"},
    "constant.character.escape.line-continuation": {"vinefileContinuation"},
    "invalid.illegal.double-dollar": {"vinefileDollarError"},
    "invalid.illegal.assignment": {"vinefileAssignError"},
    "keyword.other.export": {"vinefileExport"},
    "variable.other.export": {"vinefileExportName"},
    "keyword.control.directive": {"vinefileDirective"},
    "support.constant.directive": {"vinefileDirectiveWord"},
    "support.constant.mode": {"vinefileMode"},
    "entity.name.type.category": {"vinefileCategoryName"},
    "string.unquoted.filename": {"vinefileSizeFile"},
    "constant.numeric": {"vinefileNumber"},
    "invalid.illegal.directive": {"vinefileDirectiveError", "vinefileUnknownDirective"},
    "punctuation.definition.annotation": {"vinefileAnnotation"},
    "storage.type.annotation": {"vinefileAnnotation"},
    "entity.other.attribute-name": {"vinefileResourcesKey", "vinefileCacheKey",
                                    "vinefileLibraryKey"},
    "entity.name.namespace.library": {"vinefileLibraryName"},
    "invalid.illegal.key": {"vinefileKeyError"},
    "invalid.illegal.annotation": {"vinefileAnnotationError"},
    "meta.assignment": {"vinefileAssignName", "vinefileSpecialVar"},
    "meta.export": {"vinefileExportLine", "vinefileExport"},
    "meta.directive": {"vinefileDirectiveLine", "vinefileDirective"},
    "meta.annotation": {"vinefileAnnotationLine", "vinefileAnnotation"},
    "meta.rule.targets": {"vinefileTargets"},
    "entity.name.function.target": {"vinefileTarget"},
    "punctuation.separator.rule": {"vinefileColon"},
    "meta.rule.sources": {"vinefileSources"},
    "variable.parameter.source": {"vinefileSource", "vinefileEnvironmentFile"},
    "markup.underline.link.url": {"vinefileUrl"},
    "keyword.operator.rename": {"vinefileRename"},
    "meta.command": {"vinefileCommand"},
    "keyword.control.prefix": {"vinefilePrefix"},
}


def without_language(scope: str) -> str:
    """The scope without its language's last part (`.vinefile`, `.jx`)."""
    return re.sub(r"\.(?:vinefile|jx)$", "", scope)


def required_groups(scope: str, table: dict = SCOPE_GROUPS) -> set[str]:
    parts = without_language(scope).split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in table:
            return table[".".join(parts[:end])]
    raise AssertionError(f"no Vim group stands for scope {scope!r}: add it to SCOPE_GROUPS")


def excluded_groups(scope: str, table: dict = SCOPE_GROUPS) -> set[str]:
    prefix = without_language(scope)
    groups = [g for key, g in table.items() if key == prefix or key.startswith(prefix + ".")]
    assert groups, f"no Vim group stands for excluded scope {scope!r}"
    return set().union(*groups)


def assertions(fixture: Path) -> tuple[list[str], list[tuple]]:
    """The fixture's source lines and its (line, first col, last col, scopes, excluded) checks."""
    source: list[str] = []
    checks: list[tuple] = []
    for line in fixture.read_text().split("\n")[1:]:
        match = ASSERTION.match(line)
        if not match:
            source.append(line)
            continue
        spaces, carets, arrow, rest = match.groups()
        start, width = (1 + len(spaces), len(carets)) if carets else (0, len(arrow) - 1)
        scopes, _, excluded = rest.partition(" - ")
        if rest.startswith("- "):
            scopes, excluded = "", rest[2:]
        checks.append((len(source) - 1, start, start + width - 1, scopes.split(), excluded.split()))
    return source, checks




def vim_dump(source: str, name: str, tmp_path: Path) -> tuple[str, list[list[set[str]]]]:
    """Open `source` as file `name` in Vim with our plugin; its options and items per byte."""
    vim = shutil.which("vim")
    require(vim is not None, "vim (apt-get install vim)")
    path = tmp_path / name
    path.write_text(source)
    out = tmp_path / "syntax.txt"
    # `set expandtab` first, so the ftplugin's noexpandtab is seen to take effect.
    subprocess.run([vim, "-es", "-u", "NONE", "-i", "NONE", "-N",
                    "--cmd", f"set runtimepath^={PLUGIN}", "--cmd", "set expandtab",
                    "--cmd", f"let g:syndump_out = '{out}'",
                    "-c", "syntax on", "-c", "filetype plugin on", "-c", f"edit {path}",
                    "-c", f"source {EDITOR / 'syndump.vim'}", "-c", "qall!"],
                   check=True, timeout=60, stdin=subprocess.DEVNULL)
    options, *lines = out.read_text().split("\n")
    return options, [[set(item.split(",")) - {"-"} for item in line.split(" ")] if line else []
                     for line in lines]


@pytest.mark.parametrize("name", ["Vinefile", "flow.vine", "Makeflow", "old.makeflow"])
def test_file_names_get_the_filetype_and_its_settings(name, tmp_path):
    options, _ = vim_dump("out:\n\ttrue\n", name, tmp_path)
    assert options == "filetype=vinefile commentstring=# %s expandtab=0 syntax=vinefile"


def test_other_files_are_left_alone(tmp_path):
    options, _ = vim_dump("out:\n\ttrue\n", "notes.txt", tmp_path)
    assert options.split()[0] == "filetype=text"


def vim_failures(fixture: Path, name: str, table: dict, tmp_path: Path) -> list[str]:
    """Where Vim, with the fixture's source opened as file `name`, contradicts its assertions
    (translated to Vim groups by `table`)."""
    source, checks = assertions(fixture)
    assert checks
    _, items = vim_dump("\n".join(source), name, tmp_path)
    wrong = []
    for line, first, last, scopes, excluded in checks:
        assert last < len(source[line]), f"assertion past the end of {source[line]!r}"
        for col in range(first, last + 1):
            here = items[line][col]
            missing = [s for s in scopes if not required_groups(s, table) & here]
            unwanted = [s for s in excluded if excluded_groups(s, table) & here]
            if missing or unwanted:
                wrong.append(f"{line + 1}:{col} {source[line]!r} has {sorted(here)}; "
                             f"missing {missing}, unwanted {unwanted}")
    return wrong


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_vim_groups_agree_with_the_fixture_assertions(fixture, tmp_path):
    assert vim_failures(fixture, "Vinefile", SCOPE_GROUPS, tmp_path) == []


def test_assertion_reader():
    source, checks = assertions(EDITOR / "syntax" / "annotations.vine")
    assert source[0] == ".MAKEFLOW CATEGORY heavy"
    assert checks[0] == (0, 0, 0, ["meta.directive.makeflow.vinefile",
                                   "keyword.control.directive.vinefile"], [])
    assert checks[2] == (0, 10, 17, ["support.constant.directive.vinefile"], [])


def test_a_wrong_group_is_reported():
    with pytest.raises(AssertionError, match="no Vim group stands for scope 'markup.bold'"):
        required_groups("markup.bold")


def syntax_statements(text: str) -> list[tuple[int, int]]:
    """(first, last) line index of each `syn` statement but `syn sync`, continuations included."""
    lines = text.split("\n")
    spans = []
    for i, line in enumerate(lines):
        if line.startswith("syn ") and not line.startswith("syn sync"):
            last = i
            while last + 1 < len(lines) and lines[last + 1].lstrip().startswith("\\"):
                last += 1
            spans.append((i, last))
    return spans


def test_statement_reader_keeps_continuations_together():
    text = ("syn match a /x/\n      \\ contained\nsyn sync minlines=5\nhi def link a b\n"
            "syn keyword c d")
    assert syntax_statements(text) == [(0, 1), (4, 4)]


def vim_survivors(syntax: Path, fixtures: list[Path], name: str, table: dict,
                  tmp_path: Path) -> list[str]:
    """Each `syn` statement of `syntax` dropped in turn: those no assertion of the fixtures
    (opened together as file `name`, checked through `table`) needs."""
    # `syn sync` is left out: on fixtures this short, where Vim starts parsing changes nothing.
    vim = shutil.which("vim")
    require(vim is not None, "vim (apt-get install vim)")
    text = syntax.read_text()
    lines = text.split("\n")
    spans = syntax_statements(text)
    syntaxes = [str(syntax)]
    for n, (first, last) in enumerate(spans):
        mutant = tmp_path / f"mutant{n}.vim"
        mutant.write_text("\n".join(lines[:first] + lines[last + 1:]))
        syntaxes.append(str(mutant))
    # All fixtures in one buffer (a blank line ends whatever a fixture left open), so each
    # mutant is loaded and parsed once: this keeps the whole check to a few seconds of CPU.
    source, checks = [], []
    for fixture in fixtures:
        lines_of, checks_of = assertions(fixture)
        checks += [(line + len(source), *rest) for line, *rest in checks_of]
        source += lines_of + [""]
    path = tmp_path / name
    path.write_text("\n".join(source))
    # Only the first byte of each assertion is asked about (synstack() costs ~0.1 ms a call):
    # a mutant failing there fails the assertion, and the unmutated file must pass them all.
    checks = [(line, first, first, scopes, excluded)
              for line, first, _, scopes, excluded in checks]
    cells = sorted({(line, first) for line, first, _, _, _ in checks})
    index = {cell: n for n, cell in enumerate(cells)}
    job = tmp_path / "job.json"
    out = tmp_path / "out.jsonl"
    job.write_text(json.dumps({"syntaxes": syntaxes, "out": str(out), "fixtures": [
        {"path": str(path), "positions": [[n + 1, c + 1] for n, c in cells]}]}))
    subprocess.run([vim, "-es", "-u", "NONE", "-i", "NONE", "-N",
                    "--cmd", f"let g:mutants_job = '{job}'",
                    "-c", f"source {EDITOR / 'vim_mutants.vim'}", "-c", "qall!"],
                   check=True, timeout=300, stdin=subprocess.DEVNULL)
    broken = set()
    for record in map(json.loads, out.read_text().splitlines()):
        items = [set(names) for names in record["items"]]
        for line, first, last, scopes, excluded in checks:
            for col in range(first, last + 1):
                here = items[index[(line, col)]]
                if (any(not required_groups(s, table) & here for s in scopes)
                        or any(excluded_groups(s, table) & here for s in excluded)):
                    broken.add(record["syntax"])
    assert 0 not in broken, "the unmutated syntax fails its own assertions"
    return [lines[spans[n - 1][0]] for n in range(1, len(syntaxes)) if n not in broken]


def test_every_vim_syntax_statement_is_needed(tmp_path):
    assert vim_survivors(PLUGIN / "syntax" / "vinefile.vim", FIXTURES, "fixtures.vine",
                         SCOPE_GROUPS, tmp_path) == []
