"""The package layout is the architecture: each layer imports only the layers below it.

The folders under vinemake/ are the layers, one way down (DESIGN.md §3):

    face → language → core → manager → backends → wire → common
                                      worker  → wire → common
    editors → language.keywords only

This test reads every module's imports (top-level and inside functions) with `ast`, so a lazy
import cannot hide a dependency that goes back up, and the worker's never-import rule holds.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vinemake"

# What each layer may import besides itself. Modules at the package's top level
# (__init__, __main__, library) are entry points and may import what they start.
ALLOWED = {
    "face": {"language", "core", "manager", "backends", "wire", "common", "worker"},
    "language": {"core", "common"},
    "core": {"manager", "backends", "wire", "common"},
    "manager": {"backends", "wire", "common"},
    "backends": {"wire", "common"},
    "wire": {"common"},
    "worker": {"wire", "common"},
    "common": set(),
    "editors": {"language.keywords"},
}
# The top-level package itself (its __version__) may be read by any layer.
TOP_ALLOWED = {"vinemake"}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) for every `import vinemake...` and `from vinemake... import`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("vinemake")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.startswith("vinemake"):
            package = PACKAGE.parent.joinpath(*node.module.split("."))
            if package.is_dir():  # `from vinemake.language import keywords` names a module
                found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def _allowed(layer: str, target: str) -> bool:
    if target in TOP_ALLOWED or target == "vinemake.__version__":
        return True
    other = _layer_of(target)
    if other is None:
        return False  # a top-level module: only entry points live there
    if other == layer:
        return True
    rest = target.split(".", 1)[1]
    return any(rest == a or rest.startswith(a + ".") or other == a for a in ALLOWED[layer]
               if "." not in a) or rest in ALLOWED[layer]


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE)


def test_every_module_lives_in_a_layer():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "library.py"]
    for path in _modules():
        assert path.relative_to(PACKAGE).parts[0] in ALLOWED, path


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down_only(path):
    layer = path.relative_to(PACKAGE).parts[0]
    bad = [f"{path.relative_to(PACKAGE)}:{line}: imports {target}"
           for line, target in _imports(path) if not _allowed(layer, target)]
    assert not bad, "\n".join(bad)


def test_every_module_opens_with_a_docstring():
    for path in [*_modules(), *PACKAGE.glob("*.py")]:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert doc and doc.strip(), f"{path} has no docstring"


def test_the_worker_never_imports_the_build_side():
    for path in (PACKAGE / "worker").rglob("*.py"):
        for line, target in _imports(path):
            assert _layer_of(target) not in {"language", "core", "manager", "backends", "face"}, \
                f"{path}:{line}: the worker imports {target}"


def test_the_library_program_imports_nothing_of_vinemake():
    # `python3 -m vinemake.library` runs inside the user's environment on every worker.
    assert _imports(PACKAGE / "library.py") == []


def test_the_check_catches_an_import_going_up(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from vinemake.core.engine import Engine\n")
    assert not all(_allowed("worker", t) for _, t in _imports(bad))
    assert all(_allowed("face", t) for _, t in _imports(bad))


def test_only_the_language_parser_modules_import_lark():
    # DESIGN.md: parser.py (Vinefiles) and jxparse.py (JX) are the only lark users.
    users = set()
    for path in [*_modules(), *PACKAGE.glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "lark" or n.startswith("lark.") for n in names):
                users.add(str(path.relative_to(PACKAGE)))
    assert users == {"language/parser.py", "language/jxparse.py"}
