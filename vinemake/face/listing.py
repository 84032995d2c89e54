"""What `--check` and `-n` print: counts, and each rule's command with its files and resources."""

from __future__ import annotations

import io
import re
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


_unsafe = re.compile(r"[^\w@%+=:,./-]", re.ASCII).search  # what shlex.quote leaves bare


def _quote(path: str) -> str:
    return path if path and not _unsafe(path) else shlex.quote(path)


def _file(r) -> str:
    path = r.path
    if r.sandbox == path:
        return path if path and not _unsafe(path) else shlex.quote(path)
    return f"{_quote(path)}->{_quote(r.sandbox)}"


def _files(refs) -> str:
    if len(refs) == 1:  # most rules' outputs: one call fewer
        return _file(refs[0])
    return " ".join([_file(r) for r in refs])


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
    last_resources = last_category = last_about = None
    for rid in graph.order() if rids is None else rids:
        rule = rules[rid]
        # Rules of one category often share one Resources object: hashed only on a change.
        if rule.resources is last_resources and rule.category is last_category:
            about = last_about
        else:
            pair = (rule.resources, rule.category)
            about = described.get(pair)
            if about is None:
                notes = [f"category {rule.category}"]
                resources = _resources(rule, categories.get(rule.category))
                if resources:
                    notes.append(resources)
                about = described[pair] = "; ".join(notes)
            last_resources, last_category, last_about = rule.resources, rule.category, about
        if rule.local:
            about += "; local"
        kind = ""
        if rule.library:
            kind = f"library {rule.library}: "
        elif rule.call:
            kind = f"call {rule.call}: "
        add(f"# {kind}{rule.name} (line {rule.location.line}; {about})\n")
        if reasons:
            reason = reasons.get(rid)
            if reason is not None:
                add(f"#   why: {reason.action}, {reason.text}\n")
        if rule.sources:
            add(f"#   in:  {_files(rule.sources)}\n")
        if rule.targets:
            add(f"#   out: {_files(rule.targets)}\n")
        add(f"{rule.command}\n")
        if len(out_lines) >= 16384:
            out.write("".join(out_lines))
            out_lines.clear()
    out.write("".join(out_lines))
