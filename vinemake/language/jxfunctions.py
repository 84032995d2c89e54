"""JX's built-in functions, with the argument types and results cctools gives them.

range, format, join, ceil, floor, basename, dirname, listdir, escape, len, fetch, schema,
like, keys, values, items, template, select (also called where) and project; error, which
stops the evaluation with its message; and let from older JX. Each is called as `f(a, b)`
or, the first argument before a dot, `a.f(b)`. select, where and project get their second
argument unevaluated: it is evaluated once per object of the array, with the object's keys
as names; let evaluates its second argument once, with the keys of its first as names.

Where vinemake differs from cctools on purpose (docs/jx.md lists these): listdir() returns
the names sorted (readdir's order is whatever the file system keeps); keys(), values() and
items() keep the order the object was written in (cctools returns it reversed); like() with a
regular expression that does not compile is an error (cctools says false); schema() takes an
object as well as an array of objects (cctools' reference shows the first, its code takes
only the second).
"""

from __future__ import annotations

import math
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import NamedTuple

from vinemake.language import keywords
from vinemake.language.jxsyntax import At, Item
from vinemake.language.jxvalues import JxDict, JxError, JxList, brief, kind, show

__all__ = ["FUNCTIONS", "CallSite", "Function", "FETCH_TIMEOUT_S"]

FETCH_TIMEOUT_S = 30  # as cctools' fetch() gives curl
MAX_RANGE = 10_000_000  # a typo like range(10000000000) fails instead of eating the memory


class CallSite:
    """What a built-in sees besides its argument values: where it is called and from what."""

    __slots__ = ("name", "at", "args", "scope", "evaluator")

    def __init__(self, name: str, at: At, args: tuple[Item, ...], scope, evaluator):
        self.name = name
        self.at = at
        self.args = args
        self.scope = scope
        self.evaluator = evaluator

    def error(self, message: str, arg: int | None = None) -> JxError:
        """An error at argument `arg` (0-based) if it was written out, else at the call."""
        args = self.args
        written = arg is not None and arg < len(args) and not any(
            item.clauses for item in args[:arg + 1])
        return JxError(args[arg].at if written else self.at, f"{self.name}: {message}")

    def count(self, values: tuple, low: int, high: int) -> None:
        n = len(values)
        if low <= n <= high:
            return
        want = str(low) if low == high else f"{low} to {high}"
        raise self.error(f"takes {want} argument{'s' if high != 1 else ''}, got {n}")

    def need(self, values: tuple, i: int, *kinds: str):
        value = values[i]
        if kind(value) not in kinds:
            raise self.error(f"argument {i + 1} must be {' or '.join(kinds)}, got "
                             f"{kind(value)} {brief(value)}", i)
        return value


class Function(NamedTuple):
    run: Callable
    deferred: bool = False  # gets its arguments unevaluated (select, where, project)


def _range(call: CallSite, *args):
    call.count(args, 1, 3)
    for i in range(len(args)):
        call.need(args, i, "integer")
    if len(args) == 1:
        start, stop, step = 0, args[0], 1
    else:
        start, stop, step = args[0], args[1], args[2] if len(args) == 3 else 1
    if step == 0:
        raise call.error("step must be nonzero", 2)
    numbers = range(start, stop, step)
    if len(numbers) > MAX_RANGE:
        raise call.error(f"{len(numbers)} numbers is more than the {MAX_RANGE} allowed")
    return JxList(numbers, call.at)


# Which value each conversion takes: cctools converts only the type it names.
_SPECIFIERS = {"d": "integer", "i": "integer", "e": "float", "E": "float", "f": "float",
               "F": "float", "g": "float", "G": "float", "s": "string"}


