"""What `--check` and `-n` print: counts, and each rule's command with its files and resources."""

from __future__ import annotations

import io
import shlex
from collections.abc import Iterable, Mapping
from typing import TextIO

from vinemake.common.spec import Resources, RuleSpec
from vinemake.core.graph import BuildGraph
from vinemake.core.plan import Reason

__all__ = ["summary", "dry_run_text", "write_dry_run"]


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


def dry_run_text(graph: BuildGraph, rids: Iterable[int] | None = None) -> str:
    """Each rule's command in a valid order, its files and resources as `#` comments.

    `rids` (default: every rule, in graph order) picks the rules.
    """
    out = io.StringIO()
    write_dry_run(out, graph, rids)
    return out.getvalue()


def write_dry_run(out: TextIO, graph: BuildGraph, rids: Iterable[int] | None = None,
                  reasons: Mapping[int, Reason] | None = None) -> None:
    """Write dry_run_text to `out` a few thousand rules at a time (at a million rules the
    whole text is hundreds of MB); `reasons` adds why each rule runs."""
    rules = graph.workflow.rules
    categories = {c.name: c.resources for c in graph.workflow.categories}
    described: dict[tuple[Resources, str], str] = {}  # most rules share both
    out_lines: list[str] = []
    add = out_lines.append
    for rid in graph.order() if rids is None else rids:
        rule = rules[rid]
        pair = (rule.resources, rule.category)
        about = described.get(pair)
        if about is None:
            notes = [f"category {rule.category}"]
            resources = _resources(rule, categories.get(rule.category))
            if resources:
                notes.append(resources)
            about = described[pair] = "; ".join(notes)
        if rule.local:
            about += "; local"
        kind = ""
        if rule.library:
            kind = f"library {rule.library}: "
        elif rule.call:
            kind = f"call {rule.call}: "
        add(f"# {kind}{rule.name} (line {rule.location.line}; {about})\n")
        if reasons and rid in reasons:
            reason = reasons[rid]
            add(f"#   why: {reason.action}, {reason.text}\n")
        if rule.sources:
            add(f"#   in:  {_files(rule.sources)}\n")
        if rule.targets:
            add(f"#   out: {_files(rule.targets)}\n")
        add(rule.command + "\n")
        if len(out_lines) >= 16384:
            out.write("".join(out_lines))
            out_lines.clear()
    out.write("".join(out_lines))
