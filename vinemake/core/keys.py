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
from typing import NamedTuple

from vinemake.common.errors import InputError
from vinemake.common.hashing import (
    ALGORITHM,
    digest,
    encode,
    hex_digest,
    raw_digest,
    source_key,
    tree_key,
)
from vinemake.common.spec import FileRef, Resources, RuleSpec
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
             resources: Resources | None = None,
             known: tuple[str, tuple[Output, ...]] | None = None) -> RuleKey:
    """The key of `rule` given the keys of its inputs (by path) and of the library it calls.

    `known`: its key and outputs, made already (Keys has them from the run's keying): only
    its parts and inputs are made, not the key's text and digests again.
    """
    res = resources if resources is not None else rule.resources
    kind = _kind(rule) if (rule.local or rule.subworkflow or rule.call or rule.library) else ""
    # Each part is hashed alone, so its own encoding only has to be unambiguous by itself.
    # The (name, digest) pairs other rules share are made once and shared.
    command = ("command", digest(shell_words(rule.command).encode("utf-8", "surrogateescape")))
    parts = (command, *_rest_parts(rule.env, res.cores, res.gpus, library_key, kind))
    sources = rule.sources
    if known is not None:
        return _tuple_new(RuleKey, (known[0], parts, tuple(sorted(
            [(p, input_keys[p]) for p in [norm(f.path) for f in sources]])) if sources else (),
            known[1]))
    # Fixed-width digests, then counted netstrings: unambiguous without a general encoder.
    head = "".join([part[1] for part in parts])
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
        text = head + _sources_text([(sb, input_keys[p]) for p, sb in pairs])
        inputs = tuple(sorted([(p, input_keys[p]) for p, _ in pairs]))
    targets = rule.targets
    text += _targets_text(targets)
    key = f"rule-{ALGORITHM}-{digest(text.encode('utf-8', 'surrogateescape'))}"
    # tuple.__new__: a NamedTuple's own __new__ is a Python function, called per output.
    outputs = tuple([_tuple_new(Output, (norm(f.path), f.sandbox, output_key(key, f.sandbox)))
                     for f in targets])
    return _tuple_new(RuleKey, (key, parts, inputs, outputs))


def _sources_text(sandboxed: list[tuple[str, str]]) -> str:
    """A rule's inputs in its key's text: (sandbox name, key) pairs, sorted, as counted
    netstrings (the one- and two-input cases are written inline where speed counts; they
    must say the same)."""
    sandboxed.sort()
    return f"{len(sandboxed)}:" + "".join([f"{len(sb)}:{sb}{len(k)}:{k}" for sb, k in sandboxed])


def _targets_text(targets) -> str:
    """A rule's outputs in its key's text: their sandbox names, sorted, as counted netstrings."""
    if len(targets) == 1:
        name = targets[0].sandbox
        return f"1:{len(name)}:{name}"
    names = sorted([f.sandbox for f in targets])
    return f"{len(names)}:" + "".join([f"{len(n)}:{n}" for n in names])


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


_RULE = f"rule-{ALGORITHM}-"
_OUT = f"out-{ALGORITHM}-"
_NOT_KEYED, _ONE_OUTPUT, _NAMED = 0, 1, 2  # where a rule's output keys are kept


