"""Read a JX (or plain JSON) workflow into the same Workflow a Vinefile gives.

What Makeflow does with a JX workflow, in order:
1. The context: each --jx-args file is evaluated (in the context so far) and must give an
   object, whose names are added; then each --jx-define NAME=EXPR is evaluated likewise and
   sets NAME. (Makeflow takes the two options in command-line order; here all --jx-args come
   before all --jx-define.)
2. The document is evaluated with its own `define` entries and the context as names, the
   context winning: a define is only a default for what the command line may set.
3. The result is read as a workflow: `rules` (each with `command`, or `workflow` + `args`
   for a sub-workflow; `inputs`, `outputs`, `local_job`, `category`, `resources`,
   `environment`, `allocation`), `categories`, `default_category`, `environment`.

A rule's resources are its own, else its category's, else the default category's, field by
field, read as the Vinefile's CORES, MEMORY, DISK, GPUS, WALL_TIME (`wall-time` as cctools
spells it, or `wall_time`) and MPI_PROCESSES are (numbers, or sizes like "2GB"). Its
environment is the workflow's, then its category's, then its own (each name overriding the
one before); a null value passes the submitting environment's value, as `export NAME` does.
With CATEGORY and the resource variables it is the rule's env exactly as a Vinefile gives it,
so the two languages make the same rule keys.

Makeflow ignores keys it does not know, and workflows use that for "comment" keys and notes
of their own; vinemake ignores them too, except a key near a known one, which it reports
with "did you mean": a misspelt `ouputs` would otherwise run a rule without its outputs.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from collections.abc import Iterable, Mapping

from vinemake.common.errors import InputError, VinefileError
from vinemake.common.spec import (
    Category,
    FileRef,
    Location,
    Resources,
    RuleSpec,
    Workflow,
    is_url,
    new_fileref,
    new_location,
    new_rulespec,
    url_basename,
)
from vinemake.common.suggest import did_you_mean
from vinemake.language import keywords
from vinemake.language.annotations import RESOURCE_VALUES
from vinemake.language.evaluate import command_too_long, rule_env
from vinemake.language.jx import Evaluator, Lazy, Scope
from vinemake.language.jxinput import JxInput
from vinemake.language.jxparse import parse_jx
from vinemake.language.jxsyntax import Array, At, Const, Node, Object, start
from vinemake.language.jxvalues import JxDict, JxError, JxList, brief, kind, show, where
from vinemake.language.statements import SourceText

__all__ = ["read_jx", "parse_jx_workflow", "jx_context"]

_TOP = keywords.JX_WORKFLOW_KEYS
_RULE = keywords.JX_RULE_KEYS
_CATEGORY = keywords.JX_CATEGORY_KEYS
_FILE = keywords.JX_FILE_KEYS
_ALLOCATIONS = ("auto", "first", "max", "error")  # accepted; vinemake allocates what is asked
_RESOURCES = keywords.JX_RESOURCE_KEYS
_RESOURCE_FIELDS = [f.name for f in dataclasses.fields(Resources)]


def _read_text(path: str, what: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError(f"cannot read {what}{path}: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise VinefileError(Location(path, 1, 1), f"not a text file: {e.reason}") from None
    # JSON written by some Windows tools starts with a byte-order mark.
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def jx_context(args_files: Iterable[str] = (), defines: Iterable[str] = (),
               root: str = ".") -> dict:
    """The names --jx-args files and --jx-define NAME=EXPR give, as values."""
    names: dict = {}
    for path in args_files:
        text = _read_text(path, "--jx-args ")
        value = _evaluate(text, path, names, root)
        if kind(value) != "object":
            raise SourceText(path, text).error(*where(value, (1, 1)), f"--jx-args needs an "
                                               f"object of names, got {kind(value)} "
                                               f"{brief(value)}")
        names.update(value)
    for define in defines:
        name, eq, expression = define.partition("=")
        if not eq or not name.isidentifier():
            raise InputError(f"--jx-define {define}: expected NAME=EXPRESSION")
        # Padded, so a column in the expression is its column in NAME=EXPRESSION.
        text = " " * (len(name) + 1) + expression
        names[name] = _evaluate(text, "--jx-define", names, root, shown=define)
    return names


def _evaluate(text: str, path: str, names: Mapping, root: str, shown: str | None = None):
    source = SourceText(path, shown if shown is not None else text)
    try:
        node = parse_jx(text, path, source)
        return Evaluator(root).eval(node, Scope(dict(names)))
    except JxError as e:
        raise source.error(*e.at, e.message) from None


def read_jx(path: str, how: JxInput | None = None, environ: Mapping[str, str] | None = None,
            root: str = ".") -> Workflow:
    """The workflow in the JX file at `path`, read as `how` says (default: JX, no context)."""
    how = how or JxInput()
    context = {} if how.plain else jx_context(how.args_files, how.defines, root)
    return parse_jx_workflow(_read_text(path, ""), path, how.plain, context, environ, root)


def parse_jx_workflow(text: str, path: str, plain: bool = False, context: Mapping | None = None,
                      environ: Mapping[str, str] | None = None, root: str = ".") -> Workflow:
    """The workflow in JX `text`; errors raise VinefileError located in `path`."""
    source = SourceText(path, text)
    node = parse_jx(text, path, source)
    try:
        if plain:
            _check_plain(node)
        names: dict = {}
        if type(node) is Object:
            names = _defines(node)
        names.update(context or {})
        document = Evaluator(root).eval(node, Scope(names))
        return _Reader(path, os.environ if environ is None else environ).workflow(document)
    except JxError as e:
        raise source.error(*e.at, e.message) from None
    except RecursionError:
        raise source.error(1, 1, "the workflow is nested too deeply") from None


def _defines(document: Object) -> dict:
    """The document's `define` entries, unevaluated (each is evaluated where it is used)."""
    for pair in document.pairs:
        if type(pair.key) is Const and pair.key.value == "define" and not pair.clauses:
            if type(pair.value) is not Object:
                raise JxError(pair.value.at, "\"define\" must be an object of names")
            names = {}
            for entry in pair.value.pairs:
                if type(entry.key) is not Const or type(entry.key.value) is not str \
                        or entry.clauses:
                    raise JxError(entry.key.at, "a name in \"define\" must be a string")
                names[entry.key.value] = Lazy(entry.key.value, entry.value)
            return names
    return {}


