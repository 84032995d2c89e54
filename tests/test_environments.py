"""Packed environments end to end: a real venv-pack tarball built here, real workers.

The environment holds a small pure-Python package from PyPI that this host does not have
(pyjokes): a rule in the environment imports it, a rule outside cannot. Unpacks are counted
from the workers' caches, transfers from the manager's log.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import require
from test_urls import barrier, run_with_workers, started, vinemake

PACKAGE = "pyjokes"
IMPORT = (f'python3 -c "import {PACKAGE}, os; '
          f'print({PACKAGE}.__name__, os.environ[\'VIRTUAL_ENV\'])"')


def _venv_pack() -> list[str]:
    tool = shutil.which("venv-pack")
    if tool is None:
        try:
            import venv_pack  # noqa: F401
        except ImportError:
            require(False, "venv-pack (pip install venv-pack2)")
        return [sys.executable, "-m", "venv_pack"]
    return [tool]


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> dict[str, Path]:
    """Two environment tarballs: `env` with the package, `env2` the same plus a marker file."""
    base = tmp_path_factory.mktemp("envs")
    host_has = subprocess.run([sys.executable, "-c", f"import {PACKAGE}"], capture_output=True)
    assert host_has.returncode != 0, f"this host has {PACKAGE}: pick another package"
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    got = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", PACKAGE],
                         capture_output=True, text=True)
    require(got.returncode == 0, f"pip install {PACKAGE} from PyPI ({got.stderr[-300:]})")
    pack = _venv_pack()
    out = {}
    for name in ("env", "env2"):
        if name == "env2":
            (venv / "marker.txt").write_text("a changed environment\n")
        target = base / f"{name}.tar.gz"
        subprocess.run([*pack, "-p", str(venv), "-o", str(target), "-q"], check=True)
        out[name] = target
    return out


def workflow(root: Path, packed, vinefile: str, env: str = "env") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(packed[env], root / "env.tar.gz")
    (root / "Vinefile").write_text(vinefile)
    return root


TWO_RULES = (f"@environment env.tar.gz\nin.txt:\n\t{IMPORT} > in.txt\n\n"
             f"@environment env.tar.gz\nagain.txt: in.txt\n\t{IMPORT} > again.txt\n\n"
             f"host.txt:\n\tpython3 -c 'import {PACKAGE}' 2>/dev/null && echo has > host.txt"
             " || echo lacks > host.txt\n")


def unpacked(workdir: Path) -> list[Path]:
    """The environments unpacked in a worker's cache (not their .meta records)."""
    return sorted(p for p in workdir.glob("forever/env-*") if not p.name.endswith(".meta"))


def test_the_venv_packs_activate_script_is_sourced_for_rules_and_libraries(packed, tmp_path):
    # venv-pack's bin/activate exports VIRTUAL_ENV_PROMPT, which vinemake itself never sets,
    # and its prompt (PS1), which is not kept.
    root = workflow(tmp_path / "wf", packed, (
        "@environment env.tar.gz\nout.txt:\n"
        "\techo \"\\$VIRTUAL_ENV_PROMPT \\$VIRTUAL_ENV \\$(printenv PS1 || echo no prompt)\""
        " > out.txt\n\n"
        "@environment env.tar.gz\n@library lib\n: lib.py\n"
        "\tpython3 -m vinemake.library lib.py\n\n"
        "@call lib\nlib.txt:\n\twhere lib.txt\n"))
    (root / "lib.py").write_text(
        "import os\n\n\ndef where(out):\n    with open(out, 'w') as f:\n"
        "        f.write(os.environ['VIRTUAL_ENV_PROMPT'] + '\\n')\n")
    assert started(vinemake(root)) == ["lib.txt", "out.txt"]
    prompt, prefix, rest = (root / "out.txt").read_text().split(" ", 2)
    assert prompt == Path(prefix).name and prompt.startswith("env-")
    # the pack's prompt is not kept (a PS1 vinemake itself was started with may pass through,
    # as under an activated venv)
    assert prompt not in rest
    assert (root / "lib.txt").read_text() == prompt + "\n"


