"""Every workflow the project shows runs for real: README.md, docs/, examples/, tests/cases.

Each valid workflow is run with the real vinemake in a fresh directory holding the sources no
rule makes (tests/workflow_inputs/README.md says where they come from), then run again: the
second run must start nothing. Each error case must stop with exit status 2 and its error.
The local worker offers what the examples ask for (8 cores, 32 GB, a GPU): the examples show
resource requests, and this machine has 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require
from docserver import Documents, serve
from test_docs import VALID

from vinemake.language.parser import parse_text

ROOT = Path(__file__).resolve().parent.parent
INPUTS = ROOT / "tests" / "workflow_inputs"
CASES = sorted(p for p in (ROOT / "tests" / "cases").iterdir() if p.is_dir())
EXAMPLES = sorted(p for p in (ROOT / "examples").iterdir() if (p / "Vinefile").is_file())
RESOURCES = ("--cores", "8", "--memory", "32GB", "--disk", "50GB", "--gpus", "1")
# What the examples' final outputs hold.
OUTPUTS = {
    "examples/hello": ("both.txt", "Hello, vinemake and world!\nHELLO, VINEMAKE AND WORLD!\n"),
    "examples/library": ("total.txt", "9\n"),
}


def _workflows() -> list:
    found = [pytest.param(f"{b.doc}:{b.line}", b.text, None, {"HOME": "/root"},
                          id=f"{b.doc}:{b.line}") for b in VALID]
    for case in CASES:
        expected = json.loads((case / "expected.json").read_text())
        found.append(pytest.param(case.name, (case / "Vinefile").read_text(),
                                  expected.get("error"), expected.get("environ", {}),
                                  id=case.name))
    for example in EXAMPLES:
        found.append(pytest.param(f"examples/{example.name}", example, None, {},
                                  id=f"examples/{example.name}"))
    return found


@pytest.fixture(scope="module")
def web():
    """A real HTTP server on 127.0.0.1 standing in for every web host the workflows name: a
    path is served from tests/workflow_inputs/files/ by its last segment, else as its own
    name and a newline (as _lay_out makes a missing source)."""
    documents = Documents()

    def body(path: str) -> bytes:
        given = INPUTS / "files" / path.rsplit("/", 1)[-1]
        return given.read_bytes() if given.is_file() else f"{path}\n".encode()

    documents.fallback = body
    server, base = serve(documents)
    yield base
    server.shutdown()
    server.server_close()


def _offline(text: str, base: str) -> str:
    """The workflow with each http(s) URL's host replaced by the local stand-in."""
    return re.sub(r"\bhttps?://[^/\s]+", base, text)


def _missing_sources(text: str, environ: dict[str, str]) -> list[str]:
    """The sources of the workflow `text` that no rule makes (a directory's with its '/')."""
    workflow = parse_text(text, "Vinefile", environ)
    made = {t.path.rstrip("/") for r in workflow.rules for t in r.targets}
    return sorted({s.path for r in workflow.rules for s in r.sources
                   if s.path.rstrip("/") not in made and "://" not in s.path})


def _ups(name: str) -> int:
    """How many directories above the workflow `name` reaches (`../../x`: 2)."""
    parts = os.path.normpath(name).split("/")
    return next((i for i, part in enumerate(parts) if part != ".."), len(parts))


def _lay_out(root: Path, text: str, environ: dict[str, str]) -> None:
    """Write the workflow and its missing sources; never anything outside the test's own
    directory: an absolute source must exist on this machine already (a system tool)."""
    (root / "Vinefile").write_text(text)
    for name in _missing_sources(text, environ):
        if os.path.isabs(name):
            require(os.path.exists(name), f"{name}, an absolute source of a documented example")
            continue
        inside = os.path.normpath(name).split("/")[_ups(name):]
        given = INPUTS.joinpath("files", *inside)
        path = root / name.rstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if given.is_dir():
            shutil.copytree(given, path)
        elif given.is_file():
            shutil.copy2(given, path)
        else:
            path.write_text(f"{name}\n")


def _vinemake(root: Path, environ: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, **environ,
           "PATH": f"{INPUTS / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([sys.executable, "-m", "vinemake", *RESOURCES], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("name", "source", "error", "environ"), _workflows())
def test_the_workflow_runs_and_a_second_run_does_nothing(tmp_path, web, name, source, error,
                                                         environ):
    ups = 0 if isinstance(source, Path) or error is not None else max(
        (_ups(n) for n in _missing_sources(source, environ) if not os.path.isabs(n)),
        default=0)
    root = tmp_path.joinpath(*["up"] * ups, "wf")  # `../..` sources stay in tmp_path
    if isinstance(source, Path):  # an example directory carries its own inputs
        shutil.copytree(source, root)
        (root / "Vinefile").write_text(_offline((root / "Vinefile").read_text(), web))
    else:
        root.mkdir(parents=True)
        if error is None:
            _lay_out(root, _offline(source, web), environ)
        else:
            (root / "Vinefile").write_text(source)
    first = _vinemake(root, environ)
    if error is not None:
        assert (first.returncode, first.stderr) == (2, error + "\n")
        return
    assert first.returncode == 0, f"{name}: exit {first.returncode}\n{first.stderr}"
    if name in OUTPUTS:
        output, text = OUTPUTS[name]
        assert (root / output).read_text() == text
    if name == "examples/pipeline":  # the merged counts add up to the words of the input
        lines = (root / "summary.txt").read_text().splitlines()
        assert lines[0] == f"words: {len((root / 'words.txt').read_text().split())}"
        assert len(lines) == 11
    second = _vinemake(root, environ)
    assert second.returncode == 0, f"{name}: exit {second.returncode}\n{second.stderr}"
    assert second.stderr.splitlines()[-1].startswith("vinemake: nothing to do"), second.stderr
