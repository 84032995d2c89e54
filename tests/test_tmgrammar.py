"""The TextMate grammar (VS Code) against the scope assertions in tests/editor/, run for real.

`vscode-tmgrammar-test` tokenizes each fixture with vscode-textmate, the engine VS Code uses,
and checks the `^^^ scope` / `- scope` lines under it. The mutation test then deletes every
rule of the grammar in turn and shows that some assertion notices: no rule is untested.

Needs node and `npm ci --prefix tests/editor`. Outside CI a missing tool skips; with CI=true it
fails, so the check cannot silently vanish from the pipeline.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from conftest import require

from vinemake.common.errors import VinefileError
from vinemake.language.parser import parse_text

ROOT = Path(__file__).resolve().parent.parent
EDITOR = ROOT / "tests" / "editor"
GRAMMAR = ROOT / "grammar" / "vinefile.tmLanguage.json"
EXTENSION = ROOT / "grammar" / "vscode"
VALID = sorted((EDITOR / "syntax").glob("*.vine"))
INVALID = sorted((EDITOR / "invalid").glob("*.vine"))
RUNNER = EDITOR / "node_modules" / "vscode-tmgrammar-test" / "dist" / "unit.js"
ASSERTION_LINE = re.compile(r"#\s*(\^|<-)")




@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    require(path is not None, "node (apt-get install nodejs npm)")
    require(RUNNER.exists(), "vscode-tmgrammar-test (npm ci --prefix tests/editor)")
    return path


def source_of(fixture: Path) -> str:
    """The text the grammar test tokenizes: the fixture without its header and assertions."""
    lines = fixture.read_text().split("\n")[1:]
    return "\n".join(line for line in lines if not ASSERTION_LINE.match(line))


def run_tmgrammar(node: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([node, str(RUNNER), "--compact", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_fixtures_hold_positive_and_negative_assertions():
    for fixture in VALID + INVALID:
        assertions = [line for line in fixture.read_text().splitlines()
                      if ASSERTION_LINE.match(line)]
        assert any(" - " in line for line in assertions), f"{fixture.name}: no negative assertion"
        assert any(not re.search(r"[\^-]\s+-\s", line) for line in assertions), fixture.name


def test_extension_grammar_passes_every_fixture(node):
    # --config reads the extension's package.json, so its grammar path is tested too.
    result = run_tmgrammar(node, "--config", str(EXTENSION / "package.json"),
                           *map(str, VALID + INVALID))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("run successfuly") == len(VALID + INVALID)


def contributed(kind: str, language: str) -> dict:
    """The extension's one entry of `kind` (languages, grammars) for `language`."""
    package = json.loads((EXTENSION / "package.json").read_text())
    (entry,) = [e for e in package["contributes"][kind] if language in (e.get("id"),
                                                                         e.get("language"))]
    return entry


def test_extension_grammar_is_the_one_source():
    shipped = EXTENSION / "syntaxes" / "vinefile.tmLanguage.json"
    assert shipped.resolve() == GRAMMAR
    grammar = contributed("grammars", "vinefile")
    assert (EXTENSION / grammar["path"]).resolve() == GRAMMAR
    assert grammar["scopeName"] == json.loads(GRAMMAR.read_text())["scopeName"]


def test_extension_claims_the_vinefile_names_and_hash_comments():
    language = contributed("languages", "vinefile")
    assert (language["id"], language["filenames"], language["extensions"]) == (
        "vinefile", ["Vinefile", "Makeflow"], [".vine", ".makeflow"])
    config = json.loads((EXTENSION / language["configuration"]).read_text())
    assert config["comments"] == {"lineComment": "#"}


def test_vsix_packs_the_grammar_itself(tmp_path):
    # Optional tooling (250 npm packages): set VSCE=path/to/vsce or put vsce on PATH to run it.
    vsce = os.environ.get("VSCE") or shutil.which("vsce")
    if not vsce:
        pytest.skip("vsce is not installed (npm install @vscode/vsce; then VSCE=.../vsce)")
    vsix = tmp_path / "vinefile.vsix"
    subprocess.run([vsce, "package", "--allow-missing-repository", "-o", str(vsix)],
                   cwd=EXTENSION, check=True, capture_output=True, timeout=300)
    with zipfile.ZipFile(vsix) as packed:
        assert packed.read("extension/syntaxes/vinefile.tmLanguage.json") == GRAMMAR.read_bytes()
        assert packed.read("extension/syntaxes/jx.tmLanguage.json") == (
            ROOT / "grammar" / "jx.tmLanguage.json").read_bytes()
        assert {"extension/language-configuration.json",
                "extension/jx-language-configuration.json"} <= set(packed.namelist())


def test_a_wrong_scope_is_reported(node, tmp_path):
    # The runner must fail when an assertion is wrong, or every other check here is vacuous.
    fixture = tmp_path / "wrong.vine"
    fixture.write_text('# SYNTAX TEST "source.vinefile"\n'
                       "X=1\n"
                       "# <- entity.name.function.target.vinefile\n")
    result = run_tmgrammar(node, "-g", str(GRAMMAR), str(fixture))
    assert result.returncode != 0
    assert "Missing required scopes: [ entity.name.function.target.vinefile ]" in result.stdout