def test_a_rule_runs_in_its_environment_and_the_host_lacks_the_package(packed, tmp_path):
    root = workflow(tmp_path / "wf", packed, TWO_RULES)
    run = vinemake(root)
    assert started(run) == ["again.txt", "host.txt", "in.txt"]
    name, prefix = (root / "in.txt").read_text().split()
    assert name == PACKAGE
    assert (root / "host.txt").read_text() == "lacks\n"
    # unpacked once, into the local worker's cache, and both rules ran in that copy
    assert [p.name for p in unpacked(root / ".vinemake" / "worker")] == [Path(prefix).name]
    assert (root / "again.txt").read_text() == (root / "in.txt").read_text()
    assert started(vinemake(root)) == []


def test_changing_the_environment_reruns_its_rules_and_nothing_else(packed, tmp_path):
    root = workflow(tmp_path / "wf", packed, TWO_RULES)
    vinemake(root)
    shutil.copy(packed["env2"], root / "env.tar.gz")
    run = vinemake(root, "--explain")
    assert started(run) == ["again.txt", "in.txt"]
    assert "vinemake explain: run in.txt: input 'env.tar.gz' changed\n" in run.stderr
    assert len(unpacked(root / ".vinemake" / "worker")) == 2  # old and new, each kept


def test_environment_on_the_command_line_covers_every_rule_but_local_ones(packed, tmp_path):
    root = workflow(tmp_path / "wf", packed, (
        f"a.txt:\n\t{IMPORT} > a.txt\n"
        f"b.txt: a.txt\n\tLOCAL python3 -c 'import {PACKAGE}' 2>/dev/null && echo has > b.txt"
        " || echo lacks > b.txt\n"))
    run = vinemake(root, "--environment", "env.tar.gz")
    assert started(run) == ["a.txt", "b.txt"]
    assert (root / "a.txt").read_text().split()[0] == PACKAGE
    assert (root / "b.txt").read_text() == "lacks\n"
    assert started(vinemake(root, "--environment", "env.tar.gz")) == []
    # without it, the rules are other rules: they run again, outside it
    bare = vinemake(root, "-k", check=False)
    assert started(bare) == ["a.txt"]
    assert bare.returncode == 1


def test_a_category_runs_in_its_environment_and_a_rule_may_name_its_own(packed, tmp_path):
    root = workflow(tmp_path / "wf", packed, (
        "CATEGORY=ml\nENVIRONMENT=env.tar.gz\n"
        f"a.txt:\n\t{IMPORT} > a.txt\n"
        f"b.txt:\nENVIRONMENT=other.tar.gz\n\t{IMPORT} > b.txt\n"
        "CATEGORY=plain\n"
        f"c.txt:\n\tpython3 -c 'import {PACKAGE}' 2>/dev/null && echo has > c.txt"
        " || echo lacks > c.txt\n"))
    shutil.copy(packed["env2"], root / "other.tar.gz")
    assert started(vinemake(root)) == ["a.txt", "b.txt", "c.txt"]
    assert (root / "a.txt").read_text().split()[0] == PACKAGE
    assert (root / "c.txt").read_text() == "lacks\n"
    a_env = (root / "a.txt").read_text().split()[1]
    b_env = (root / "b.txt").read_text().split()[1]
    assert a_env != b_env  # two environments, each unpacked once
    assert len(unpacked(root / ".vinemake" / "worker")) == 2
    shutil.copy(packed["env"], root / "other.tar.gz")
    assert started(vinemake(root)) == ["b.txt"]


def test_a_library_starts_inside_its_environment(packed, tmp_path):
    root = workflow(tmp_path / "wf", packed, (
        "@environment env.tar.gz\n@library jokes\n: jokes.py\n"
        "\tpython3 -m vinemake.library jokes.py\n\n"
        "@call jokes\nout.txt:\n\twhere out.txt\n"))
    (root / "jokes.py").write_text(
        f"import sys\nimport {PACKAGE}  # from the environment, imported once\n\n\n"
        "def where(out):\n    with open(out, 'w') as f:\n"
        f"        f.write({PACKAGE}.__name__ + ' ' + sys.prefix + '\\n')\n")
    run = vinemake(root)
    assert started(run) == ["out.txt"]
    name, prefix = (root / "out.txt").read_text().split()
    assert name == PACKAGE and Path(prefix).name.startswith("env-")


def test_a_broken_tarball_fails_its_rules_with_the_reason(tmp_path):
    root = tmp_path / "wf"
    root.mkdir()
    (root / "env.tar.gz").write_bytes(b"not a tarball")
    (root / "Vinefile").write_text("@environment env.tar.gz\nout:\n\ttouch out\n")
    run = vinemake(root, check=False)
    assert run.returncode == 1
    assert "FAILED  out: error: cannot set up the sandbox: cannot unpack the environment: " \
           in run.stderr


