"""Merkle cache keys: names for sources, rules and outputs, known before anything runs.

A key names *provenance*, not bytes on disk: a rule's key covers everything that decides what
its command produces (the expanded command, exported environment, the resources that change
results, the library it calls, and the keys of its inputs under their sandbox names), and an
output's key is its rule's key plus the output's name. So a dependent's key changes exactly
when something upstream changes, and keys for the whole graph are computed in one pass in
topological order from the sources' content hashes.

Fields are length-prefixed before hashing, so `("ab", "c")` and `("a", "bc")` never collide.

Which resources change results: `cores` and `gpus` are part of the key, because threaded and
GPU programs routinely size their work or pick algorithms from them (OMP_NUM_THREADS, cuDNN
heuristics), and outputs can differ in the last bits. `memory`, `disk` and `wall_time` are
limits: raising one after a rule ran out of it must not rebuild everything, so they (and the
MEMORY/DISK/WALL_TIME variables in the environment) are left out.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from vinemake.common.errors import InputError
from vinemake.common.hashing import ALGORITHM, digest, encode, source_key, tree_key
from vinemake.common.spec import Resources, RuleSpec
from vinemake.core.graph import norm

__all__ = ["ALGORITHM", "encode", "digest", "source_key", "tree_key", "RuleKey", "rule_key",
           "shell_words",
           "output_key", "Output", "Keys", "compute_keys"]

# Environment variables that are limits, not inputs (see the module docstring).
LIMIT_VARIABLES = frozenset({"MEMORY", "DISK", "WALL_TIME"})

_EMPTY = digest(b"")
_tuple_new = tuple.__new__


def output_key(rule_key: str, name: str) -> str:
    # encode(rule_key, name) written out: the same bytes, without the general encoder's
    # recursion (this runs once per output of every rule before anything starts).
    text = f"T2:S{len(rule_key)}:{rule_key}S{len(name)}:{name}"
    return f"out-{ALGORITHM}-{digest(text.encode('utf-8', 'surrogateescape'))}"


class Output(NamedTuple):
    """One output of a rule: its path in the workflow, its name in the sandbox, its key.
    (The same three as a TaskFile's path, sandbox and key, named so order cannot matter.)"""

    path: str
    sandbox: str
    key: str


class RuleKey(NamedTuple):
    """A rule's key and what went into it, so a plan can say *which* part changed.

    `parts` are (name, digest) for command, env, resources, library and kind; `inputs` are
    (path, key) of every input, sorted by path; `outputs` are (path, sandbox, key).
    (A NamedTuple: one is kept per rule, and a tuple is made and held for less than an
    object with a dict; docs/performance.md.)
    """

    key: str
    parts: tuple[tuple[str, str], ...]
    inputs: tuple[tuple[str, str], ...]
    outputs: tuple[Output, ...]


def shell_words(command: str) -> str:
    """`command` as the shell reads its words: runs of blanks outside quotes are one space,
    and none lead or trail, so re-spacing a command (`cp  a b`, a tab) reruns nothing.

    Quoted text and backslash-escaped characters are kept exactly; a newline is kept too,
    as it separates commands. Commands without extra blanks come back unchanged (fast path).
    """
    if "  " not in command and "\t" not in command and command == command.strip(" "):
        return command
    out: list[str] = []
    quote = ""
    escaped = blank = False
    for ch in command.strip(" \t"):
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in " \t":
            blank = True
            continue
        if blank:
            out.append(" ")
            blank = False
        out.append(ch)
    return "".join(out)


def rule_key(rule: RuleSpec, input_keys: Mapping[str, str], library_key: str | None = None,
             resources: Resources | None = None) -> RuleKey:
    """The key of `rule` given the keys of its inputs (by path) and of the library it calls."""
    res = resources if resources is not None else rule.resources
    kind = _kind(rule) if (rule.local or rule.subworkflow or rule.call or rule.library) else ""
    # Each part is hashed alone, so its own encoding only has to be unambiguous by itself.
    # The (name, digest) pairs other rules share are made once and shared.
    command = ("command", digest(shell_words(rule.command).encode("utf-8", "surrogateescape")))
    env = _env_part(rule.env)
    resources_part = _resources_part(res.cores, res.gpus)
    library = _library_part(library_key) if library_key else _NO_LIBRARY
    kind_part = _kind_part(kind) if kind else _NO_KIND
    parts = (command, env, resources_part, library, kind_part)
    # Fixed-width digests, then counted netstrings: unambiguous without a general encoder.
    head = command[1] + env[1] + resources_part[1] + library[1] + kind_part[1]
    sources = rule.sources
    inputs: tuple[tuple[str, str], ...] = ()
    if not sources:  # common enough to skip sorting and zipping
        text = head + "0:"
    elif len(sources) == 1:
        f = sources[0]
        path = norm(f.path)
        k = input_keys[path]
        text = f"{head}1:{len(f.sandbox)}:{f.sandbox}{len(k)}:{k}"
        inputs = ((path, k),)
    else:
        pairs = [(norm(f.path), f.sandbox) for f in sources]
        sandboxed = sorted([(sb, input_keys[p]) for p, sb in pairs])
        text = f"{head}{len(sandboxed)}:" + "".join(
            [f"{len(sb)}:{sb}{len(k)}:{k}" for sb, k in sandboxed])
        inputs = tuple(sorted([(p, input_keys[p]) for p, _ in pairs]))
    targets = rule.targets
    if len(targets) == 1:
        name = targets[0].sandbox
        text = f"{text}1:{len(name)}:{name}"
    else:
        names = sorted([f.sandbox for f in targets])
        text = f"{text}{len(names)}:" + "".join([f"{len(n)}:{n}" for n in names])
    key = f"rule-{ALGORITHM}-{digest(text.encode('utf-8', 'surrogateescape'))}"
    # tuple.__new__: a NamedTuple's own __new__ is a Python function, called per output.
    outputs = tuple([_tuple_new(Output, (norm(f.path), f.sandbox, output_key(key, f.sandbox)))
                     for f in targets])
    return _tuple_new(RuleKey, (key, parts, inputs, outputs))


def _kind(rule: RuleSpec) -> str:
    return ("local" if rule.local else "") + ("makeflow" if rule.subworkflow else "") \
        + (f"call:{rule.call}" if rule.call else "") + (f"library:{rule.library}" if rule.library
                                                        else "")


_NO_LIBRARY = ("library", _EMPTY)
_NO_KIND = ("kind", _EMPTY)


@functools.lru_cache(maxsize=4096)
def _env_part(env: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    # Most rules of a category share one env tuple: hash it once.
    kept = tuple((k, v) for k, v in env if k not in LIMIT_VARIABLES)
    return ("environment", digest(encode(kept)) if kept else _EMPTY)


@functools.lru_cache(maxsize=256)
def _resources_part(cores, gpus) -> tuple[str, str]:
    return ("resources", digest(f"{cores!r} {gpus!r}".encode()))


@functools.lru_cache(maxsize=256)
def _library_part(library_key: str) -> tuple[str, str]:
    return ("library", digest(library_key.encode()))


@functools.lru_cache(maxsize=256)
def _kind_part(kind: str) -> tuple[str, str]:
    return ("kind", digest(kind.encode()))


@dataclass(frozen=True)
class Keys:
    """Keys for a whole graph: `rules` by rule id, `files` by path (sources and outputs)."""

    rules: Mapping[int, RuleKey]
    files: Mapping[str, str]


def compute_keys(order: Sequence[RuleSpec], source_keys: Mapping[str, str],
                 resources_of: Callable[[RuleSpec], Resources] | None = None,
                 dir_members: Mapping[str, Sequence[str]] | None = None) -> Keys:
    """Keys for every rule in `order` (topological), from the content keys of the sources.

    A library rule is keyed when first needed, so its callers may come before it in `order`.
    A path read under a made directory is keyed from that directory's key; a directory that
    holds made files (`dir_members`) from the keys of those files.
    """
    files: dict[str, str] = dict(source_keys)
    rules: dict[int, RuleKey] = {}
    libraries = {r.library: r for r in order if r.library}

    def key_rule(rule: RuleSpec) -> RuleKey:
        if rule.id in rules:
            return rules[rule.id]
        lib_key = None
        if rule.call:
            lib = libraries.get(rule.call)
            if lib is None:
                raise InputError(f"{rule.location}: rule '{rule.name}' calls library "
                                 f"'{rule.call}', which no rule defines")
            lib_key = key_rule(lib).key
        for f in rule.sources:
            path = norm(f.path)
            if path not in files and not _known(path):
                raise InputError(f"{rule.location}: rule '{rule.name}' reads '{f.path}', "
                                 f"which is neither a source nor made by an earlier rule")
        res = resources_of(rule) if resources_of else rule.resources
        rk = rule_key(rule, files, lib_key, res)
        for path, _, key in rk.outputs:
            files[path] = key
        rules[rule.id] = rk
        return rk

    def _known(path: str) -> bool:
        if path in files:
            return True
        if dir_members and path in dir_members:
            files[path] = tree_key((m, files[m]) for m in dir_members[path])
            return True
        cut = path.rfind("/")
        while cut > 0:
            parent = path[:cut]
            if parent in files:  # inside a made directory: named by the directory's key
                files[path] = f"out-{ALGORITHM}-{digest(encode(files[parent], path))}"
                return True
            cut = parent.rfind("/")
        return False

    for rule in order:
        key_rule(rule)
    return Keys(rules, files)