@pytest.mark.parametrize("fixture", VALID, ids=lambda p: p.name)
def test_valid_fixture_parses(fixture):
    parse_text(source_of(fixture), str(fixture), environ={})


@pytest.mark.parametrize("fixture", INVALID, ids=lambda p: p.name)
def test_every_line_marked_invalid_is_rejected_by_the_parser(fixture):
    lines = [line for line in source_of(fixture).splitlines() if line and line[0] != "#"]
    assert lines
    for line in lines:
        with pytest.raises(VinefileError):
            parse_text(f"{line}\nout:\n\ttrue\n", "invalid.vine", environ={})


def rule_paths(grammar: dict) -> list[tuple]:
    """Where every rule sits: each repository entry and each item of every `patterns` list."""
    paths: list[tuple] = []

    def walk(node: dict, path: tuple) -> None:
        for i, child in enumerate(node.get("patterns", [])):
            paths.append(path + ("patterns", i))
            walk(child, path + ("patterns", i))

    walk(grammar, ())
    for name, entry in grammar["repository"].items():
        paths.append(("repository", name))
        walk(entry, ("repository", name))
    return paths


def scope_paths(grammar: dict) -> list[tuple]:
    """Where every scope name is given: each `name`, `contentName` and capture of every rule."""
    paths: list[tuple] = []

    def walk(rule: dict, path: tuple) -> None:
        paths.extend(path + (key,) for key in ("name", "contentName") if key in rule)
        for captures in ("captures", "beginCaptures", "endCaptures"):
            paths.extend(path + (captures, key) for key in rule.get(captures, {}))
        for i, child in enumerate(rule.get("patterns", [])):
            walk(child, path + ("patterns", i))

    for name, entry in grammar["repository"].items():
        walk(entry, ("repository", name))
    return paths


def without(grammar: dict, path: tuple) -> dict:
    """A copy of `grammar` without what `path` names: a rule (a repository entry is left empty),
    or a scope name."""
    mutant = copy.deepcopy(grammar)
    *parents, last = path
    holder = mutant
    for key in parents:
        holder = holder[key]
    if isinstance(holder, list) or parents[-1:] != ["repository"]:
        del holder[last]
    else:
        holder[last] = {"patterns": []}
    return mutant


def test_rule_paths_reach_nested_rules():
    grammar = {"patterns": [{"include": "#a"}],
               "repository": {"a": {"patterns": [{"match": "x"}, {"begin": "y", "end": "z",
                                                               "patterns": [{"match": "w"}]}]}}}
    assert rule_paths(grammar) == [
        ("patterns", 0), ("repository", "a"), ("repository", "a", "patterns", 0),
        ("repository", "a", "patterns", 1), ("repository", "a", "patterns", 1, "patterns", 0)]
    assert without(grammar, ("repository", "a", "patterns", 0))["repository"]["a"] == {
        "patterns": [{"begin": "y", "end": "z", "patterns": [{"match": "w"}]}]}


def test_scope_paths_reach_names_and_captures():
    grammar = {"patterns": [], "repository": {"a": {"match": "(x)", "name": "s.a",
                                                     "captures": {"1": {"name": "s.x"}},
                                                     "patterns": [{"match": "y", "name": "s.y"}]}}}
    assert scope_paths(grammar) == [("repository", "a", "name"),
                                    ("repository", "a", "captures", "1"),
                                    ("repository", "a", "patterns", 0, "name")]
    assert without(grammar, ("repository", "a", "captures", "1"))["repository"]["a"][
        "captures"] == {}


def mutant_survivors(node: str, grammar_path: Path, fixtures: list[Path],
                     tmp_path: Path) -> tuple[list[str], int]:
    """Each rule and scope name of the grammar removed in turn, all mutants run against the
    fixtures' assertions in one node process: the ones no assertion notices, and the count."""
    grammar = json.loads(grammar_path.read_text())
    paths = rule_paths(grammar) + scope_paths(grammar)
    listing = tmp_path / "mutants.txt"
    names = {}
    for i, path in enumerate(paths):
        mutant = tmp_path / f"mutant{i}.json"
        mutant.write_text(json.dumps(without(grammar, path)))
        names[str(mutant)] = "/".join(map(str, path))
    # The unmutated grammar goes first: it must fail nothing, or the count below means nothing.
    listing.write_text("\n".join([str(grammar_path), *names]) + "\n")
    result = subprocess.run([node, str(EDITOR / "mutants.js"), str(listing),
                             *map(str, fixtures)], cwd=EDITOR,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    failures = json.loads(result.stdout)
    assert failures.pop(str(grammar_path)) == 0
    return [names[m] for m, n in failures.items() if n == 0 or str(n).startswith("error")], len(
        paths)


def test_every_rule_and_scope_is_needed_by_some_assertion(node, tmp_path):
    started = time.monotonic()
    survivors, count = mutant_survivors(node, GRAMMAR, VALID + INVALID, tmp_path)
    assert survivors == [], f"rules no assertion needs: {survivors}"
    print(f"{count} mutants killed in {time.monotonic() - started:.1f}s")
