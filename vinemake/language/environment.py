"""Packed environments (`@environment FILE`, `ENVIRONMENT=FILE`, `--environment FILE`): a
rule's sources gain FILE.

The environment's tarball is an input of every rule that runs in it, so it reaches each worker
like any input, its content hash is part of each such rule's key (changing it reruns those
rules and nothing else), and a rule that makes it comes first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from vinemake.common.errors import InputError
from vinemake.common.spec import FileRef, RuleSpec, Workflow

__all__ = ["with_source", "with_environment", "in_environments"]


def with_source(sources: tuple[FileRef, ...], path: str) -> tuple[FileRef, ...]:
    """`sources` with the environment file `path` among them (once)."""
    if any(f.path == path for f in sources):
        return sources
    return (*sources, FileRef(path, path))


def with_environment(workflow: Workflow, path: str, exists: bool = True) -> Workflow:
    """`--environment FILE`: every rule that runs on a worker and names no environment of its
    own runs in FILE (LOCAL rules and sub-workflows run on this host, as they are). A FILE
    that does not `exist` must be one a rule makes: the option, not a rule, is then wrong."""
    if not exists and not any(t.path == path for rule in workflow.rules for t in rule.targets):
        raise InputError(f"--environment {path}: no such file, and no rule makes it")
    return dataclasses.replace(workflow, rules=in_environments(workflow.rules,
                                                               lambda category: path))


def in_environments(rules: Sequence[RuleSpec], environment_of) -> tuple[RuleSpec, ...]:
    """Each rule that names no environment of its own in its category's (`environment_of`:
    a mapping or a function of the category name; "" for none). LOCAL rules and sub-workflows
    run on this host as they are; a function call runs inside its library's environment."""
    get = environment_of.get if isinstance(environment_of, Mapping) else environment_of
    out = []
    for rule in rules:
        path = None if (rule.environment or rule.local or rule.subworkflow or rule.call) \
            else get(rule.category)
        out.append(dataclasses.replace(rule, environment=path,
                                       sources=with_source(rule.sources, path))
                   if path else rule)
    return tuple(out)
