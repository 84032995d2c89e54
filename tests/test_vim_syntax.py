"""The Vim plugin (grammar/vim) in a real headless Vim, held to the VS Code fixtures' assertions.

Each fixture under tests/editor/ is loaded by `vim -es -u NONE` with grammar/vim on the
runtimepath; tests/editor/syndump.vim writes the syntax items at every byte. Every `^^^ scope`
and `- scope` assertion of the fixture is then translated into Vim syntax groups (SCOPE_GROUPS)
and checked, so Vim is tested against exactly what the TextMate grammar is tested against.

Needs vim. Outside CI a missing vim skips; with CI=true it fails.
"""

from __future__ import annotations

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
    "meta.rule.targets": {"vinefileTargets"},
    "entity.name.function.target": {"vinefileTarget"},
    "punctuation.separator.rule": {"vinefileColon"},
    "meta.rule.sources": {"vinefileSources"},
    "variable.parameter.source": {"vinefileSource"},
    "keyword.operator.rename": {"vinefileRename"},
    "meta.command": {"vinefileCommand"},
    "keyword.control.prefix": {"vinefilePrefix"},
}


def required_groups(scope: str) -> set[str]:
    parts = scope.removesuffix(".vinefile").split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in SCOPE_GROUPS:
            return SCOPE_GROUPS[".".join(parts[:end])]
    raise AssertionError(f"no Vim group stands for scope {scope!r}: add it to SCOPE_GROUPS")


def excluded_groups(scope: str) -> set[str]:
    prefix = scope.removesuffix(".vinefile")
    groups = [g for key, g in SCOPE_GROUPS.items() if key == prefix or key.startswith(prefix + ".")]
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


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_vim_groups_agree_with_the_fixture_assertions(fixture, tmp_path):
    source, checks = assertions(fixture)
    assert checks
    _, items = vim_dump("\n".join(source), "Vinefile", tmp_path)
    wrong = []
    for line, first, last, scopes, excluded in checks:
        assert last < len(source[line]), f"assertion past the end of {source[line]!r}"
        for col in range(first, last + 1):
            here = items[line][col]
            missing = [s for s in scopes if not required_groups(s) & here]
            unwanted = [s for s in excluded if excluded_groups(s) & here]
            if missing or unwanted:
                wrong.append(f"{line + 1}:{col} {source[line]!r} has {sorted(here)}; "
                             f"missing {missing}, unwanted {unwanted}")
    assert wrong == []


def test_assertion_reader():
    source, checks = assertions(EDITOR / "syntax" / "annotations.vine")
    assert source[0] == ".MAKEFLOW CATEGORY heavy"
    assert checks[0] == (0, 0, 0, ["keyword.control.directive.vinefile"], [])
    assert checks[2] == (0, 10, 17, ["support.constant.directive.vinefile"], [])


def test_a_wrong_group_is_reported():
    with pytest.raises(AssertionError, match="no Vim group stands for scope 'markup.bold'"):
        required_groups("markup.bold")
