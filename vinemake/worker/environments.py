"""Packed environments on a worker: unpacked once into the cache, activated for each task.

A conda-pack, venv-pack or poncho tarball reaches the worker as an input of the tasks that run
in it. The first of them unpacks it into the cache under `env-<tarball key>` (a `forever`
entry: it outlives the workflow, and counts against the worker's disk like any entry) and runs
the pack's own fix-up step: `bin/conda-unpack`, which rewrites the prefixes conda baked into
its files (venv-pack needs none: its scripts find their interpreter from where they are).
Every later task on the worker uses that directory as it is.

A task runs in it with its `bin/` first on PATH and the variable its kind of environment sets
(`VIRTUAL_ENV` for a virtual environment, which has a `pyvenv.cfg`; `CONDA_PREFIX` otherwise),
as the pack's activation script would set them. The scripts
themselves are not sourced: a venv's `activate` needs bash, and commands run under /bin/sh.
"""

from __future__ import annotations

import os
import subprocess
import tarfile

from vinemake.common.paths import remove_path
from vinemake.wire.protocol import ENVIRONMENT
from vinemake.worker.sandbox import SandboxError, tree_size

__all__ = ["EnvironmentError_", "environment_key", "unpack", "activation"]

FIXUP = "bin/conda-unpack"


class EnvironmentError_(SandboxError):  # noqa: N801 (the builtin's name is taken)
    """A packed environment could not be unpacked or fixed up."""


def environment_key(tarball_key: str) -> str:
    """The cache key of the unpacked form of the tarball `tarball_key`."""
    return ENVIRONMENT + tarball_key


def unpack(tarball: str, dest: str) -> int:
    """Unpack `tarball` into the new directory `dest`; its size in bytes."""
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
    """The variables a command gets to run inside the environment at `prefix`."""
    kind = "VIRTUAL_ENV" if os.path.exists(os.path.join(prefix, "pyvenv.cfg")) else \
        "CONDA_PREFIX"
    path = os.path.join(prefix, "bin") + os.pathsep + os.environ.get("PATH", "")
    return (("PATH", path), (kind, prefix))


def _env(prefix: str, base) -> dict[str, str]:
    return {**base, **dict(activation(prefix))}
