"""Evaluate parsed Vinefile lines in file order into a Workflow (Makeflow's semantics).

The parser hands over plain statements (Assign, Export, Directive, Rule, ...) holding the
raw text of each line part and where it starts. This module gives them meaning:

- Variables expand eagerly, in file order. Lookup goes rule-local, then the category in
  force, then global, then the process environment. Top-level assignments made after
  `CATEGORY=name` belong to that category (Makeflow's scoping); the "default" category's
  variables are the global ones.
- Resources (CORES, MEMORY, DISK, GPUS, WALL_TIME, or `.MAKEFLOW CORES n`...) are the one
  thing that is NOT eager: per category the last value set wins for the whole category, so
  rules are finished only after the whole file is read. A category without its own value
  falls back to the global (default category) one; a rule-local value overrides its
  category, and `@resources` overrides both.
- A rule's environment is its exported names (value in force at that rule), CATEGORY, and
  the resource variables set for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from vinemake.common.spec import (
    RULESPEC_COMPLETED_LATER,
    Category,
    FileRef,
    Links,
    Location,
    Resources,
    RuleSpec,
    Workflow,
    is_url,
    new_fileref,
    new_location,
    new_plain_rulespec,
    new_rulespec,
    set_later,
    url_basename,
)
from vinemake.language import keywords
from vinemake.language.annotations import RESOURCE_VALUES, AnnotationError, read_annotation
from vinemake.language.environment import in_environments, with_source
from vinemake.language.expand import (
    COMMAND,
    VALUE,
    WORDS,
    ExpandError,
    expand,
    scan_words,
    split_files,
    split_words,
)
from vinemake.language.statements import (
    Annotation,
    Assign,
    BadAssign,
    Directive,
    Export,
    PlainRule,
    Rule,
    SourceText,
    Text,
)
from vinemake.language.units import parse_size_mb

__all__ = ["evaluate", "rule_env", "StatementEvaluator"]


_ENV_OF_FIELD = {"cores": "CORES", "memory_mb": "MEMORY", "disk_mb": "DISK", "gpus": "GPUS",
                 "wall_time_s": "WALL_TIME", "mpi_processes": "MPI_PROCESSES"}
# A true value as Makeflow reads BATCH_LOCAL: "true" or "yes" in any case, or a number > 0.
_LEADING_NUMBER = re.compile(r"[ \t\n\r\f\v]*([+-]?\d+)")
# A command runs as the one argument of `sh -c`, and Linux refuses any single argument
# longer than 32 pages (MAX_ARG_STRLEN, 131072 bytes with its terminating NUL).
MAX_COMMAND_BYTES = 131071


def command_too_long(command: str) -> str | None:
    """Why `command` cannot run, if it is too long to (cheap for the usual short one)."""
    if len(command) <= MAX_COMMAND_BYTES // 4 or len(command.encode()) <= MAX_COMMAND_BYTES:
        return None
    return (f"the command is {len(command.encode())} bytes long; a command may be at most "
            f"{MAX_COMMAND_BYTES} bytes (Linux's limit on the one argument of sh -c): put a "
            "long one in a script")
# `export NAME=value`: the name and the operator; and the first two words of any export line.
_EXPORT_ASSIGN = re.compile(r"([ \t]*)([A-Za-z_][A-Za-z0-9_]*)[ \t]*\+?=")
_EXPORT_WORDS = re.compile(r"([ \t]*)([^ \t=]*)[ \t]*()")
_QUOTED = re.compile(r"""'[^']*'|"(?:[^"\\]|\\.)*"|\\.""", re.S)
_NO_OVERRIDES: dict = {}  # shared, never changed


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _first_word(text: str) -> tuple[str, str]:
    """Split `text` into its first blank-separated word and the rest (both stripped)."""
    parts = text.split(None, 1)
    if not parts:
        return "", ""
    return parts[0], parts[1].strip() if len(parts) > 1 else ""


class _Extra(NamedTuple):
    """What a rule adds to its category's resources, environment and batch options."""

    resources: dict | None  # from @resources
    overrides: dict  # rule-local resource values
    exported: tuple[tuple[str, str], ...]
    batch_options: str | None


class _Recorded(dict):
    """The environment, remembering each name looked up in it and what it found (None: unset).

    Every lookup of the process environment goes through get(): the rules cache keys an
    entry on exactly these values.
    """

    def __init__(self, environ: Mapping[str, str], read: dict[str, str | None]):
        super().__init__(environ)
        self.read = read

    def get(self, name, default=None):
        value = dict.get(self, name)
        self.read[name] = value
        return default if value is None else value