@pytest.mark.parametrize("vinefile, message", [
    ("@environment\nout:\n\ttouch out\n",
     "Vinefile:1:1: @environment needs one packed environment FILE, like "
     "@environment env.tar.gz"),
    ("@environment a.tar.gz b.tar.gz\nout:\n\ttouch out\n",
     "Vinefile:1:23: @environment needs one packed environment FILE, like "
     "@environment env.tar.gz"),
    ("@environment env.tar.gz\nout:\n\tLOCAL touch out\n",
     "Vinefile:1:1: an @environment rule runs on a worker: it cannot be LOCAL or MAKEFLOW"),
    ("ENVIRONMENT=a.tar.gz b.tar.gz\nout:\n\ttouch out\n",
     "Vinefile:1:13: ENVIRONMENT is one packed environment FILE, got 'a.tar.gz b.tar.gz'"),
    ("@environment nope.tar.gz\nout:\n\ttouch out\n",
     "Vinefile:2:1: source 'nope.tar.gz' does not exist and no rule makes it (did you mean "
     "'env.tar.gz'?)"),
])
def test_bad_environments_are_located_errors(tmp_path, vinefile, message):
    root = tmp_path / "wf"
    root.mkdir()
    with tarfile.open(root / "env.tar.gz", "w:gz"):
        pass
    (root / "Vinefile").write_text(vinefile)
    run = vinemake(root, check=False)
    assert run.returncode == 2
    assert run.stderr.splitlines()[0] == message


@pytest.mark.parametrize("mode", [(), ("-n",)])
def test_an_environment_option_naming_no_file_is_the_options_error(tmp_path, mode):
    (tmp_path / "Vinefile").write_text("out:\n\ttouch out\n")
    run = vinemake(tmp_path, "--environment", "nope.tar.gz", *mode, check=False)
    assert (run.returncode, run.stderr) == (
        2, "vinemake: --environment nope.tar.gz: no such file, and no rule makes it\n")
    assert not (tmp_path / "out").exists()


def test_an_environment_a_rule_makes_may_be_named_before_it_exists(tmp_path):
    (tmp_path / "Vinefile").write_text("env.tar.gz:\n\tLOCAL tar czf env.tar.gz -T /dev/null\n"
                                       "out:\n\ttouch out\n")
    run = vinemake(tmp_path, "--environment", "env.tar.gz", "-n")
    assert run.returncode == 0


def test_three_workers_each_get_the_tarball_once_and_unpack_it_once(packed, tmp_path):
    n = 3
    rules = "".join(f"@environment env.tar.gz\n@resources cores=1\nout.{i}:\n"
                    f"\t{barrier(tmp_path / 'started', n)}{IMPORT} > out.{i}\n"
                    for i in range(3 * n))
    root = workflow(tmp_path / "wf", packed, rules)
    code, err = run_with_workers(root, n, tmp_path)
    assert code == 0, err
    assert all((root / f"out.{i}").read_text().startswith(PACKAGE) for i in range(3 * n))
    size = (root / "env.tar.gz").stat().st_size
    log = next(root.glob(".vinemake/**/transfers.tsv")).read_text().splitlines()[1:]
    copies = [line.split("\t") for line in log if int(line.split("\t")[3]) == size]
    dests = [c[1] for c in copies]
    assert len(dests) == len(set(dests)) == n  # once to each worker
    assert [c[0] for c in copies].count("manager") == 1  # the rest from peers
    for i in range(n):
        assert len(unpacked(tmp_path / f"w{i}")) == 1


def conda_shaped(path: Path, count: Path, hooks: dict[str, str] | None = None) -> None:
    """A tarball laid out as conda-pack makes one: a `bin/conda-unpack` fix-up step (here a
    script that marks the prefix fixed and counts its runs), a program on `bin/`, and
    `hooks` (name -> text) in `etc/conda/activate.d`."""
    src = path.parent / "conda-src"
    (src / "bin").mkdir(parents=True)
    (src / "conda-meta").mkdir()
    if hooks is not None:
        (src / "etc" / "conda" / "activate.d").mkdir(parents=True)
        for name, text in hooks.items():
            (src / "etc" / "conda" / "activate.d" / name).write_text(text)
    (src / "bin" / "conda-unpack").write_text(
        f"#!/bin/sh\necho fixed > \"$(dirname \"$0\")/../fixed\"\necho run >> {count}\n")
    (src / "bin" / "hello").write_text("#!/bin/sh\necho hello from conda\n")
    # conda-pack's own activate is for bash, zsh and ksh (typeset): vinemake leaves it alone.
    (src / "bin" / "activate").write_text("typeset _flavor\nexport FROM_BIN_ACTIVATE=1\n")
    for script in ("conda-unpack", "hello"):
        (src / "bin" / script).chmod(0o755)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src, arcname=".")


