"""The least a Python program can do per command: the floor under vinemake's dispatch.

    python bench/spawnfloor.py DIR          # run every command of DIR/Vinefile, cores at once

Runs each rule's command of a Vinefile of independent rules (no dependencies: it does not
read them) with `/bin/sh -c`, through the same glibc posix_spawn vinemake's worker uses, as
many at once as this machine has cores, reaping with one blocking wait4. No manager, no
sandbox, no provenance, no results: what is left of a run when all of vinemake is taken
away but the language it is written in. bench/dispatch.py times it beside the real tools.
"""

from __future__ import annotations

import os
import sys

from vinemake.worker.runner import spawn_shell


def commands(vinefile: str) -> list[str]:
    with open(vinefile) as f:
        return [line[1:].rstrip("\n") for line in f if line.startswith("\t")]


def run(todo: list[str], cwd: str, slots: int) -> int:
    """Run `todo` `slots` at a time; how many failed."""
    base_env = dict(os.environb)
    err = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    running = failed = 0
    for command in todo:
        if running == slots:
            failed += _reap_one()
            running -= 1
        spawn_shell(command, cwd, (), base_env, err)
        running += 1
    for _ in range(running):
        failed += _reap_one()
    return failed


def _reap_one() -> int:
    _, status = os.wait()
    return 0 if os.waitstatus_to_exitcode(status) == 0 else 1


def main() -> None:
    root = os.path.abspath(sys.argv[1])
    sys.exit(1 if run(commands(os.path.join(root, "Vinefile")), root, os.cpu_count() or 1)
             else 0)


if __name__ == "__main__":
    main()