class Keys:
    """Keys for a whole graph: `rules` by rule id, `files` by path (sources and outputs).

    Held compactly: each rule's digest and its single output's digest as 16 bytes in flat
    arrays indexed by rule id (a million RuleKeys of tuples and hex strings cost ~1 KB each;
    docs/performance.md). Hex is made where a key is written or shown: `key_of(rid)` and
    `outputs_of(rid)` cheaply, `rules[rid]` a whole RuleKey (parts and inputs hashed again).
    Made lazily (compute_keys(lazy=True)), a key is computed when first asked for, with the
    keys of every rule before it in topological order.
    """

    def __init__(self, specs: list, producer: Mapping[str, int], resources_of,
                 libraries: Mapping[str, RuleSpec]):
        size = len(specs)
        self._specs = specs  # RuleSpec by rule id (None where not keyed)
        self._producer = producer
        self._resources_of = resources_of
        self._libraries = libraries
        self._state = bytearray(size)
        self._digests = bytearray(16 * size)
        self._outs = bytearray(16 * size)
        self._named: dict[str, str] = {}  # sources, several outputs of a rule, derived keys
        self._cache: dict[int, RuleKey] = {}
        self._next: Callable[[int | None], None] | None = None  # keys up to a rule, or all
        self.rules: Mapping[int, RuleKey] = _RuleView(self)
        self.files: Mapping[str, str] = _FileView(self)

    def _keyed(self, rid: int) -> bool:
        """Has `rid` a key? Made now (with those before it) if it is still to be made."""
        if rid < len(self._state) and self._state[rid]:
            return True
        if self._next is None or not (0 <= rid < len(self._specs)) \
                or self._specs[rid] is None:
            return False
        self._next(rid)
        return self._state[rid] != _NOT_KEYED

    def _finish(self) -> None:
        if self._next is not None:
            self._next(None)

    def key_of(self, rid: int) -> str:
        """The key of rule `rid` (KeyError if it is not keyed)."""
        if not self._keyed(rid):
            raise KeyError(rid)
        return _RULE + self._digests[16 * rid:16 * rid + 16].hex()

    def outputs_of(self, rid: int) -> tuple[Output, ...]:
        """(path, sandbox, key) of each output of rule `rid`, without hashing anything."""
        if not self._keyed(rid):
            raise KeyError(rid)
        targets = self._specs[rid].targets
        if self._state[rid] == _ONE_OUTPUT:
            f = targets[0]
            path = f.path
            return (_tuple_new(Output, (norm(path) if "/" in path else path, f.sandbox,
                                        _OUT + self._outs[16 * rid:16 * rid + 16].hex())),)
        named = self._named
        return tuple([_tuple_new(Output, (p, f.sandbox, named[p]))
                      for f in targets for p in (norm(f.path),)])

    def file_key(self, path: str, advance: bool = True) -> str | None:
        """The key of the file at the normalised `path`, None if it has none. (`advance`:
        make the keys it needs; never while keys are being made.)"""
        rid = self._producer.get(path)
        if rid is not None and (self._keyed(rid) if advance else rid < len(self._state)) \
                and self._state[rid] == _ONE_OUTPUT:
            return _OUT + self._outs[16 * rid:16 * rid + 16].hex()
        key = self._named.get(path)
        if key is None and advance and self._next is not None:
            self._finish()  # a path under a made directory is keyed by a rule that reads it
            key = self._named.get(path)
        return key

    def _rule_key(self, rid: int) -> RuleKey:
        rk = self._cache.get(rid)
        if rk is None:
            if len(self._cache) >= 4096:  # the engine asks again for the rules in flight
                self._cache.clear()
            rule = self._specs[rid]
            lib = self._libraries.get(rule.call) if rule.call else None
            res = self._resources_of(rule) if self._resources_of else rule.resources
            rk = self._cache[rid] = rule_key(rule, self.files,
                                             self.key_of(lib.id) if lib else None, res,
                                             (self.key_of(rid), self.outputs_of(rid)))
        return rk


class _RuleView(Mapping):
    """`Keys.rules`: a RuleKey made on demand for each keyed rule id."""

    def __init__(self, keys: Keys):
        self._keys = keys

    def __getitem__(self, rid: int) -> RuleKey:
        if not (type(rid) is int and rid >= 0 and self._keys._keyed(rid)):
            raise KeyError(rid)
        return self._keys._rule_key(rid)

    def __contains__(self, rid) -> bool:
        return type(rid) is int and rid >= 0 and self._keys._keyed(rid)

    def __iter__(self):
        self._keys._finish()
        return (rid for rid, s in enumerate(self._keys._state) if s)

    def __len__(self) -> int:
        self._keys._finish()
        return len(self._keys._state) - self._keys._state.count(_NOT_KEYED)


class _FileView(Mapping):
    """`Keys.files`: the key of each source and made file by path."""

    def __init__(self, keys: Keys):
        self._keys = keys

    def __getitem__(self, path: str) -> str:
        key = self._keys.file_key(path)
        if key is None:
            raise KeyError(path)
        return key

    def __contains__(self, path) -> bool:
        return self._keys.file_key(path) is not None

    def _single(self):
        keys = self._keys
        return (norm(keys._specs[rid].targets[0].path)
                for rid, s in enumerate(keys._state) if s == _ONE_OUTPUT)

    def __iter__(self):
        self._keys._finish()
        yield from self._keys._named
        yield from self._single()

    def __len__(self) -> int:
        self._keys._finish()
        return len(self._keys._named) + self._keys._state.count(_ONE_OUTPUT)