def _check_plain(node: Node) -> None:
    """--json reads plain JSON: the first expression found is an error."""
    if type(node) is Const:
        return
    if type(node) is Array and not any(item.clauses for item in node.items):
        for item in node.items:
            _check_plain(item.value)
        return
    if type(node) is Object and not any(pair.clauses for pair in node.pairs):
        for pair in node.pairs:
            if type(pair.key) is not Const or type(pair.key.value) is not str:
                raise JxError(pair.key.at, "a --json workflow is plain JSON: keys are strings "
                                           "(for expressions, use --jx)")
            _check_plain(pair.value)
        return
    raise JxError(start(node), "a --json workflow is plain JSON, this is an expression "
                               "(for expressions, use --jx)")


class _Reader:
    """Turns the evaluated document into a Workflow."""

    def __init__(self, path: str, environ: Mapping[str, str]):
        self.path = path
        self.environ = environ
        self.shared: dict[tuple, tuple[Resources, tuple]] = {}
        self.refs: dict[str, FileRef] = {}

    def workflow(self, doc) -> Workflow:
        if kind(doc) != "object":
            raise JxError(where(doc, (1, 1)), f"a workflow is an object with \"rules\", got "
                                              f"{kind(doc)} {brief(doc)}")
        _known_keys(doc, _TOP, "a workflow")
        if "rules" not in doc:
            raise JxError(where(doc, (1, 1)), "a workflow needs \"rules\" (an array of rules)")
        rules = _need(doc, "rules", "array")
        default = _need(doc, "default_category", "string", "default")
        self.env = self._environment(doc)
        categories = _need(doc, "categories", "object", {})
        self.category_specs = {}
        for name, spec in categories.items():
            at = _value_at(categories, name)
            if kind(spec) != "object":
                raise JxError(at, f"category \"{name}\" must be an object, got {kind(spec)} "
                                  f"{brief(spec)}")
            _known_keys(spec, _CATEGORY, f"category \"{name}\"")
            self._allocation(spec)
            self.category_specs[name] = (self._resources(spec), self._environment(spec))
        base = self.category_specs.get(default, ({}, {}))[0]
        self.merged = {name: {**base, **res} for name, (res, _) in self.category_specs.items()}
        self.merged.setdefault(default, dict(base))
        self.default = default
        specs = [self._rule(i, rule, rules) for i, rule in enumerate(rules)]
        used = {default, *(rule.category for rule in specs)}
        names = [default, *[n for n in self.category_specs if n != default],
                 *sorted(used - set(self.category_specs) - {default})]
        return Workflow(
            path=self.path, rules=tuple(specs),
            categories=tuple(Category(n, _resources(self.merged.get(n, base))) for n in names))

    def _rule(self, index: int, rule, rules) -> RuleSpec:
        if kind(rule) != "object":
            raise JxError(_item_at(rules, index), f"a rule is an object with a \"command\", "
                                                  f"got {kind(rule)} {brief(rule)}")
        _known_keys(rule, _RULE, "a rule")
        command = _need(rule, "command", "string", None)
        workflow = _need(rule, "workflow", "string", None)
        if command is not None and workflow is not None:
            raise JxError(_key_at(rule, "workflow"), "a rule has a \"command\" or a "
                                                     "\"workflow\", not both")
        if command is None and workflow is None:
            raise JxError(where(rule, (1, 1)), "a rule needs a \"command\" (or a \"workflow\" "
                                               "to run)")
        sources = self._files(rule, "inputs")
        targets = self._files(rule, "outputs")
        if workflow is not None:
            command = self._subworkflow(rule, workflow)
            if not any(f.path == workflow for f in sources):
                sources = (*sources, FileRef(workflow, workflow))
        elif not command.strip():
            raise JxError(_value_at(rule, "command"), "empty command")
        elif "\0" in command:
            raise JxError(_value_at(rule, "command"), "a command cannot hold a NUL character")
        elif command_too_long(command):
            raise JxError(_value_at(rule, "command"), command_too_long(command))
        elif "args" in rule:
            raise JxError(_key_at(rule, "args"), "\"args\" goes with \"workflow\", not "
                                                 "\"command\"")
        local = _need(rule, "local_job", "boolean", False)
        category = _need(rule, "category", "string", self.default)
        self._allocation(rule)
        res = self.merged.get(category, self.merged[self.default])
        if "resources" in rule:
            res = {**res, **self._resources(rule)}
        env_names = {**self.env, **self.category_specs.get(category, ({}, {}))[1]}
        if "environment" in rule:
            env_names.update(self._environment(rule))
        exported = []
        for name, value in env_names.items():
            if value is None:
                value = self.environ.get(name)
            if value is not None:
                exported.append((name, value))
        resources, env = self._shared(category, res, tuple(exported))
        command_at = _value_at(rule, "command" if workflow is None else "workflow")
        values = {"id": index, "targets": targets, "sources": sources,
                  "command": command.strip(),
                  "location": new_location(self.path, *where(rule, (1, 1))),
                  "command_location": new_location(self.path, *command_at), "env": env,
                  "category": category, "resources": resources}
        if local:
            values["local"] = True
        if workflow is not None:
            values["subworkflow"] = True
        return new_rulespec(values)

    def _shared(self, category: str, res: dict, exported: tuple) -> tuple[Resources, tuple]:
        """A rule's Resources and env: made once for all the rules that have the same (most
        rules of a category do), as the Vinefile reader shares them."""
        key = (category, tuple(sorted(res.items())), exported)
        shared = self.shared.get(key)
        if shared is None:
            full = {f: res.get(f) for f in _RESOURCE_FIELDS}
            shared = self.shared[key] = (Resources(**full), rule_env(exported, category, full))
        return shared

    def _subworkflow(self, rule, workflow: str) -> str:
        """The command that runs a sub-workflow: vinemake on its file, its args as defines."""
        args = _need(rule, "args", "object", {})
        words = [workflow, "--jx"]
        for name, value in args.items():
            if not name.isidentifier():
                raise JxError(_value_at(rule, "args"), f"\"args\" names must be names, got "
                                                       f"{show(name)}")
            words += ["--jx-define", f"{name}={show(value)}"]
        return shlex.join(words)

    def _files(self, rule, key: str) -> tuple[FileRef, ...]:
        files = _need(rule, key, "array", ())
        out = []
        for i, entry in enumerate(files):
            if type(entry) is str:
                path, sandbox = entry, entry
            elif kind(entry) == "object":
                _known_keys(entry, _FILE, "a file")
                # Older Makeflows wrote "path" and "execution_path".
                name, remote = ("path", "execution_path") if "path" in entry \
                    else ("dag_name", "task_name")
                if name not in entry:
                    raise JxError(_item_at(files, i), "a file given as an object needs "
                                  "\"dag_name\" (its name here) and may have \"task_name\" (its "
                                  "name in the task)")
                path = _need(entry, name, "string")
                sandbox = _need(entry, remote, "string", path)
            else:
                raise JxError(_item_at(files, i), f"a file is a string or an object with "
                                                  f"\"dag_name\", got {kind(entry)} "
                                                  f"{brief(entry)}")
            if not path or not sandbox:
                raise JxError(_item_at(files, i), "empty file name")
            if "\0" in path or "\0" in sandbox:
                raise JxError(_item_at(files, i), "a file name cannot hold a NUL character")
            if is_url(path):
                sandbox = self._url_name(files, i, key, path, sandbox)
            if path != sandbox:
                out.append(FileRef(path, sandbox))
                continue
            ref = self.refs.get(path)
            if ref is None:  # shared: a workflow names most files twice
                ref = self.refs[path] = new_fileref(path)
            out.append(ref)
        return tuple(out)

    @staticmethod
    def _url_name(files, i: int, key: str, url: str, sandbox: str) -> str:
        """A URL input's name in the task: given, else the last segment of its path."""
        if key == "outputs":
            raise JxError(_item_at(files, i), "a URL can only be an input: a rule's outputs "
                                              "are files it makes")
        if sandbox != url:
            return sandbox
        name = url_basename(url)
        if not name:
            raise JxError(_item_at(files, i), f"{url}: give the document a name in the task "
                                              f"with {{\"dag_name\": ..., \"task_name\": NAME}}")
        return name

    def _resources(self, spec) -> dict:
        res = _need(spec, "resources", "object", {})
        _known_keys(res, _RESOURCES, "\"resources\"", strict=True)  # as Makeflow: an error
        fields = {}
        for key, value in res.items():
            var = _RESOURCES[key]
            field, parse, good = RESOURCE_VALUES[var]
            at = _value_at(res, key)
            if kind(value) not in ("integer", "float", "string"):
                raise JxError(at, f"bad resources: \"{key}\" must be {good}, got "
                                  f"{kind(value)} {brief(value)}")
            try:
                fields[field] = parse(value if kind(value) == "string" else show(value))
            except ValueError:
                raise JxError(at, f"bad resources: \"{key}\" must be {good}, got "
                                  f"{brief(value)}") from None
        return fields

    def _environment(self, spec) -> dict:
        env = _need(spec, "environment", "object", {})
        for name, value in env.items():
            if not name or "=" in name or "\0" in name:
                raise JxError(_key_at(env, name), f"bad environment variable name {show(name)}")
            if kind(value) == "string" and "\0" in value:
                raise JxError(_value_at(env, name), f"environment variable {name} cannot hold "
                                                    "a NUL character")
            if kind(value) not in ("string", "null"):
                raise JxError(_value_at(env, name), f"environment variable {name} must be a "
                                                    f"string (or null to pass this one's), got "
                                                    f"{kind(value)} {brief(value)}")
        return dict(env)

    @staticmethod
    def _allocation(spec) -> None:
        allocation = _need(spec, "allocation", "string", None)
        if allocation is not None and allocation not in _ALLOCATIONS:
            raise JxError(_value_at(spec, "allocation"), f"\"allocation\" must be one of "
                                                         f"{', '.join(_ALLOCATIONS)}")