class StatementEvaluator:
    """Walks the statements in order, keeping Makeflow's variable scopes."""

    def __init__(self, source: SourceText, environ: Mapping[str, str],
                 read: dict[str, str | None] | None = None):
        self.source = source
        self.path = source.path
        # A plain dict: os.environ encodes on every lookup.
        self.environ = dict(environ) if read is None else _Recorded(environ, read)
        self.globals: dict[str, str] = {}
        self.category_vars: dict[str, dict[str, str]] = {}
        self.current = "default"
        self.exports: tuple[str, ...] = ()
        # Per category: resource field → value, plus "mode" and "batch_options".
        self.settings: dict[str, dict] = {"default": {}}
        # Rules in file order. Resources, env and batch options are known only once the whole
        # file is read: a rule that takes its category's is made at once and its attributes
        # completed at the end (`early`, per category); any other is a None until the end
        # (`late`: its index, RuleSpec fields and what it adds to its category).
        self.rules: list[RuleSpec | None] = []
        self.early: dict[str, list[dict]] = {}
        self.late: list[tuple[int, dict, _Extra | None]] = []
        self.sizes: list[tuple[str, int]] = []
        self.inputs: list[str] | None = None
        self.outputs: list[str] | None = None
        self.refs: dict[str, FileRef] = {}
        # The Links (see common/spec.py) while every rule so far allows them, else None:
        # file → the rule making it, each rule's producers, the files read but not made.
        self.made: dict[str, int] | None = {}
        self.deps: list[tuple[int, ...]] = []
        self.unmade: set[str] = set()
        # Whether BATCH_LOCAL is on at the top level; None once an assignment may change it.
        self.batch_local: bool | None = None
        self.handlers = {Assign: self.assign, BadAssign: self.bad_assign, Export: self.export,
                         Directive: self.directive, Rule: self.rule, PlainRule: self.plain_rule}

    # ---- lookup ------------------------------------------------------------------------
    def lookup_top(self, name: str) -> str | None:
        if self.current != "default":
            value = self.category_vars[self.current].get(name)
            if value is not None:
                return value
        value = self.globals.get(name)
        return value if value is not None else self.environ.get(name)

    def _rule_lookup(self, local: dict[str, str], category: str):
        cat_vars = self.category_vars.get(category) if category != "default" else None

        def lookup(name: str) -> str | None:
            value = local.get(name)
            if value is None and cat_vars:
                value = cat_vars.get(name)
            if value is None:
                value = self.globals.get(name)
            return value if value is not None else self.environ.get(name)

        return lookup

    def expand(self, text: Text, lookup, mode: str = WORDS) -> str:
        try:
            return expand(text.raw, lookup, mode)
        except ExpandError as e:
            raise self.source.error_at(text, e.offset, e.message) from None

    def _value(self, stmt: Assign, lookup,
               local: dict[str, str] | None = None) -> tuple[str, str, str]:
        """(name, operator, expanded value) of an assignment; `+=` appends with one space.

        As in Makeflow, `+=` appends to the rule's own value (`local`, for a rule-local
        assignment) or else to the global one, never to a category's."""
        head = stmt.head.raw
        op = "+=" if head.endswith("+=") else "="
        name = head[: -len(op)].strip().lstrip("@")
        value = self._value_text(stmt.value, lookup)
        if op == "+=":
            old = (local or {}).get(name)
            if old is None:
                old = self.globals.get(name)
            if old is None:
                old = self.environ.get(name)
            if old:
                value = f"{old} {value}" if value else old
        return name, op, value

    def _value_text(self, text: Text | None, lookup) -> str:
        """An assignment's value: from its first non-blank character to the end of the line
        or a comment, without its trailing blanks (Makeflow keeps them; nobody sees them)."""
        if text is None:
            return ""
        return self.expand(_shift(text, _lead(text.raw)), lookup, VALUE).rstrip(" \t")

    # ---- statements --------------------------------------------------------------------
    def run(self, statements: Iterable) -> Workflow:
        # Statements are dropped as soon as they are evaluated: on a million-rule file the
        # raw text of every line would otherwise stay alive next to the rules made from it.
        pending = statements if isinstance(statements, list) else list(statements)
        pending.reverse()
        handlers = self.handlers
        while pending:
            stmt = pending.pop()
            handlers[type(stmt)](stmt)
        return self.finish()

    def statement(self, stmt) -> None:
        """Evaluate the next statement of the file."""
        self.handlers[type(stmt)](stmt)

    def assign(self, stmt: Assign) -> None:
        name, op, value = self._value(stmt, self.lookup_top)
        self._set_top(name, value, stmt, op == "+=")

    def _set_top(self, name: str, value: str, stmt: Assign | Text,
                 to_global: bool = False) -> None:
        """Set `name` in the current category (globally in `default`, or when `to_global`:
        Makeflow's top-level `+=` changes the global variable, in any category)."""
        self.batch_local = None
        if name == "CATEGORY":
            self._switch_category(self._category_name(value, stmt))
            self.globals[name] = self.current
            return
        if name in RESOURCE_VALUES:
            field = RESOURCE_VALUES[name][0]
            parsed = self._resource(name, value, stmt)
            if field:
                self.settings[self.current][field] = parsed
                value = _number_text(parsed)
        elif name == "BATCH_OPTIONS":
            self.settings[self.current]["batch_options"] = value
        elif name == "ENVIRONMENT":
            self.settings[self.current]["environment"] = self._environment(value, stmt)
        elif name == "MAKEFLOW_INPUTS":
            self.inputs = self._words(value, stmt)
        elif name == "MAKEFLOW_OUTPUTS":
            self.outputs = self._words(value, stmt)
        if self.current == "default" or to_global:
            self.globals[name] = value
        else:
            self.category_vars[self.current][name] = value

    def _switch_category(self, name: str) -> None:
        self.batch_local = None
        self.current = name
        self.category_vars.setdefault(name, {})
        self.settings.setdefault(name, {})

    def _words(self, value: str, at: Assign | Text) -> list[str]:
        """The words of a value expanded from the text `at`: a quote it leaves open (an
        escaped quote, or one from a variable) is an error located there."""
        try:
            return split_words(value)
        except ExpandError as e:
            text = at if isinstance(at, Text) else (at.value or at.head)
            raise self.source.error_at(text, _lead(text.raw),
                                       f"{e.message} in {value!r}") from None

    def _category_name(self, value: str, stmt: Assign | Text) -> str:
        words = self._words(value, stmt)
        if len(words) != 1:
            at = stmt if isinstance(stmt, Text) else (stmt.value or stmt.head)
            raise self.source.error_at(at, 0, f"a category name is one word, got {value!r}")
        return words[0]

    def _resource(self, name: str, value: str, at: Assign | Text):
        """Parse a resource value; a bad one is an error located at its text."""
        _, parse, good = RESOURCE_VALUES[name]
        try:
            words = self._words(value, at)
            return parse(" ".join(words))
        except ValueError:
            text = at if isinstance(at, Text) else (at.value or at.head)
            raise self.source.error_at(text, _lead(text.raw),
                                       f"bad {name} value {value!r}: expected {good}") from None

    def bad_assign(self, stmt: BadAssign) -> None:
        head = stmt.head
        op = head.raw.lstrip("@").lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                         "0123456789_").strip()
        if head.raw.strip().startswith(("=", "+=")):
            raise self.source.error_at(head, 0, "assignment without a variable name "
                                                "(write NAME=value)")
        offset = head.raw.index(op)
        raise self.source.error_at(head, offset, f"unsupported assignment operator '{op}' "
                                                 "(use '=' or '+=')")

    def export(self, stmt: Export) -> None:
        """`export NAME=value` (the rest of the line is the value, as in Makeflow; also
        `NAME = value`, `NAME+=value`) or `export NAME...`."""
        args = stmt.args
        if args is None:
            raise self.source.error_at(stmt.keyword, 0, "export needs at least one NAME or "
                                                        "NAME=value")
        names = list(self.exports)
        if "=" in _QUOTED.sub("", args.raw):
            m = _EXPORT_ASSIGN.match(args.raw)
            if m is None:
                first = _EXPORT_WORDS.match(args.raw)
                if not _is_name(first.group(2)):
                    raise self.source.error_at(args, first.start(2), "export: "
                                               f"{first.group(2)!r} is not a variable name")
                raise self.source.error_at(args, first.start(3), "export NAME=value exports "
                                           "one name: the rest of the line is its value")
            value = _shift(args, m.end())
            assign = Assign(_shift(args, m.start(2))._replace(raw=args.raw[m.start(2):m.end()]),
                            value if value.raw.strip() else None)
            name, op, value = self._value(assign, self.lookup_top)
            self._set_top(name, value, assign, op == "+=")
            names.append(name)
        else:
            text = self.expand(args, self.lookup_top)
            for word, offset in scan_words(text):
                if not _is_name(word):
                    where = offset if text == args.raw else _lead(args.raw)
                    raise self.source.error_at(args, where,
                                               f"export: {word!r} is not a variable name")
                names.append(word)
        self.exports = tuple(dict.fromkeys(names))

    def directive(self, stmt: Directive) -> None:
        word = stmt.word.raw
        if word == ".SIZE":
            self._size(stmt)
            return
        what, value, value_at = self._makeflow_directive(stmt)
        if what == "MODE":
            self.settings[self.current]["mode"] = value
        else:
            self._set_top(what, value, value_at)

    def _makeflow_directive(self, stmt: Directive) -> tuple[str, str, Text]:
        """Check a `.MAKEFLOW WORD value` line: (WORD, expanded value, where the value is)."""
        word = stmt.word
        if word.raw not in keywords.DOT_DIRECTIVES:
            known = " or ".join(keywords.DOT_DIRECTIVES)
            raise self.source.error_at(word, 0, f"unknown directive '{word.raw}' "
                                                f"(expected {known})")
        choices = ", ".join(keywords.MAKEFLOW_DIRECTIVES)
        args = self.expand(stmt.args, self.lookup_top) if stmt.args else ""
        what, value = _first_word(args)
        at = stmt.args or word
        if what not in keywords.MAKEFLOW_DIRECTIVES:
            message = (f"unknown .MAKEFLOW directive '{what}' (expected one of {choices})"
                       if what else f".MAKEFLOW needs one of {choices}")
            raise self.source.error_at(at, _lead(at.raw) if stmt.args else 0, message)
        if not value:
            raise self.source.error_at(at, len(at.raw.rstrip()) if stmt.args else len(word.raw),
                                       f".MAKEFLOW {what} needs a value")
        if what == "MODE" and value not in keywords.ALLOCATION_MODES:
            raise self.source.error_at(at, _lead(at.raw) + len(what) + 1,
                                       f"bad .MAKEFLOW MODE {value!r}: expected one of "
                                       f"{', '.join(keywords.ALLOCATION_MODES)}")
        if what in RESOURCE_VALUES:
            self._resource(what, value, _after_word(at))
        return what, value, _after_word(at)

    def _size(self, stmt: Directive) -> None:
        words = self._words(self.expand(stmt.args, self.lookup_top), stmt.args) if stmt.args \
            else []
        if len(words) != 2:
            raise self.source.error_at(stmt.word, 0, ".SIZE needs a file and a size")
        try:
            self.sizes.append((words[0], parse_size_mb(words[1])))
        except ValueError:
            raise self.source.error_at(stmt.args, stmt.args.raw.rfind(words[1]),
                                       f"bad size {words[1]!r}: expected a size like 512MB "
                                       "or 2GB (a bare number is MB)") from None

    # ---- rules -------------------------------------------------------------------------
    def rule(self, stmt: Rule) -> None:
        self.made = None  # a rule only `plain` reads: the graph works the links out itself
        fields = self._annotations(stmt.annotations) if stmt.annotations else {}
        targets = self._files(stmt.targets)
        sources = self._files(stmt.sources)
        if stmt.sources is not None and any(is_url(f.path) for f in sources):
            sources = self._urls(sources, stmt.sources)
        if targets and any(is_url(t.path) for t in targets):
            raise self.source.error_at(stmt.targets, _lead(stmt.targets.raw),
                                       "a URL can only be a source: a rule's targets are "
                                       "files it makes")
        if targets and fields.get("library"):
            raise self.source.error_at(stmt.targets, 0, "a @library rule has no targets: "
                                                        "it defines a library, it makes no files")
        local: dict[str, str] = {}
        overrides: dict = {}
        category = self.current
        batch_options = None
        if stmt.local:
            category, batch_options = self._rule_local(stmt.local, local, overrides)
        # Without rule-local assignments the rule sees exactly the top-level scope.
        lookup = (self._rule_lookup(local, category) if local or category != self.current
                  else self.lookup_top)
        command = self.expand(stmt.command, lookup, COMMAND).strip()
        if _is_true(lookup("BATCH_LOCAL")):
            fields["local"] = True
        if command.startswith(keywords.COMMAND_PREFIXES) or not command or "call" in fields:
            command = self._prefix(command, stmt.command, fields)
            if fields.get("subworkflow"):
                sources = _with_workflow_file(sources, self._words(command, stmt.command))
        too_long = command_too_long(command)
        if too_long:
            raise self.source.error_at(stmt.command, _lead(stmt.command.raw), too_long)
        if fields.get("mini"):
            self._check_mini(stmt, targets, fields)
        if "ENVIRONMENT" in local and "environment" not in fields and local["ENVIRONMENT"]:
            fields["environment"] = local["ENVIRONMENT"]  # a rule-local ENVIRONMENT=FILE
        if fields.get("environment"):
            if fields.get("local") or fields.get("subworkflow"):
                note = next(a for a in stmt.annotations if a.word.raw == "@environment")
                raise self.source.error_at(note.word, 0, "an @environment rule "
                                           "runs on a worker: it cannot be LOCAL or MAKEFLOW")
            sources = with_source(sources, fields["environment"])
        exported = (tuple((n, v) for n in self.exports if (v := lookup(n)) is not None)
                    if self.exports else ())
        head = stmt.targets or stmt.colon
        cmd_at = stmt.command
        path = self.source.path
        values = fields
        values.update(
            id=len(self.rules), targets=targets, sources=sources, command=command,
            location=Location(path, head.line, head.col),
            command_location=Location(path, cmd_at.line, cmd_at.col + _lead(cmd_at.raw)),
            category=category)
        resources = values.pop("resources", None)
        extra = (_Extra(resources, overrides, exported, batch_options)
                 if resources or overrides or exported or batch_options is not None else None)
        self.late.append((len(self.rules), values, extra))
        self.rules.append(None)

    def plain_rule(self, stmt: PlainRule) -> None:
        self.plain(*stmt)

    def plain_rules(self, match, body: str, pos: int, line: int) -> tuple[int, int, int]:
        """Evaluate the plain rules that `match` finds one after the other in `body` from
        `pos` (line `line`), each as (targets, sources, indent, command, the blank lines
        after it): (where they stop, its line, how many there were).

        The usual rule of a big workflow (one target, two inputs made above, nothing
        exported, not local) is made here with all it needs at hand, as `plain` would make
        it (a million calls and attribute lookups fewer); any other goes to `plain`.
        """
        if self.batch_local is None:  # no assignment comes between plain rules
            self.batch_local = _is_true(self.lookup_top("BATCH_LOCAL"))
        usual = not self.exports and not self.batch_local and RULESPEC_COMPLETED_LATER
        refs, rules, path, category = self.refs, self.rules, self.path, self.current
        get, add_rule, add_deps = refs.get, rules.append, self.deps.append
        made = self.made if usual else None
        add_early = None
        limit, prefixes = MAX_COMMAND_BYTES // 4, keywords.COMMAND_PREFIXES
        count = 0
        while True:
            m = match(body, pos)
            if m is None:
                return pos, line, count
            targets_text, sources_text, indent, command, blank = m.groups()
            pos = m.end()
            count += 1
            command_col = len(indent) + 1
            if made is not None:
                stripped = command.strip()
                names, words = targets_text.split(), sources_text.split()
                if (len(names) == 1 and len(words) == 2 and stripped
                        and len(stripped) <= limit and not stripped.startswith(prefixes)
                        and "->" not in targets_text and "->" not in sources_text):
                    name, (first, second) = names[0], words
                    rid = len(rules)
                    if made.setdefault(name, rid) is rid:
                        a, b = made.get(first), made.get(second)
                        if (a is not None and b is not None and a is not rid and b is not rid
                                and "/" not in name and "\0" not in name and name[:1] != "."):
                            add_deps((a, b) if a < b else (b, a) if b < a else (a,))
                            target = get(name)
                            if target is None:
                                target = refs[name] = new_fileref(name)
                            rule = new_plain_rulespec(
                                rid, (target,), (get(first), get(second)),  # made above
                                stripped, path, line, 1, line + 1, command_col)
                            if category != "default":
                                set_later(rule, "category", category)
                            if add_early is None:
                                add_early = self.early.setdefault(category, []).append
                            add_early(rule)
                            add_rule(rule)
                            line += 2 + blank.count("\n") if blank else 2
                            continue
                        del made[name]  # and again, the long way
            self.plain(targets_text, sources_text, command, line, 1, command_col)
            made = self.made if usual else None
            line += 2 + blank.count("\n")

    def plain(self, targets_text: str, sources_text: str, command: str, line: int, col: int,
              command_col: int) -> None:
        """The PlainRule of these fields: what `rule` does, minus everything that cannot apply.
        """
        stripped = command.strip()
        if (not stripped or stripped.startswith(keywords.COMMAND_PREFIXES)
                or "->" in targets_text or "->" in sources_text
                or len(stripped) > MAX_COMMAND_BYTES // 4):
            self.rule(PlainRule(targets_text, sources_text, command, line, col,
                                command_col).rule())
            return
        # File lists of one or two names, most of them, without a call: a cached FileRef.
        get = self.refs.get
        made_words = targets_text.split()
        if len(made_words) == 1:
            targets = (get(made_words[0]) or self._new_ref(made_words[0]),)
        else:
            targets = self._plain_files(made_words)
        words = sources_text.split()
        n = len(words)
        if n == 2:
            first, second = words
            sources = (get(first) or self._new_ref(first), get(second) or self._new_ref(second))
        elif n == 1:
            sources = (get(words[0]) or self._new_ref(words[0]),)
        else:
            sources = self._plain_files(words)
        rid = len(self.rules)
        made = self.made
        if made is not None:
            # Inline, the usual one target made by nobody else and two inputs made above.
            if n == 2 and len(made_words) == 1 and made.setdefault(made_words[0], rid) is rid:
                name = made_words[0]
                a, b = made.get(first), made.get(second)
                if (a is not None and b is not None and a is not rid and b is not rid
                        and "/" not in name and "\0" not in name and name[:1] != "."):
                    self.deps.append((a, b) if a < b else (b, a) if b < a else (a,))
                else:
                    del made[name]  # and again, the long way
                    self._link(rid, made_words, words)
            else:
                self._link(rid, made_words, words)
        # Without targets a rule is located at its colon.
        col = col if targets else col + len(targets_text)
        if self.batch_local is None:
            self.batch_local = _is_true(self.lookup_top("BATCH_LOCAL"))
        if self.exports or not RULESPEC_COMPLETED_LATER:
            self._late_plain(rid, targets, sources, stripped, line, col, command_col)
            return
        rule = new_plain_rulespec(rid, targets, sources, stripped, self.path, line, col,
                                  line + 1, command_col)
        if self.current != "default":
            set_later(rule, "category", self.current)
        if self.batch_local:
            set_later(rule, "local", True)
        early = self.early.get(self.current)
        if early is None:
            early = self.early[self.current] = []
        early.append(rule)
        self.rules.append(rule)

    def _link(self, rid: int, targets: list[str], sources: list[str]) -> None:
        """Record who makes and who reads the files of plain rule `rid` (see Links), or give
        the links up if its names need the graph's own checks."""
        made = self.made
        for name in targets:
            if (made.setdefault(name, rid) is not rid or "/" in name or "\0" in name
                    or name[:1] == "."):
                self.made = None
                return
        if len(targets) > 1 and len(set(targets)) < len(targets):  # one named twice
            self.made = None
            return
        found = []
        for name in sources:
            producer = made.get(name)
            if producer is None:
                if "/" in name or "\0" in name:
                    self.made = None
                    return
                self.unmade.add(name)
            elif producer is rid:  # a rule reading its own output
                self.made = None
                return
            else:
                found.append(producer)
        if not found:
            self.deps.append(())
        elif len(found) == 1:
            self.deps.append((found[0],))
        else:
            self.deps.append(tuple(sorted(set(found))))

    def _links(self, rules: tuple[RuleSpec, ...]) -> Links | None:
        made = self.made
        if made is None or self.late or not self.unmade.isdisjoint(made):
            return None  # ... or a file read above the rule that makes it
        return Links(rules, made, self.deps, frozenset(self.unmade))

    def _late_plain(self, rid: int, targets: tuple[FileRef, ...], sources: tuple[FileRef, ...],
                    command: str, line: int, col: int, command_col: int) -> None:
        """A plain rule that exports names: made at the end of the file, as `rule` does."""
        exported = tuple((n, v) for n in self.exports if (v := self.lookup_top(n)) is not None)
        values = {"id": rid, "targets": targets, "sources": sources, "command": command,
                  "location": new_location(self.path, line, col),
                  "command_location": new_location(self.path, line + 1, command_col),
                  "category": self.current}
        if self.batch_local:
            values["local"] = True
        self.late.append((rid, values,
                          _Extra(None, _NO_OVERRIDES, exported, None) if exported else None))
        self.rules.append(None)

    def _plain_files(self, words: list[str]) -> tuple[FileRef, ...]:
        get = self.refs.get
        return tuple([get(path) or self._new_ref(path) for path in words])

    def _new_ref(self, path: str) -> FileRef:
        """A FileRef without a sandbox name, shared: big workflows name each file twice."""
        ref = self.refs[path] = new_fileref(path)
        return ref

    def _rule_local(self, statements, local: dict[str, str], overrides: dict):
        """Apply rule-local assignments and directives; return (category, batch options)."""
        category = self.current
        batch_options = None
        for item in statements:
            lookup = self._rule_lookup(local, category)
            if isinstance(item, BadAssign):
                self.bad_assign(item)
            if isinstance(item, Directive):
                if item.word.raw == ".SIZE":
                    self._size(item)
                    continue
                name, value, at = self._makeflow_directive(item)
                if name == "MODE":
                    self.settings.setdefault(category, {})["mode"] = value
                    continue
            else:
                name, _, value = self._value(item, lookup, local)
                at = item
            if name == "CATEGORY":
                category = self._category_name(value, at)
                self.category_vars.setdefault(category, {})
                self.settings.setdefault(category, {})
            elif name in RESOURCE_VALUES:
                parsed = self._resource(name, value, at)
                if RESOURCE_VALUES[name][0]:
                    overrides[RESOURCE_VALUES[name][0]] = parsed
                    value = _number_text(parsed)
            elif name == "BATCH_OPTIONS":
                batch_options = value
            local[name] = value
        return category, batch_options

    def _files(self, text: Text | None) -> tuple[FileRef, ...]:
        if text is None:
            return ()
        expanded = self.expand(text, self.lookup_top)
        try:
            pairs = split_files(expanded)
        except ExpandError as e:
            offset = e.offset if expanded == text.raw else 0
            raise self.source.error_at(text, offset, e.message) from None
        refs = self.refs
        out = []
        for path, sandbox in pairs:
            if not path or not sandbox:
                raise self.source.error_at(text, _lead(text.raw), "empty file name ('' or \"\")")
            if path != sandbox:
                out.append(FileRef(path, sandbox))
                continue
            ref = refs.get(path)
            if ref is None:
                ref = refs[path] = FileRef(path, path)  # shared: big workflows name files twice
            out.append(ref)
        return tuple(out)

    def _environment(self, value: str, at: Assign | Text) -> str:
        """A category's ENVIRONMENT: one packed environment FILE, or none."""
        words = self._words(value, at)
        if len(words) > 1:
            text = at if isinstance(at, Text) else (at.value or at.head)
            raise self.source.error_at(text, _lead(text.raw), f"ENVIRONMENT is one packed "
                                       f"environment FILE, got {value!r}")
        return words[0] if words else ""

    def _check_mini(self, stmt: Rule, targets: tuple[FileRef, ...], fields: dict) -> None:
        """A `@mini` rule makes files on the workers that read them, from a plain command."""
        if not targets:
            raise self.source.error_at(stmt.colon, 0, "a @mini rule makes files: give it "
                                                      "targets")
        kind = next((what for field, what in (("local", "LOCAL"), ("subworkflow", "MAKEFLOW"),
                                               ("call", "@call"), ("library", "@library"))
                     if fields.get(field)), None)
        if kind is not None:
            raise self.source.error_at(stmt.targets, 0, f"a @mini rule runs on the workers "
                                       f"that read its outputs: it cannot be {kind}")

    def _urls(self, sources: tuple[FileRef, ...], at: Text) -> tuple[FileRef, ...]:
        """URL sources keep their URL as path; without `->name` the sandbox name is the
        last segment of the URL's path."""
        out = []
        for ref in sources:
            if not is_url(ref.path):
                out.append(ref)
                continue
            offset = max(at.raw.find(ref.path), 0)
            if ref.path.startswith("file://") and not ref.path.startswith("file:///"):
                raise self.source.error_at(at, offset, f"{ref.path}: a file:// URL needs an "
                                           "absolute path (file:///path/to/file)")
            if len(ref.path.split("://", 1)[1].split("/", 1)[0]) == 0 and \
                    not ref.path.startswith("file://"):
                raise self.source.error_at(at, offset, f"{ref.path}: a URL needs a host")
            if ref.sandbox == ref.path:
                name = url_basename(ref.path)
                if not name:
                    raise self.source.error_at(at, offset, f"{ref.path}: give the document a "
                                               f"name inside the task: '{ref.path}->NAME'")
                ref = FileRef(ref.path, name)
            out.append(ref)
        return tuple(out)

    def _prefix(self, command: str, at: Text, fields: dict) -> str:
        """Strip LOCAL and MAKEFLOW prefixes (both may be given), recording what they mean."""
        first, rest = _first_word(command)
        while first in keywords.COMMAND_PREFIXES:
            if not rest:
                what = "a command" if first == "LOCAL" else "a workflow file"
                raise self.source.error_at(at, _lead(at.raw), f"{first} needs {what} after it")
            fields["local" if first == "LOCAL" else "subworkflow"] = True
            command = rest
            first, rest = _first_word(command)
        if not command:
            raise self.source.error_at(at, _lead(at.raw), "empty command line")
        if fields.get("call") and not self._words(command, at):
            raise self.source.error_at(at, _lead(at.raw), "@call needs FUNCTION ARG... as "
                                                          "its command")
        return command

    def _annotations(self, annotations: tuple[Annotation, ...]) -> dict:
        """The RuleSpec fields the annotations above a rule set."""
        fields: dict = {}
        for note in annotations:
            text = self.expand(note.args, self.lookup_top) if note.args else ""
            words = scan_words(text)
            at = note.args
            if at is not None and text != at.raw:  # expanded: point at the arguments
                words = [(w, _lead(at.raw)) for w, _ in words]
            try:
                read_annotation(note.word.raw[1:], words, fields)
            except AnnotationError as e:
                if e.offset is None or at is None:
                    raise self.source.error_at(note.word, 0, e.message) from None
                raise self.source.error_at(at, e.offset, e.message) from None
        return fields

    # ---- the end of the file -----------------------------------------------------------
    def finish(self) -> Workflow:
        base = {k: v for k, v in self.settings["default"].items() if k in _ENV_OF_FIELD}
        categories: dict[str, Category] = {}
        for name, settings in self.settings.items():
            merged = {**base, **{k: v for k, v in settings.items() if k in _ENV_OF_FIELD}}
            batch = settings.get("batch_options", self.settings["default"].get(
                "batch_options", ""))
            categories[name] = Category(name, Resources(**merged), settings.get("mode"), batch)
        shared = {name: self._category_defaults(c) for name, c in categories.items()}
        # What a rule without an _Extra gets: its category's, shared.
        common = {name: {"env": env, "resources": resources,
                         "batch_options": categories[name].batch_options}
                  for name, (_, resources, env) in shared.items()}
        for name, early in self.early.items():
            env, resources, batch_options = common[name].values()
            for rule in early:  # the category's, shared (see plain)
                set_later(rule, "env", env)
                set_later(rule, "resources", resources)
            if batch_options:
                for rule in early:
                    set_later(rule, "batch_options", batch_options)
        rules = self.rules
        for index, values, extra in self.late:
            name = values["category"]
            if extra is None:
                values.update(common[name])
                rules[index] = new_rulespec(values)
            else:
                rules[index] = _finish_rule(values, extra, categories[name], shared[name])
        used = {"default", *self.early, *(values["category"] for _, values, _ in self.late)}
        rules = tuple(rules)
        environments = {name: settings.get("environment", self.settings["default"].get(
            "environment", "")) for name, settings in self.settings.items()}
        links = self._links(rules)
        if any(environments.values()):  # each rule reads its environment too
            rules, links = in_environments(rules, environments), None
        return Workflow(
            path=self.source.path,
            rules=rules,
            categories=tuple(c for n, c in categories.items()
                             if n in used or self.settings[n]),
            inputs=tuple(self.inputs) if self.inputs is not None else None,
            outputs=tuple(self.outputs) if self.outputs is not None else None,
            sizes=tuple(self.sizes),
            links=links,
        )

    @staticmethod
    def _category_defaults(category: Category) -> tuple[dict, Resources, tuple]:
        """What most rules of a category share: one Resources and one env, not one per rule."""
        res = {f: getattr(category.resources, f) for f in _ENV_OF_FIELD}
        return res, category.resources, rule_env({}, category.name, res)


def _finish_rule(values: dict, extra: _Extra, category: Category, shared) -> RuleSpec:
    """The RuleSpec of a rule read earlier, now that its category's resources are known."""
    res, resources, env = shared
    batch_options = category.batch_options
    if extra.overrides or extra.resources:
        res = {**res, **extra.overrides, **(extra.resources or {})}
        resources = Resources(**res)
        env = rule_env(extra.exported, category.name, res)
    elif extra.exported:
        env = rule_env(extra.exported, category.name, res)
    if extra.batch_options is not None:
        batch_options = extra.batch_options
    values["env"] = env
    values["resources"] = resources
    values["batch_options"] = batch_options
    return new_rulespec(values)


def _with_workflow_file(sources: tuple[FileRef, ...], words: list[str]) -> tuple[FileRef, ...]:
    """A sub-workflow's file (the first of its command's `words`) is an input of its rule,
    as in cctools, listed or not."""
    if not words or any(f.path == words[0] for f in sources):
        return sources
    return (*sources, FileRef(words[0], words[0]))


def rule_env(exported, category: str, res: dict) -> tuple[tuple[str, str], ...]:
    """A rule's environment: exported names, CATEGORY, and the resources set for it."""
    env = dict(exported)
    env["CATEGORY"] = category
    for field, var in _ENV_OF_FIELD.items():
        if res[field] is not None:
            env[var] = _number_text(res[field])
    return tuple(sorted(env.items()))


def _lead(raw: str) -> int:
    """Offset of the first non-blank character of `raw`."""
    return len(raw) - len(raw.lstrip(" \t"))


def _shift(at: Text, offset: int) -> Text:
    """The part of `at` from `offset` on (an offset on its first line)."""
    return Text(at.raw[offset:], at.line, at.col + offset)


def _after_word(at: Text) -> Text:
    """The part of `at` after its first word (where a directive's value starts)."""
    start = _lead(at.raw)
    end = start
    while end < len(at.raw) and at.raw[end] not in " \t":
        end += 1
    return Text(at.raw[end:], at.line, at.col + end)


def _is_true(value: str | None) -> bool:
    """Makeflow's string_istrue: "true", "yes" (any case), or text starting with a number > 0."""
    if not value:
        return False
    if value.lower() in ("true", "yes"):
        return True
    number = _LEADING_NUMBER.match(value)
    return number is not None and int(number.group(1)) > 0


def _is_name(text: str) -> bool:
    return text.isidentifier() and text.isascii()


def evaluate(statements: Iterable, source: SourceText, environ: Mapping[str, str],
             read: dict[str, str | None] | None = None) -> Workflow:
    """Give the parsed statements their meaning, in file order. A list is consumed (emptied).

    `read`, if given, receives every environment variable looked up, with its value or None.
    """
    return StatementEvaluator(source, environ, read).run(statements)