def compute_keys(order: Sequence[RuleSpec], source_keys: Mapping[str, str],
                 resources_of: Callable[[RuleSpec], Resources] | None = None,
                 dir_members: Mapping[str, Sequence[str]] | None = None,
                 producer: Mapping[str, int] | None = None, lazy: bool = False) -> Keys:
    """Keys for every rule in `order` (topological), from the content keys of the sources.

    A library rule is keyed when first needed, so its callers may come before it in `order`.
    A path read under a made directory is keyed from that directory's key; a directory that
    holds made files (`dir_members`) from the keys of those files. `producer` (made file →
    rule id, the graph's) is built from `order` when not given. `lazy`: each key is made when
    first asked for (a reading error is then raised there; the graph has ruled them out).
    """
    if producer is None:
        producer = {norm(f.path): r.id for r in order for f in r.targets}
    specs: list = [None] * (max((r.id for r in order), default=-1) + 1)
    for r in order:
        specs[r.id] = r
    libraries = {r.library: r for r in order if r.library}
    keys = Keys(specs, producer, resources_of, libraries)
    named = keys._named
    named.update(source_keys)
    state, digests, outs = keys._state, keys._digests, keys._outs
    get_producer, get_named = producer.get, named.get
    rests: dict = {}  # env, resources, library and kind: shared by most rules
    last: list = [None, None, ""]  # the env, resources and rest of the last plain rule

    def lookup(rule: RuleSpec, f: FileRef) -> str:
        path = f.path
        if "/" in path:
            path = norm(path)
        rid = get_producer(path)
        if rid is not None and state[rid] == _ONE_OUTPUT:
            return _OUT + outs[16 * rid:16 * rid + 16].hex()
        key = get_named(path)
        if key is None:
            key = _known(path)
            if key is None:
                raise InputError(f"{rule.location}: rule '{rule.name}' reads '{f.path}', "
                                 f"which is neither a source nor made by an earlier rule")
        return key

    def _known(path: str) -> str | None:
        if dir_members and path in dir_members:
            key = named[path] = tree_key((m, keys.file_key(m, False))
                                         for m in dir_members[path])
            return key
        cut = path.rfind("/")
        while cut > 0:
            parent = path[:cut]
            known = keys.file_key(parent, False)
            if known is not None:  # inside a made directory: named by the directory's key
                key = named[path] = f"out-{ALGORITHM}-{digest(encode(known, path))}"
                return key
            cut = parent.rfind("/")
        return None

    def key_rule(rule: RuleSpec) -> str:
        rid = rule.id
        if state[rid]:
            return _RULE + digests[16 * rid:16 * rid + 16].hex()
        lib_key = None
        if rule.call:
            lib = libraries.get(rule.call)
            if lib is None:
                raise InputError(f"{rule.location}: rule '{rule.name}' calls library "
                                 f"'{rule.call}', which no rule defines")
            lib_key = key_rule(lib)
        res = resources_of(rule) if resources_of else rule.resources
        kind = _kind(rule) if (rule.local or rule.subworkflow or rule.call or rule.library) \
            else ""
        if rule.env is last[0] and res is last[1] and not lib_key and not kind:
            rest = last[2]  # as the rule before: no tuple to hash
        else:
            shape = (rule.env, res.cores, res.gpus, lib_key, kind)
            rest = rests.get(shape)
            if rest is None:
                rest = rests[shape] = "".join(part[1] for part in _rest_parts(*shape))
            if not lib_key and not kind:
                last[:] = (rule.env, res, rest)
        command = rule.command
        if "  " in command or "\t" in command or command != command.strip(" "):
            command = shell_words(command)
        text = hex_digest(command.encode("utf-8", "surrogateescape")) + rest
        # The same text as rule_key() writes, without its parts, inputs and outputs tuples.
        sources = rule.sources
        if not sources:
            text += "0:"
        elif len(sources) == 1:
            f = sources[0]
            k = lookup(rule, f)
            text = f"{text}1:{len(f.sandbox)}:{f.sandbox}{len(k)}:{k}"
        elif len(sources) == 2:  # the commonest many: sorted by (sandbox, key) by hand
            a, b = sources
            sa, ka, sb, kb = a.sandbox, lookup(rule, a), b.sandbox, lookup(rule, b)
            if sb < sa or (sb == sa and kb < ka):
                sa, ka, sb, kb = sb, kb, sa, ka
            text = f"{text}2:{len(sa)}:{sa}{len(ka)}:{ka}{len(sb)}:{sb}{len(kb)}:{kb}"
        else:
            text += _sources_text([(f.sandbox, lookup(rule, f)) for f in sources])
        targets = rule.targets
        text += _targets_text(targets)
        raw = raw_digest(text.encode("utf-8", "surrogateescape"))
        digests[16 * rid:16 * rid + 16] = raw
        key = _RULE + raw.hex()
        if len(targets) == 1:
            name = targets[0].sandbox
            outs[16 * rid:16 * rid + 16] = raw_digest(
                f"T2:S{len(key)}:{key}S{len(name)}:{name}".encode("utf-8", "surrogateescape"))
            state[rid] = _ONE_OUTPUT
        else:
            for f in targets:
                named[norm(f.path)] = output_key(key, f.sandbox)
            state[rid] = _NAMED
        return key

    position = [0]  # the next rule of `order` to key

    def key_up_to(rid: int | None) -> None:
        """Key the rules of `order` until `rid` has a key (None: all of them)."""
        i, n = position[0], len(order)
        try:
            while i < n and (rid is None or not state[rid]):
                rule = order[i]
                if not state[rule.id]:
                    key_rule(rule)
                i += 1
        finally:
            position[0] = i
        if i == n:
            keys._next = None

    keys._next = key_up_to
    if not lazy:
        key_up_to(None)
    return keys


@functools.lru_cache(maxsize=4096)  # (rules share a few: made once, not once a rule)
def _rest_parts(env, cores, gpus, library_key, kind) -> tuple[tuple[str, str], ...]:
    """The (name, digest) parts of a rule key after its command's, in their order."""
    return (_env_part(env), _resources_part(cores, gpus),
            _library_part(library_key) if library_key else _NO_LIBRARY,
            _kind_part(kind) if kind else _NO_KIND)