def _format(call: CallSite, *args):
    if not args or kind(args[0]) != "string":
        raise call.error("the first argument must be a format string", 0)
    spec, rest = args[0], list(args[1:])
    out = []
    i = 0
    used = 0
    while i < len(spec):
        ch = spec[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= len(spec):
            raise call.error("truncated format specifier '%' at the end", 0)
        conv = spec[i + 1]
        i += 2
        if conv == "%":
            out.append("%")
            continue
        want = _SPECIFIERS.get(conv)
        if want is None:
            raise call.error(f"unsupported format specifier '%{conv}' (use %d %i %e %E %f %F "
                             "%g %G %s or %%)", 0)
        if used >= len(rest):
            raise call.error(f"not enough arguments for '{spec}'", 0)
        value = rest[used]
        used += 1
        if kind(value) != want:
            raise call.error(f"'%{conv}' needs {'an' if want == 'integer' else 'a'} {want}, "
                             f"got {kind(value)} {brief(value)}", used)
        out.append(value if conv == "s" else ("%" + conv) % value)
    if used < len(rest):
        raise call.error(f"too many arguments for '{spec}'", used + 1)
    return "".join(out)


def _join(call: CallSite, *args):
    call.count(args, 1, 2)
    items = call.need(args, 0, "array")
    delimiter = call.need(args, 1, "string") if len(args) == 2 else " "
    for item in items:
        if kind(item) != "string":
            raise call.error(f"every item must be a string, got {kind(item)} {brief(item)}", 0)
    return delimiter.join(items)


def _rounding(how: Callable) -> Callable:
    def run(call: CallSite, *args):
        call.count(args, 1, 1)
        value = call.need(args, 0, "integer", "float")
        # An integer stays an integer and a float a float, as in cctools.
        if kind(value) == "integer" or not math.isfinite(value):
            return value
        return float(how(value))

    return run


def _basename(call: CallSite, *args):
    call.count(args, 1, 2)
    path = call.need(args, 0, "string")
    suffix = call.need(args, 1, "string") if len(args) == 2 else None
    base = _posix_basename(path)
    if suffix and base.endswith(suffix):
        base = base[: len(base) - len(suffix)]
    return base


def _posix_basename(path: str) -> str:
    """basename(3): the last component, trailing slashes ignored; "/" for "/", "." for ""."""
    if not path:
        return "."
    stripped = path.rstrip("/")
    if not stripped:
        return "/"
    return stripped.rsplit("/", 1)[-1]


def _dirname(call: CallSite, *args):
    call.count(args, 1, 1)
    path = call.need(args, 0, "string")
    stripped = path.rstrip("/")
    if not stripped:
        return "/" if path else "."
    if "/" not in stripped:
        return "."
    head = stripped.rsplit("/", 1)[0].rstrip("/")
    return head or "/"


def _listdir(call: CallSite, *args):
    call.count(args, 1, 1)
    path = call.need(args, 0, "string")
    try:
        names = os.listdir(os.path.join(call.evaluator.root, path))
    except OSError as e:
        raise call.error(f"cannot list {path!r}: {e.strerror}", 0) from None
    return JxList(sorted(names), call.at)


def _escape(call: CallSite, *args):
    call.count(args, 1, 1)
    text = call.need(args, 0, "string")
    # Inside double quotes the shell still reads $ ` \ and ": each gets a backslash.
    return '"' + re.sub(r'(["\\$`])', r"\\\1", text) + '"'


def _len(call: CallSite, *args):
    call.count(args, 1, 1)
    return len(call.need(args, 0, "array"))


def _fetch(call: CallSite, *args):
    call.count(args, 1, 1)
    where = call.need(args, 0, "string")
    if re.match(r"https?://", where):
        try:
            with urllib.request.urlopen(where, timeout=FETCH_TIMEOUT_S) as response:
                data = response.read()
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise call.error(f"cannot fetch {where}: {reason}", 0) from None
    else:
        try:
            with open(os.path.join(call.evaluator.root, where), "rb") as f:
                data = f.read()
        except OSError as e:
            raise call.error(f"cannot read {where}: {e.strerror}", 0) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise call.error(f"{where} is not UTF-8 text", 0) from None
    return call.evaluator.document(text, where)


def _schema(call: CallSite, *args):
    call.count(args, 1, 1)
    value = call.need(args, 0, "array", "object")
    objects = [value] if kind(value) == "object" else value
    result = JxDict(at=call.at)
    for item in objects:
        if kind(item) != "object":
            raise call.error(f"needs objects, got {kind(item)} {brief(item)}", 0)
        for key, field in item.items():
            result.setdefault(key, kind(field))
    return result


def _like(call: CallSite, *args):
    call.count(args, 2, 2)
    text = call.need(args, 0, "string")
    pattern = call.need(args, 1, "string")
    try:
        return re.search(pattern, text) is not None
    except re.error as e:
        raise call.error(f"bad regular expression {show(pattern)}: {e}", 1) from None


def _keys(call: CallSite, *args):
    call.count(args, 1, 1)
    return JxList(call.need(args, 0, "object").keys(), call.at)


def _values(call: CallSite, *args):
    call.count(args, 1, 1)
    return JxList(call.need(args, 0, "object").values(), call.at)


def _items(call: CallSite, *args):
    call.count(args, 1, 1)
    obj = call.need(args, 0, "object")
    return JxList((JxList((key, value), call.at) for key, value in obj.items()), call.at)


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}|[{}]")