def test_a_conda_pack_is_fixed_up_once_and_activated_with_conda_prefix(tmp_path):
    root = tmp_path / "wf"
    root.mkdir()
    count = tmp_path / "fixups"
    conda_shaped(root / "env.tar.gz", count)
    (root / "Vinefile").write_text("".join(
        f"@environment env.tar.gz\nout.{i}:\n"
        f"\thello > out.{i} && cat \"\\$CONDA_PREFIX/fixed\" >> out.{i}\n" for i in range(3)))
    assert started(vinemake(root)) == ["out.0", "out.1", "out.2"]
    assert {(root / f"out.{i}").read_text() for i in range(3)} == {"hello from conda\nfixed\n"}
    assert count.read_text() == "run\n"


def test_a_conda_packs_activate_hooks_are_sourced_once_in_name_order(tmp_path):
    root = tmp_path / "wf"
    root.mkdir()
    sourced = tmp_path / "sourced"
    conda_shaped(root / "env.tar.gz", tmp_path / "fixups", hooks={
        "20-second.sh": f'export SECOND="$FIRST then second"\necho 20 >> {sourced}\n',
        "10-first.sh": 'echo "hooks talk on stdout"\nexport FIRST="first in $CONDA_PREFIX"\n',
        "notes.txt": "export NOT_A_HOOK=1\n"})
    (root / "Vinefile").write_text("".join(
        f"@environment env.tar.gz\nout.{i}:\n"
        f"\techo \"\\$SECOND \\${{NOT_A_HOOK-unset}} \\${{FROM_BIN_ACTIVATE-unset}}\""
        f" > out.{i}\n" for i in range(3)))
    assert started(vinemake(root)) == ["out.0", "out.1", "out.2"]
    prefix = next(iter(unpacked(root / ".vinemake" / "worker")))
    assert {(root / f"out.{i}").read_text() for i in range(3)} == {
        f"first in {prefix} then second unset unset\n"}
    assert sourced.read_text() == "20\n"  # once for the three rules


@pytest.mark.parametrize("hook, message", [
    ("if then\n", "sourcing etc/conda/activate.d/bad.sh failed with exit code 2: "
     "sh: 1: etc/conda/activate.d/bad.sh: Syntax error: \"then\" unexpected"),
    ("echo no licence >&2\nreturn 3\n",
     "sourcing etc/conda/activate.d/bad.sh failed with exit code 3: no licence"),
    ("exit 0\n", "sourcing etc/conda/activate.d/bad.sh exited the shell instead of returning"),
])
def test_a_broken_activation_script_fails_its_rules_naming_the_script(tmp_path, hook, message):
    root = tmp_path / "wf"
    root.mkdir()
    conda_shaped(root / "env.tar.gz", tmp_path / "fixups", hooks={"bad.sh": hook})
    (root / "Vinefile").write_text("@environment env.tar.gz\nout:\n\ttouch out\n")
    run = vinemake(root, check=False)
    assert run.returncode == 1
    assert ("FAILED  out: error: cannot set up the sandbox: cannot activate the environment: "
            + message + "\n") in run.stderr
    assert not (root / "out").exists()


def test_a_venv_tarred_as_it_is_fails_naming_its_activate_script(tmp_path):
    # venv's own bin/activate names the directory it was made in: not relocatable.
    venv = tmp_path / "plain"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    root = tmp_path / "wf"
    root.mkdir()
    with tarfile.open(root / "env.tar.gz", "w:gz") as tar:
        tar.add(venv, arcname=".")
    (root / "Vinefile").write_text("@environment env.tar.gz\nout:\n\ttouch out\n")
    run = vinemake(root, check=False)
    assert run.returncode == 1
    assert ("FAILED  out: error: cannot set up the sandbox: cannot activate the environment: "
            f"bin/activate sets VIRTUAL_ENV to {venv}, not to where the environment is: it is "
            "not relocatable (pack it with venv-pack or conda-pack)\n") in run.stderr
