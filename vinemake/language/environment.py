"""Packed environments (`@environment FILE`, `--environment FILE`): a rule's sources gain FILE.

The environment's tarball is an input of every rule that runs in it, so it reaches each worker
like any input, its content hash is part of each such rule's key (changing it reruns those
rules and nothing else), and a rule that makes it comes first.
"""

from __future__ import annotations

import dataclasses

from vinemake.common.spec import FileRef, Workflow

__all__ = ["with_source", "with_environment"]


def with_source(sources: tuple[FileRef, ...], path: str) -> tuple[FileRef, ...]:
    """`sources` with the environment file `path` among them (once)."""
    if any(f.path == path for f in sources):
        return sources
    return (*sources, FileRef(path, path))


def with_environment(workflow: Workflow, path: str) -> Workflow:
    """`--environment FILE`: every rule that runs on a worker and names no environment of its
    own runs in FILE (LOCAL rules and sub-workflows run on this host, as they are)."""
    rules = tuple(
        rule if rule.environment or rule.local or rule.subworkflow or rule.library
        else dataclasses.replace(rule, environment=path,
                                 sources=with_source(rule.sources, path))
        for rule in workflow.rules)
    return dataclasses.replace(workflow, rules=rules)