def _template(call: CallSite, *args):
    call.count(args, 1, 2)
    text = call.need(args, 0, "string")
    overrides = call.need(args, 1, "object") if len(args) == 2 else {}
    out = []
    last = 0
    for m in _PLACEHOLDER.finditer(text):
        out.append(text[last:m.start()])
        last = m.end()
        token = m.group()
        if token in ("{{", "}}"):
            out.append(token[0])
            continue
        name = m.group(1)
        if name is None:
            what = "unmatched '}'" if token == "}" else "'{' must hold a single name and '}'"
            raise call.error(f"{what} in {show(text)}", 0)
        if name in overrides:
            value = overrides[name]
        else:
            found, _ = call.scope.find(name)
            if not found:
                raise call.error(f"undefined symbol '{name}' in {show(text)}", 0)
            value = call.evaluator.name_value(name, call.at, call.scope)
        if kind(value) not in ("integer", "float", "string"):
            raise call.error(f"cannot put {kind(value)} {brief(value)} ({name}) in a template",
                             0)
        out.append(value if kind(value) == "string" else show(value))
    out.append(text[last:])
    return "".join(out)


def _over_objects(call: CallSite, body: Callable):
    """select/where/project: evaluate the second argument once per object of the first."""
    if len(call.args) != 2:
        raise call.error(f"takes 2 arguments (an array of objects, an expression), got "
                         f"{len(call.args)}")
    evaluator, scope = call.evaluator, call.scope
    values = evaluator.items(call.args[:1], scope)
    if len(values) != 1 or kind(values[0]) != "array":
        got = values[0] if len(values) == 1 else JxList(values)
        raise call.error(f"argument 1 must be an array of objects, got {kind(got)} "
                         f"{brief(got)}", 0)
    expression = call.args[1]
    if expression.clauses:
        raise call.error("argument 2 cannot be a comprehension", 1)
    result = JxList(at=call.at)
    for item in values[0]:
        if kind(item) != "object":
            raise call.error(f"argument 1 must be an array of objects, got an item "
                             f"{kind(item)} {brief(item)}", 0)
        value = evaluator.eval(expression.value, scope.child(item))
        body(result, item, value, expression)
    return result


def _select(call: CallSite):
    def keep(result, item, value, expression):
        if kind(value) != "boolean":
            raise JxError(expression.at, f"{call.name}: the condition must be a boolean, got "
                                         f"{kind(value)} {brief(value)}")
        if value:
            result.append(item)

    return _over_objects(call, keep)


def _let(call: CallSite):
    """let(object, expression): the expression with the object's keys as names (older JX's
    local bindings, still in cctools' example workflows)."""
    if len(call.args) != 2 or any(item.clauses for item in call.args):
        raise call.error(f"takes 2 arguments (an object of names, an expression), got "
                         f"{len(call.args)}")
    bindings = call.evaluator.eval(call.args[0].value, call.scope)
    if kind(bindings) != "object":
        raise call.error(f"argument 1 must be an object of names, got {kind(bindings)} "
                         f"{brief(bindings)}", 0)
    return call.evaluator.eval(call.args[1].value, call.scope.child(bindings))


def _project(call: CallSite):
    return _over_objects(call, lambda result, item, value, expression: result.append(value))


def _error(call: CallSite, *args):
    """error(value): stops the evaluation with value as the message (cctools' error())."""
    call.count(args, 1, 1)
    raise JxError(call.at, f"error: {args[0] if kind(args[0]) == 'string' else show(args[0])}")


_ceil = _rounding(math.ceil)
_floor = _rounding(math.floor)
_where = _select
# These get their arguments unevaluated.
_DEFERRED = (_select, _project, _let)


def _built_ins() -> dict[str, Function]:
    """Each name of keywords.JX_FUNCTIONS (the list the editor grammars share) with the
    function `_<name>` of this module that implements it."""
    here = globals()
    return {name: Function(here["_" + name], here["_" + name] in _DEFERRED)
            for name in keywords.JX_FUNCTIONS}


FUNCTIONS: dict[str, Function] = _built_ins()
