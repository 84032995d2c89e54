"""Packed environments on a worker: unpacked once into the cache, activated for each task.

A conda-pack, venv-pack or poncho tarball reaches the worker as an input of the tasks that run
in it. The first of them unpacks it into the cache under `env-<tarball key>` (a `forever`
entry: it outlives the workflow, and counts against the worker's disk like any entry) and runs
the pack's own fix-up step: `bin/conda-unpack`, which rewrites the prefixes conda baked into
its files (venv-pack needs none: its scripts find their interpreter from where they are).
Every later task on the worker uses that directory as it is.

A task runs in it with its `bin/` first on PATH and the variable its kind of environment sets
(`VIRTUAL_ENV` for a virtual environment, which has a `pyvenv.cfg`; `CONDA_PREFIX` otherwise),
and then with what the pack's activation scripts export on top: a virtual environment's
`bin/activate` (venv-pack's finds its prefix from `SCRIPT_PATH`, which only bash, zsh and ksh
set, so it is preset), a conda one's `etc/conda/activate.d/*.sh` hooks in name order (conda-pack's
own `bin/activate` needs `typeset`, which /bin/sh lacks, and does nothing else; poncho packs are
conda-pack tarballs). They are sourced by /bin/sh once per worker and environment, and the
variables they set or change are kept for every task (so they cost nothing per task).
"""

from __future__ import annotations

import os
import shutil
import subprocess

from vinemake.common.paths import remove_path
from vinemake.wire.protocol import ENVIRONMENT
from vinemake.worker.sandbox import SandboxError, tree_size

__all__ = ["EnvironmentError_", "environment_key", "unpack", "activation", "activate",
           "activation_scripts"]

FIXUP = "bin/conda-unpack"
VENV_SCRIPT = "bin/activate"
CONDA_HOOKS = "etc/conda/activate.d"
# What sourcing a script may change that is no part of the environment: the prompt, and
# what any shell sets for itself.
NOT_KEPT = frozenset({"PS1", "PWD", "OLDPWD", "SHLVL", "_"})
SOURCE_TIMEOUT_S = 120
# Sources $1 with its output kept off stdout, then prints the environment it left.
_SOURCE = 'SCRIPT_PATH="$1"; . "$1" >&2 && exec "$2" -0'


class EnvironmentError_(SandboxError):  # noqa: N801 (the builtin's name is taken)
    """A packed environment could not be unpacked or fixed up."""


def environment_key(tarball_key: str) -> str:
    """The cache key of the unpacked form of the tarball `tarball_key`."""
    return ENVIRONMENT + tarball_key


def unpack(tarball: str, dest: str) -> int:
    """Unpack `tarball` into the new directory `dest`; its size in bytes."""
    import tarfile  # here: a worker loads it only for a rule with a packed environment

    try:
        with tarfile.open(tarball) as tar:
            os.mkdir(dest)
            # "tar": no absolute names, nothing outside dest; links may point anywhere
            # (a venv's bin/python3 is a link to the system interpreter).
            tar.extractall(dest, filter="tar")
    except (tarfile.TarError, OSError) as e:
        remove_path(dest)
        raise EnvironmentError_(f"cannot unpack the environment: {e}") from None
    return tree_size(dest)


def fix_up(prefix: str) -> None:
    """Run the pack's own fix-up step in its final place (conda-pack's conda-unpack)."""
    script = os.path.join(prefix, FIXUP)
    if not os.path.exists(script):
        return
    done = subprocess.run([script], cwd=prefix, env=_env(prefix, os.environ),
                          stdin=subprocess.DEVNULL, capture_output=True)
    if done.returncode != 0:
        tail = done.stderr[-500:].decode("utf-8", "replace").strip()
        raise EnvironmentError_(f"{FIXUP} failed with exit code {done.returncode}: {tail}")


def activation(prefix: str) -> tuple[tuple[str, str], ...]:
    """The variables that put a command inside the environment at `prefix`, before its
    activation scripts run."""
    path = os.path.join(prefix, "bin") + os.pathsep + os.environ.get("PATH", "")
    return (("PATH", path), (_kind(prefix), prefix))


def activation_scripts(prefix: str) -> tuple[str, ...]:
    """The scripts /bin/sh sources, in order, to activate the environment at `prefix`."""
    if _is_venv(prefix):
        script = os.path.join(prefix, VENV_SCRIPT)
        return (script,) if os.path.isfile(script) else ()
    hooks = os.path.join(prefix, CONDA_HOOKS)
    try:
        names = sorted(n for n in os.listdir(hooks) if n.endswith(".sh"))
    except (FileNotFoundError, NotADirectoryError):
        return ()
    return tuple(os.path.join(hooks, n) for n in names)


def activate(prefix: str, base=None) -> tuple[tuple[str, str], ...]:
    """The variables a command gets inside the environment at `prefix`: `activation`'s, then
    what each activation script sets or changes, sourced in turn on top of `base`."""
    variables = dict(activation(prefix))
    kind = _kind(prefix)
    env = {**(os.environ if base is None else base), **variables}
    for script in activation_scripts(prefix):
        after = _source(script, env, prefix)
        moved = after.get(kind, prefix)
        if os.path.realpath(moved) != os.path.realpath(prefix):
            # A venv's own activate names the directory it was made in: tarred as it is,
            # it would send every command to a place that is not there.
            raise EnvironmentError_(
                f"cannot activate the environment: {os.path.relpath(script, prefix)} sets "
                f"{kind} to {moved}, not to where the environment is: it is not relocatable "
                "(pack it with venv-pack or conda-pack)")
        variables.update((k, v) for k, v in after.items()
                         if env.get(k) != v and k not in NOT_KEPT)
        env = {**env, **variables}
    return tuple(variables.items())


def _source(script: str, env: dict[str, str], prefix: str) -> dict[str, str]:
    """The environment /bin/sh has after sourcing `script` in `env`."""
    name = os.path.relpath(script, prefix)
    program = shutil.which("env") or "/usr/bin/env"
    try:
        done = subprocess.run(["/bin/sh", "-c", _SOURCE, "sh", script, program], cwd=prefix,
                              env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=SOURCE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise EnvironmentError_(f"cannot activate the environment: sourcing {name} did not "
                                f"finish in {SOURCE_TIMEOUT_S} s") from None
    if done.returncode != 0:
        # Names inside the environment read better relative to it, as `name` is.
        tail = done.stderr[-500:].decode("utf-8", "replace").strip().replace(prefix + "/", "")
        raise EnvironmentError_(f"cannot activate the environment: sourcing {name} failed "
                                f"with exit code {done.returncode}" + (f": {tail}" if tail else ""))
    if not done.stdout:
        raise EnvironmentError_(f"cannot activate the environment: sourcing {name} exited "
                                "the shell instead of returning")
    pairs = (item.split(b"=", 1) for item in done.stdout.split(b"\0") if b"=" in item)
    return {os.fsdecode(k): os.fsdecode(v) for k, v in pairs}


def _is_venv(prefix: str) -> bool:
    return os.path.exists(os.path.join(prefix, "pyvenv.cfg"))


def _kind(prefix: str) -> str:
    """The variable that names the environment's prefix, for its kind of environment."""
    return "VIRTUAL_ENV" if _is_venv(prefix) else "CONDA_PREFIX"


def _env(prefix: str, base) -> dict[str, str]:
    return {**base, **dict(activation(prefix))}
