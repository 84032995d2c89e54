"""What `--check` and `-n` print: counts, and each rule's command with its files and resources."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping

from vinemake.common.spec import Resources, RuleSpec
from vinemake.core.graph import BuildGraph

__all__ = ["summary", "dry_run_text"]


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def summary(name: str, graph: BuildGraph) -> str:
    """`Vinefile: 12 rules, 30 files (8 sources), 2 categories`."""
    rules = graph.workflow.rules
    categories = {rules[rid].category for rid in graph.rule_ids}
    files = len(graph.producer) + len(graph.sources)
    return (f"{name}: {_count(len(graph.rule_ids), 'rule')}, {_count(files, 'file')} "
            f"({_count(len(graph.sources), 'source')}), {_count(len(categories), 'category')}"
            .replace("categorys", "categories"))


def _resources(rule: RuleSpec, category: Resources | None) -> str:
    """`cores=4 memory=2000MB` for what the rule (or else its category) asks for."""
    own, cat = rule.resources, category or Resources()
    parts = []
    for name, label, unit in (("cores", "cores", ""), ("memory_mb", "memory", "MB"),
                              ("disk_mb", "disk", "MB"), ("gpus", "gpus", ""),
                              ("wall_time_s", "wall", "s"),
                              ("mpi_processes", "mpi_processes", "")):
        value = getattr(own, name)
        value = getattr(cat, name) if value is None else value
        if value is not None:
            value = int(value) if float(value).is_integer() else value
            parts.append(f"{label}={value}{unit}")
    return " ".join(parts)


def _files(refs) -> str:
    return " ".join(shlex.quote(r.path) if r.sandbox == r.path
                    else f"{shlex.quote(r.path)}->{shlex.quote(r.sandbox)}" for r in refs)


def dry_run_text(graph: BuildGraph, rids: Iterable[int] | None = None,
                 reasons: Mapping[int, str] | None = None) -> str:
    """Each rule's command in a valid order, its files and resources as `#` comments.

    `rids` (default: every rule, in graph order) picks the rules; `reasons` adds why each runs.
    """
    rules = graph.workflow.rules
    categories = {c.name: c.resources for c in graph.workflow.categories}
    out: list[str] = []
    for rid in graph.order() if rids is None else rids:
        rule = rules[rid]
        notes = [f"category {rule.category}"]
        resources = _resources(rule, categories.get(rule.category))
        if resources:
            notes.append(resources)
        if rule.local:
            notes.append("local")
        kind = ""
        if rule.library:
            kind = f"library {rule.library}: "
        elif rule.call:
            kind = f"call {rule.call}: "
        out.append(f"# {kind}{rule.name} (line {rule.location.line}; {'; '.join(notes)})")
        if reasons and rid in reasons:
            out.append(f"#   why: {reasons[rid]}")
        if rule.sources:
            out.append(f"#   in:  {_files(rule.sources)}")
        if rule.targets:
            out.append(f"#   out: {_files(rule.targets)}")
        out.append(rule.command)
    return "".join(line + "\n" for line in out)


