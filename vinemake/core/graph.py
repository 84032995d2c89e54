"""The build graph: which rule makes each file, which rules each rule waits for, validated.

Why the plain lists and the networkx graph live side by side: a Vinefile can hold a million
rules, or one rule reading 100k files. networkx keeps a dict per node and per edge, which costs
seconds and hundreds of megabytes at that size, and the engine's hot loop must not pay a
networkx query per finished rule. So `build()` resolves every rule's dependencies straight from
the RuleSpecs into integer lists (`deps`, `dependents`, `producer`), checks for cycles with
Kahn's algorithm on those lists, and creates the networkx DiGraph of file and rule nodes only
when asked: to name the rules on a cycle and to export. This is the only module that imports
networkx.

File paths are keys in one spelling, `norm(path)`: `./a` and `a/` are `a`.

A directory can be a source. A rule reading `mydir` depends on the producer of `mydir` if a rule
makes it, and on the producers of everything under it (`mydir/1.txt`); a rule reading
`mydir/1.txt` depends on the producer of `mydir` when no rule makes the file itself.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import json
import os
import posixpath
import re
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter, eq

from vinemake.common.errors import InputError, VinefileError, VinefileErrors
from vinemake.common.records import dataclass
from vinemake.common.spec import FileRef, Location, RuleSpec, Workflow, is_url
from vinemake.common.suggest import did_you_mean
from vinemake.core.outside import unseen_by_workers
from vinemake.core.statedir import NAME as STATE_DIR_NAME

__all__ = ["BuildGraph", "EXPORT_FORMATS", "norm"]

EXPORT_FORMATS = ("dot", "mermaid", "json")
_NONE: tuple[int, ...] = ()


def norm(path: str) -> str:
    """The one spelling of a path used as a key: `./a//b/` → `a/b`."""
    # Only a path with a slash can have another spelling: keeps the common case cheap.
    # A URL source is named as written.
    return posixpath.normpath(path) if "/" in path and not is_url(path) else path


def read_line(location: Location, root: str) -> str | None:
    """The text of the Vinefile line at `location`, or None when it cannot be read."""
    for path in (location.path, os.path.join(root, location.path)):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return next(itertools.islice(f, location.line - 1, None), None)
        except OSError:
            continue
    return None


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


@dataclass(frozen=True, eq=False)
class BuildGraph:
    """A validated workflow graph over integer rule ids (the workflow's `RuleSpec.id`s).

    `rule_ids` are the rules in this graph, in file order. `deps[rid]`/`dependents[rid]` are
    lists indexed by rule id over the whole workflow (empty for rules outside a selection):
    the rules whose outputs `rid` reads, and the rules that read `rid`'s outputs, each sorted.
    `producer` maps each made file to its rule; `sources` holds the files no rule makes.
    """

    workflow: Workflow
    root: str
    rule_ids: tuple[int, ...]
    deps: list[tuple[int, ...]]
    producer: dict[str, int]
    sources: set[str]
    dir_members: dict[str, tuple[str, ...]]  # directory source → made files under it
    _order: tuple[int, ...]

    @functools.cached_property
    def dependents(self) -> list[tuple[int, ...]]:
        """deps turned around: made when first asked (a dry run of rules that are neither
        temporary nor remote never asks; at a million rules it is seconds and 60 MB)."""
        return _invert(self.deps, self.rule_ids)

    @classmethod
    def build(cls, workflow: Workflow, root: str,
              exists: Callable[[str], bool] = os.path.exists, *,
              listdir: Callable[[str], list[str]] = _listdir) -> BuildGraph:
        """Resolve and validate `workflow`; VinefileError at the first rule that is wrong."""
        rules = workflow.rules
        where = _Locator(root)
        links = workflow.links
        if links is not None and links.rules is rules:
            # What the parser found, under the conditions that make it what _producers and
            # _resolve would find (see Links): no name to check, no library, no directory
            # of made files (no made name has a `/`), every rule after those it reads.
            sources = set(links.sources)
            _check_sources(rules, sources, links.producer, root, exists, listdir, where)
            ids = tuple(map(_id, rules))
            return cls(workflow, root, ids, links.deps, links.producer, sources, {}, ids)
        producer = _plain_producers(rules)
        checked = producer is None
        if checked:
            producer = _producers(rules, where)
        deps, sources, dir_members, plain = _resolve(rules, producer)
        if not (plain or checked):  # a source to check: its error comes first, as always
            _producers(rules, where)
        calls = _check_libraries(rules, where)
        _calls_wait_for_library_inputs(calls, deps)
        _check_sources(rules, sources, producer, root, exists, listdir, where)
        ids = tuple(map(_id, rules))
        order = _topological(ids, deps)
        if len(order) < len(ids):
            _raise_cycle(rules, ids, deps, order, where)
        return cls(workflow, root, ids, deps, producer, sources, dir_members, order)

    def order(self) -> list[int]:
        """Rule ids so each comes after the rules it reads from; ties broken by file order."""
        return list(self._order)

    @functools.cached_property
    def consumed(self) -> frozenset[str]:
        """Made files that some rule in the graph reads (directly or as a directory)."""
        rules = self.workflow.rules
        read = {norm(s.path) for rid in self.rule_ids for s in rules[rid].sources}
        return frozenset(_reads(read, self.producer, self.dir_members))

    def terminal_outputs(self) -> list[str]:
        """Made files no rule in the graph reads: the default MAKEFLOW_OUTPUTS, in file order."""
        rules = self.workflow.rules
        seen = self.consumed
        return [p for rid in self.rule_ids for p in (norm(t.path) for t in rules[rid].targets)
                if p not in seen]

    def outputs(self) -> list[str]:
        """MAKEFLOW_OUTPUTS when the Vinefile set it, else the terminal outputs."""
        if self.workflow.outputs is not None:
            return [norm(p) for p in self.workflow.outputs]
        return self.terminal_outputs()

    def made_inside(self, directory: str) -> tuple[str, ...]:
        """What rules other than its own make inside the made directory `directory`,
        relative to it (`mydir mydir/1.txt:` then `mydir/3.txt: mydir/1.txt`: 3.txt)."""
        owner = self.producer.get(directory)
        prefix = directory.rstrip("/") + "/"
        return tuple(path[len(prefix):] for path, rid in self.producer.items()
                     if rid != owner and path.startswith(prefix))

    def files(self) -> set[str]:
        """Every file the graph names: made files and sources."""
        return set(self.producer) | self.sources

    def select(self, targets: Iterable[str]) -> BuildGraph:
        """The part of the graph the given files need; InputError for a file it cannot make."""
        wanted: list[int] = []
        for target in targets:
            wanted.extend(self._makers(target))
        keep = _closure(wanted, self.deps)
        ids = tuple(sorted(keep))
        rules = self.workflow.rules
        deps = [_NONE] * len(self.deps)
        for rid in ids:
            deps[rid] = self.deps[rid]  # what a kept rule reads is kept too
        producer = {p: rid for p, rid in self.producer.items() if rid in keep}
        read = {norm(s.path) for rid in ids for s in rules[rid].sources}
        sources = {p for p in read if p in self.sources}
        members = {d: m for d, m in self.dir_members.items() if d in read}
        order = tuple(r for r in self._order if r in keep)
        return BuildGraph(self.workflow, self.root, ids, deps, producer, sources, members, order)

    def _makers(self, target: str) -> list[int]:
        """The rules that make `target` (a file, or a directory holding made files)."""
        path = norm(target)
        if path in self.producer:
            return [self.producer[path]]
        ancestor = _made_ancestor(path, self.producer)
        if ancestor is not None:
            return [self.producer[ancestor]]
        prefix = path + "/"
        nested = [rid for p, rid in self.producer.items() if p.startswith(prefix)]
        if nested or path in self.sources:
            return nested
        hint = did_you_mean(path, self.producer)
        raise InputError(f"unknown target '{target}'{hint}")

    def to_networkx(self):
        """A networkx DiGraph: ("rule", id) and ("file", path) nodes, edges in data flow order."""
        import networkx as nx

        rules = self.workflow.rules
        g = nx.DiGraph()
        for rid in self.rule_ids:
            rule = rules[rid]
            g.add_node(("rule", rid), line=rule.location.line, command=rule.command,
                       category=rule.category)
            for ref in rule.targets:
                g.add_edge(("rule", rid), ("file", norm(ref.path)))
            for ref in rule.sources:
                g.add_edge(("file", norm(ref.path)), ("rule", rid))
        for directory, members in self.dir_members.items():
            for member in members:
                g.add_edge(("file", member), ("file", directory))
        for kind, name in g.nodes:
            if kind == "file":
                g.nodes[(kind, name)]["producer"] = self.producer.get(name)
        return g

    def check_workers_see(self, shared: Sequence[str]) -> None:
        """For workers that may be anywhere (-T workers): each absolute source of a rule that
        runs on one must be under a `--shared-fs` directory, as Makeflow requires on Work
        Queue and TaskVine (core/outside.py); a located error for the first that is not."""
        rules = self.workflow.rules
        for rid in self.rule_ids:
            rule = rules[rid]
            if rule.local or rule.subworkflow:
                continue
            unseen = unseen_by_workers([s.path for s in rule.sources if s.sandbox[:1] == "/"],
                                       shared)
            if unseen:
                path = unseen[0]
                raise _Locator(self.root).error(
                    rule, f"source '{path}' is read in place, and workers started by hand may "
                          "not have it: give --shared-fs DIR for a directory every worker "
                          f"sees, or send it into the task as '{path}->"
                          f"{posixpath.basename(path) or 'name'}'", path)

    def export(self, fmt: str) -> str:
        """The graph as `dot`, `mermaid` or `json` text."""
        writer = {"dot": _dot, "mermaid": _mermaid, "json": _json}.get(fmt)
        if writer is None:
            raise InputError(f"unknown graph format '{fmt}' (use dot, mermaid or json)")
        return writer(self.to_networkx())


# --- building -------------------------------------------------------------------------------


class _Locator:
    """Turns a rule and a message into a VinefileError, reading the line text lazily."""

    def __init__(self, root: str):
        self.root = root
        # Errors on one line share its text: a generated line may be megabytes long.
        self.lines: dict[tuple[str, int], str | None] = {}

    def error(self, rule: RuleSpec, message: str, name: str | None = None,
              occurrence: int = 1) -> VinefileError:
        location = rule.location
        where = (location.path, location.line)
        if where not in self.lines:
            self.lines[where] = read_line(location, self.root)
        text = self.lines[where]
        if text is not None and name is not None:
            col = _column_of(text, name, occurrence)
            if col is not None:
                location = Location(location.path, location.line, col)
        return VinefileError(location, message, text)


def _column_of(line: str, name: str, occurrence: int = 1) -> int | None:
    """The 1-based column where `name` appears as a whole word in `line` for the
    `occurrence`th time (or the first, if it appears fewer times), if it does."""
    found = [m.start() + 1 for m in itertools.islice(re.finditer(
        r"(?<![^\s:>\"'])" + re.escape(name) + r"(?![^\s:\"'-])", line), occurrence)]
    return found[-1] if found else None


def _unsafe(name: str) -> str | None:
    """Why `name` cannot be a name inside a sandbox or a target path, or None if it can."""
    if "\0" in name:
        return "contains a NUL character"
    if name.startswith("/"):
        return "is absolute"
    if ".." in name and ".." in name.split("/"):
        return "contains a '..' component"
    return None


def _check_ref(rule: RuleSpec, ref: FileRef, is_target: bool, where: _Locator) -> None:
    if is_target:
        why = _unsafe(ref.path)
        if why is not None:
            raise where.error(rule, f"target {ref.path!r} {why}: a rule's outputs must be "
                                    "inside the workflow directory", ref.path)
        if norm(ref.path).split("/", 1)[0] == STATE_DIR_NAME:
            raise where.error(rule, f"target {ref.path!r} is inside {STATE_DIR_NAME}/, where "
                                    "vinemake keeps its own state: a rule's outputs must be "
                                    "elsewhere", ref.path)
    why = _unsafe(ref.sandbox)
    if why is not None:
        shown = ref.path if ref.sandbox == ref.path else f"{ref.path}->{ref.sandbox}"
        hint = posixpath.basename(ref.sandbox.replace("\0", "")) or "name"
        raise where.error(rule, f"sandbox name {ref.sandbox!r} {why}: give the file a plain "
                                f"name inside the task, e.g. '{ref.path}->{hint}'", shown)


_id, _targets, _sources = attrgetter("id"), attrgetter("targets"), attrgetter("sources")
_path, _sandbox = attrgetter("path"), attrgetter("sandbox")


def _plain_producers(rules: tuple[RuleSpec, ...]) -> dict[str, int] | None:
    """What _producers finds when no target needs a check (none renamed, none with a `/`, a
    leading `.` or a NUL) and no file is made twice, made in bulk; else None. Sources are
    left to _resolve, which reads each anyway (in random order: each read is a cache miss)."""
    targets = list(map(_targets, rules))
    refs = list(itertools.chain.from_iterable(targets))
    paths = list(map(_path, refs))
    if not all(map(eq, map(_sandbox, refs), paths)):
        return None
    del refs
    joined = "\n".join(paths)  # a NL inside a name can only send it the long way
    if "/" in joined or "\0" in joined or joined[:1] == "." or "\n." in joined:
        return None
    del joined
    made_by = itertools.chain.from_iterable(map(itertools.repeat, map(_id, rules),
                                                map(len, targets)))
    producer = dict(zip(paths, made_by, strict=True))
    return producer if len(producer) == len(paths) else None


def _producers(rules: tuple[RuleSpec, ...], where: _Locator) -> dict[str, int]:
    """file → the rule that makes it; checks target and sandbox names on the way."""
    producer: dict[str, int] = {}
    for rule in rules:
        rid = rule.id
        renamed = False
        for ref in rule.targets:
            path = ref.path
            if "/" in path or "." in path[:1] or "\0" in path or ref.sandbox != path:
                _check_ref(rule, ref, True, where)
                renamed = renamed or ref.sandbox != path
                path = norm(path)
            known = len(producer)
            other = producer.setdefault(path, rid)
            if other == rid and len(producer) == known:
                raise where.error(rule, f"'{path}' is a target of this rule twice", ref.path,
                                  occurrence=2)
            if other != rid:
                first = rules[other].location.line
                raise where.error(rule, f"{path} is made by two rules: line {first} and line "
                                        f"{rule.location.line}", ref.path)
        for ref in rule.sources:
            sandbox = ref.sandbox
            if sandbox[:1] == "/" or ".." in sandbox or "\0" in sandbox:
                # A source outside the workflow directory, as written: see core/outside.py.
                if sandbox != ref.path or "\0" in sandbox:
                    _check_ref(rule, ref, False, where)
            if sandbox != ref.path:
                renamed = True
        if renamed:  # only `local->remote` names can clash inside one sandbox
            _check_clash(rule, where)
    return producer


def _check_clash(rule: RuleSpec, where: _Locator) -> None:
    seen: dict[str, str] = {}
    for ref in rule.targets + rule.sources:
        path = norm(ref.path)
        other = seen.setdefault(ref.sandbox, path)
        if other != path:
            shown = ref.path if ref.sandbox == ref.path else f"{ref.path}->{ref.sandbox}"
            raise where.error(rule, f"'{other}' and '{path}' would both be '{ref.sandbox}' "
                                    "inside the task", shown)


def _check_libraries(rules: tuple[RuleSpec, ...], where: _Locator) -> dict[int, int]:
    """Each `@call` rule's library rule; a located error for a call to no library."""
    defined: dict[str, RuleSpec] = {}
    rules = [r for r in rules if r.library is not None or r.call is not None]
    for rule in rules:
        if rule.library is None:
            continue
        if rule.library in defined:
            first = defined[rule.library].location.line
            raise where.error(rule, f"library '{rule.library}' is defined twice: line {first} "
                                    f"and line {rule.location.line}")
        defined[rule.library] = rule
    for rule in rules:
        if rule.call is not None and rule.call not in defined:
            hint = did_you_mean(rule.call, defined)
            raise where.error(rule, f"@call {rule.call}: no rule defines @library "
                                    f"{rule.call}{hint}")
    return {r.id: defined[r.call].id for r in rules if r.call is not None}


def _calls_wait_for_library_inputs(calls: dict[int, int], deps: list[tuple[int, ...]]) -> None:
    """A call runs inside its library, so it waits for the rules making the library's inputs.

    The library rule itself is not a dependency: it is started by the worker with the first
    call placed there, never run as a task of its own.
    """
    for call, library in calls.items():
        if deps[library]:
            deps[call] = tuple(sorted(set(deps[call]).union(deps[library])))


def _made_ancestor(path: str, producer: dict[str, int]) -> str | None:
    """The nearest enclosing directory of `path` that a rule makes, if any."""
    cut = path.rfind("/")
    while cut > 0:
        path = path[:cut]
        if path in producer:
            return path
        cut = path.rfind("/")
    return None


def _reads(read: set[str], producer: dict[str, int], members: dict[str, tuple[str, ...]]):
    """The made files behind the paths in `read`: themselves, their directory, their members."""
    for path in read:
        if path in producer:
            yield path
        elif path in members:
            yield from members[path]
        else:
            ancestor = _made_ancestor(path, producer)
            if ancestor is not None:
                yield ancestor


def _resolve(rules, producer):
    """Each rule's producer rules, the made files read, the sources, directory sources, and
    whether every source is plain (not renamed, no NUL: nothing for _producers to check)."""
    deps: list[tuple[int, ...]] = [_NONE] * len(rules)
    unmade: dict[str, list[int]] = {}  # read but not made: a source, or a directory of outputs
    get = producer.get
    plain = True
    for rule in rules:
        sources = rule.sources
        n = len(sources)
        if not n:
            continue
        if n == 2:  # a common shape: two inputs, both made by rules
            first, second = sources
            path, other = first.path, second.path
            if (first.sandbox != path or second.sandbox != other or "\0" in path
                    or "\0" in other):
                plain = False
            a, b = get(path), get(other)
            if a is not None and b is not None:
                deps[rule.id] = (a, b) if a < b else (b, a) if b < a else (a,)
                continue
        elif n == 1:  # most rules: one input, plainly named
            ref = sources[0]
            path = ref.path
            if ref.sandbox != path or "\0" in path:
                plain = False
            rid = get(path)
            if rid is not None:
                deps[rule.id] = (rid,)
                continue
            if "/" not in path:
                users = unmade.get(path)
                if users is None:
                    unmade[path] = [rule.id]
                else:
                    users.append(rule.id)
                continue
        found: list[int] = []
        for ref in sources:
            path = ref.path
            if ref.sandbox != path or "\0" in path:
                plain = False
            rid = get(path)
            if rid is None and "/" in path and not is_url(path):
                path = posixpath.normpath(path)
                if path not in producer:
                    path = _made_ancestor(path, producer) or path
                rid = get(path)
            if rid is None:
                unmade.setdefault(path, []).append(rule.id)
            else:
                found.append(rid)
        if found:
            deps[rule.id] = tuple(sorted(set(found))) if len(found) > 1 else (found[0],)
    dir_members = _directory_members(unmade, producer)
    for directory, members in dir_members.items():
        makers = [producer[m] for m in members]
        for rid in unmade.pop(directory):
            deps[rid] = tuple(sorted(set(deps[rid]).union(makers)))
    return deps, set(unmade), dir_members, plain


def _directory_members(unmade: dict[str, list[int]], producer: dict[str, int]):
    """For each unmade path that is a directory of made files: the made files under it."""
    members: dict[str, list[str]] = {}
    if not unmade:
        return {}
    for path in [p for p in producer if "/" in p]:  # the filter is cheap, rfind calls are not
        cut = path.rfind("/")
        while cut > 0:
            parent = path[:cut]
            if parent in unmade:
                members.setdefault(parent, []).append(path)
            cut = parent.rfind("/")
    return {d: tuple(m) for d, m in members.items()}


# Missing sources come in batches (a mistyped directory, data not fetched yet): report this
# many at once, each where it is first read, rather than one per run.
MISSING_REPORTED = 20


def _check_sources(rules, sources, producer, root, exists, listdir, where) -> None:
    """Every source must exist; each missing one is an error where it is first read."""
    missing = {p for p in sources if not is_url(p) and not exists(
        p if os.path.isabs(p) else os.path.join(root, p))}
    if not missing:
        return
    total = len(missing)
    errors: list[VinefileError] = []
    for rule in rules:
        for ref in rule.sources:
            path = norm(ref.path)
            if path not in missing:
                continue
            missing.discard(path)  # once, at its first reader
            if len(errors) == MISSING_REPORTED:
                continue
            parent = posixpath.dirname(path)
            on_disk = [posixpath.join(parent, n) for n in listdir(os.path.join(root, parent))]
            own = {norm(t.path) for t in rule.targets}  # never "did you mean" its own output
            hint = did_you_mean(path, (p for p in itertools.chain(producer, on_disk)
                                       if p not in own))
            errors.append(where.error(rule, f"source '{path}' does not exist and no rule "
                                            f"makes it{hint}", ref.path))
    if total == 1:
        raise errors[0]
    more = total - len(errors)
    raise VinefileErrors(errors, f"... and {more} more missing sources" if more else "")


def _invert(deps: list[tuple[int, ...]], ids: tuple[int, ...]) -> list[tuple[int, ...]]:
    dependents: list = [_NONE] * len(deps)
    for rid in ids:  # in order, so each list comes out sorted
        for d in deps[rid]:
            users = dependents[d]
            if users is _NONE:
                dependents[d] = [rid]
            else:
                users.append(rid)
    return [users if users is _NONE else tuple(users) for users in dependents]


def _topological(ids, deps) -> tuple[int, ...]:
    """Kahn's algorithm; the ready rule earliest in the file goes first."""
    # When every rule reads only files made above it (how files are usually written, and
    # every generated one), that order is the file order: skip the heap.
    if all(not deps[rid] or deps[rid][-1] < rid for rid in ids):
        return ids
    dependents = _invert(deps, ids)
    waiting = [0] * len(deps)
    for rid in ids:
        waiting[rid] = len(deps[rid])
    ready = [rid for rid in ids if not waiting[rid]]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        rid = heapq.heappop(ready)
        order.append(rid)
        for user in dependents[rid]:
            waiting[user] -= 1
            if not waiting[user]:
                heapq.heappush(ready, user)
    return tuple(order)


def _closure(start: Iterable[int], deps: list[tuple[int, ...]]) -> set[int]:
    keep: set[int] = set()
    stack = list(start)
    while stack:
        rid = stack.pop()
        if rid not in keep:
            keep.add(rid)
            stack.extend(deps[rid])
    return keep


def _raise_cycle(rules, ids, deps, order, where: _Locator) -> None:
    import networkx as nx

    done = set(order)
    stuck = [rid for rid in ids if rid not in done]
    g = nx.DiGraph()
    for rid in stuck:
        g.add_edges_from((rid, d) for d in deps[rid] if d not in done)
    cycle = [u for u, _ in nx.find_cycle(g)]
    start = cycle.index(min(cycle))
    cycle = cycle[start:] + cycle[:start]
    first = rules[cycle[0]]
    if len(cycle) == 1:
        both = [t.path for t in first.targets if any(norm(s.path) == norm(t.path)
                                                    for s in first.sources)]
        name = both[0] if both else first.name
        raise where.error(first, f"'{name}' is both a target and a source of this rule", name)
    chain = " needs ".join(f"{rules[r].name} (line {rules[r].location.line})"
                        for r in cycle + cycle[:1])
    raise where.error(first, f"dependency cycle: {chain}")


# --- export ---------------------------------------------------------------------------------


def _label(g, node) -> str:
    kind, name = node
    if kind == "file":
        return name
    command = g.nodes[node]["command"]
    short = command if len(command) <= 40 else command[:37] + "..."
    return f"line {g.nodes[node]['line']}: {short}"


def _dot_id(node) -> str:
    kind, name = node
    return _dot_string(f"rule{name}" if kind == "rule" else f"file:{name}")


def _dot_string(text: str) -> str:
    """A dot double-quoted string: backslash and quote escaped, non-ASCII kept as is."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot(g) -> str:
    out = ["digraph vinemake {", "  rankdir=LR;"]
    for node in g.nodes:
        shape = "box" if node[0] == "rule" else "ellipse"
        out.append(f"  {_dot_id(node)} [shape={shape}, label={_dot_string(_label(g, node))}];")
    for u, v in g.edges:
        out.append(f"  {_dot_id(u)} -> {_dot_id(v)};")
    out.append("}")
    return "\n".join(out) + "\n"


def _mermaid(g) -> str:
    ids = {}
    files = itertools.count()
    for node in g.nodes:
        ids[node] = f"r{node[1]}" if node[0] == "rule" else f"f{next(files)}"
    out = ["flowchart LR"]
    for node, nid in ids.items():
        text = _label(g, node).replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
        out.append(f'  {nid}["{text}"]' if node[0] == "rule" else f'  {nid}(["{text}"])')
    for u, v in g.edges:
        out.append(f"  {ids[u]} --> {ids[v]}")
    return "\n".join(out) + "\n"


def _json(g) -> str:
    def node_id(node) -> str:
        return f"{node[0]}:{node[1]}"

    nodes = []
    for node, data in g.nodes(data=True):
        entry = {"id": node_id(node), "kind": node[0]}
        if node[0] == "rule":
            entry.update(rule=node[1], line=data["line"], command=data["command"],
                         category=data["category"])
        else:
            entry.update(path=node[1], producer=data.get("producer"))
        nodes.append(entry)
    edges = [{"from": node_id(u), "to": node_id(v)} for u, v in g.edges]
    return json.dumps({"nodes": nodes, "edges": edges}, indent=1) + "\n"
