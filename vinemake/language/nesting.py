"""Sub-workflows read ahead: a MAKEFLOW loop is a located error before anything runs.

A `MAKEFLOW file` rule runs vinemake on `file`, in the same directory. The files such rules
name are read here (those that exist: one made by an earlier rule is checked when it runs,
by core/subworkflows.py), following their own MAKEFLOW rules, and a file that would run
itself again, directly or through others, is reported where the loop closes, with its chain.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from vinemake.common.errors import VinefileError, VinemakeError
from vinemake.common.spec import Workflow
from vinemake.core.graph import read_line
from vinemake.core.subworkflows import chain, loop
from vinemake.language.expand import split_words

__all__ = ["check_subworkflows"]


def check_subworkflows(workflow: Workflow, path: str, root: str,
                       environ: Mapping[str, str]) -> None:
    """Raise a VinefileError if a sub-workflow of `workflow` (read from `path`, run in
    `root`) would run a file of its chain."""
    if any(rule.subworkflow for rule in workflow.rules):
        _walk(workflow, chain(path, environ), root, environ, set())


def _walk(workflow: Workflow, files: tuple[str, ...], root: str, environ, done: set) -> None:
    # Here, not at the top: a workflow read from the parsed-rules cache never loads lark.
    from vinemake.language.parser import parse_file

    for rule in workflow.rules:
        if not rule.subworkflow:
            continue
        circle = loop(files, rule.command, root)
        if circle is not None:
            where = rule.command_location
            raise VinefileError(where, f"sub-workflow loop: {circle}", read_line(where, root))
        name = split_words(rule.command)[0]
        path = os.path.join(root, name)
        real = os.path.realpath(path)
        if real in done or not os.path.isfile(path):
            continue
        try:  # named as the rule names it: sub-workflows run in `root`, the working directory
            inner = parse_file(name if os.path.samefile(root, ".") else path, environ)
        except VinemakeError:
            continue  # its own run reports it
        _walk(inner, (*files, real), root, environ, done)
        done.add(real)