_MISSING = object()


def _need(obj, key: str, want: str, default=_MISSING):
    """`obj[key]`, which must be of kind `want`; `default` when absent (if given)."""
    if key not in obj:
        if default is _MISSING:
            raise JxError(obj.at if hasattr(obj, "at") else (1, 1), f"missing \"{key}\"")
        return default
    value = obj[key]
    if kind(value) != want:
        article = "an" if want[0] in "aeiou" else "a"
        raise JxError(_value_at(obj, key), f"\"{key}\" must be {article} {want}, got "
                                           f"{kind(value)} {brief(value)}")
    return value


def _known_keys(obj, known: Iterable[str], what: str, strict: bool = False) -> None:
    """An unknown key near a known one is a typo, an error; any other is ignored, as Makeflow
    ignores it (workflows carry "comment" keys and notes of their own), unless `strict`."""
    for key in obj:
        if key not in known and key != "comment":
            hint = did_you_mean(key, known)
            if hint or strict:
                raise JxError(_key_at(obj, key), f"unknown key \"{key}\" in {what}{hint}")


def _key_at(obj, key: str) -> At:
    """Where `key` of `obj` was written (as near as is known)."""
    return obj.key_position(key) if type(obj) is JxDict else where(obj, (1, 1))


def _value_at(obj, key: str) -> At:
    """Where the value of `key` of `obj` was written (as near as is known)."""
    return obj.value_position(key) if type(obj) is JxDict else where(obj, (1, 1))


def _item_at(items, i: int) -> At:
    """Where item `i` of the array `items` was written (as near as is known)."""
    return items.item_position(i) if type(items) is JxList else where(items[i], (1, 1))


def _resources(fields: Mapping) -> Resources:
    return Resources(**{f: fields.get(f) for f in _RESOURCE_FIELDS})
