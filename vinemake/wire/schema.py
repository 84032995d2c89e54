"""Checks of decoded JSON values: each a function that names what is wrong, and compiled.

A check is called with a value and returns nothing or raises Bad, whose text says where the
bad value sits and what it must be. The wire carries only the shapes made here, so nesting is
as deep as they are, never deeper. Every message a manager or worker reads is checked, so the
valid path builds no text: where a bad value sits is put together only as Bad passes back up
through the containers.

`compiled(check)` is the same check as one function of straight-line tests that returns only
whether the value passes (no call per field, no exception): a reader asks it first, and calls
the check itself only for a value it refused, to say why.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["Bad", "Check", "boolean", "compiled", "integer", "js_object", "js_tuple", "listed",
           "number", "one_of", "or_null", "string", "time"]

Check = Callable[[object], None]
_INT64 = 2 ** 63


class Bad(Exception):
    """A value that fails its check; `path` is filled in (innermost first) on the way out."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what
        self.path: list[str] = []


def _shaped(shape: tuple) -> Callable[[Check], Check]:
    """Tag a check with its shape, (kind, *arguments), which `compiled` reads."""

    def tag(check: Check) -> Check:
        check.shape = shape  # type: ignore[attr-defined]
        return check

    return tag


def integer(lo: int = -_INT64, hi: int = _INT64 - 1) -> Check:
    @_shaped(("int", lo, hi))
    def check(v):
        if type(v) is not int or not lo <= v <= hi:
            raise Bad(f"must be an integer from {lo} to {hi}")
    return check


@_shaped(("number",))
def number(v) -> None:
    """A finite number, not below zero (sizes, times, resources)."""
    if type(v) not in (int, float) or not 0 <= v < math.inf:
        raise Bad("must be a number, not below zero")


@_shaped(("time",))
def time(v) -> None:
    if type(v) not in (int, float) or not math.isfinite(v):
        raise Bad("must be a number")


@_shaped(("str",))
def string(v) -> None:
    if type(v) is not str:
        raise Bad("must be a string")


@_shaped(("bool",))
def boolean(v) -> None:
    if type(v) is not bool:
        raise Bad("must be true or false")


def one_of(*values: str) -> Check:
    @_shaped(("one_of", frozenset(values)))
    def check(v):
        if type(v) is not str or v not in values:
            raise Bad(f"must be one of {', '.join(values)}")
    return check


def or_null(inner: Check) -> Check:
    @_shaped(("or_null", inner))
    def check(v):
        if v is not None:
            inner(v)
    return check


def listed(item: Check) -> Check:
    @_shaped(("list", item))
    def check(v):
        if type(v) is not list:
            raise Bad("must be a list")
        i = 0
        try:
            for i, x in enumerate(v):  # noqa: B007 - i names the bad item
                item(x)
        except Bad as e:
            e.path.append(f"[{i}]")
            raise
    return check


def js_tuple(*items: Check) -> Check:
    """A list of exactly these items, in order."""
    n = len(items)

    @_shaped(("tuple", items))
    def check(v):
        if type(v) is not list or len(v) != n:
            raise Bad(f"must be a list of {n} items")
        i = 0
        try:
            for i, item in enumerate(items):  # noqa: B007 - i names the bad item
                item(v[i])
        except Bad as e:
            e.path.append(f"[{i}]")
            raise
    return check


def js_object(required: dict[str, Check], optional: dict[str, Check] | None = None) -> Check:
    """A JSON object with every `required` key, maybe `optional` ones, and nothing else."""
    known = {**required, **(optional or {})}
    must = frozenset(required)

    @_shaped(("object", required, optional or {}))
    def check(v):
        if type(v) is not dict:
            raise Bad("must be an object")
        if not must <= v.keys():
            raise Bad(f"lacks {', '.join(sorted(must - v.keys()))}")
        k = ""
        try:
            for k, x in v.items():
                known[k](x)
        except KeyError:
            raise Bad(f"has an unknown field {str(k)[:40]!r}") from None
        except Bad as e:
            e.path.append(f".{k}")
            raise
    return check


# ---------------------------------------------------------------- compiled

def compiled(check: Check) -> Callable[[object], bool]:
    """`check` as one function: True exactly when `check` would pass the value."""
    source = _Source()
    source.line(1, "def ok(v0):")
    source.emit(check, "v0", 1)
    source.line(2, "return True")
    # The constants are the function's defaults: read as its locals, the fastest names.
    source.lines[0] = f"def ok(v0, {', '.join(f'{name}={name}' for name in source.constants)}):"
    scope = dict(source.constants)
    exec(compile("\n".join(source.lines), f"<schema {check.__qualname__}>", "exec"), scope)
    return scope["ok"]


_ABSENT = object()


class _Source:
    """The lines of a compiled check and the constants they name."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, object] = {"_inf": math.inf, "_ABSENT": _ABSENT,
                                              "_NUMBER": frozenset((int, float))}
        self._names = 0

    def line(self, depth: int, text: str) -> None:
        self.lines.append("    " * (depth - 1) + text)

    def name(self) -> str:
        self._names += 1
        return f"v{self._names}"

    def constant(self, value: object) -> str:
        name = f"c{len(self.constants)}"
        self.constants[name] = value
        return name

    def refuse_if(self, depth: int, condition: str) -> None:
        self.line(depth + 1, f"if {condition}:")
        self.line(depth + 2, "return False")

    def emit(self, check: Check, v: str, depth: int) -> None:
        """Lines (inside a function, `depth` levels in) that return False unless `v` passes."""
        kind, *args = check.shape  # type: ignore[attr-defined]
        if kind == "int":
            self.refuse_if(depth, f"type({v}) is not int or not {args[0]!r} <= {v} <= {args[1]!r}")
        elif kind == "number":
            self.refuse_if(depth, f"type({v}) not in _NUMBER or not 0 <= {v} < _inf")
        elif kind == "time":
            self.refuse_if(depth, f"type({v}) not in _NUMBER or not -_inf < {v} < _inf")
        elif kind in ("str", "bool"):
            self.refuse_if(depth, f"type({v}) is not {kind}")
        elif kind == "one_of":
            self.refuse_if(depth, f"type({v}) is not str or {v} not in {self.constant(args[0])}")
        elif kind == "or_null":
            self.line(depth + 1, f"if {v} is not None:")
            self.emit(args[0], v, depth + 1)
        elif kind == "list":
            self.refuse_if(depth, f"type({v}) is not list")
            item = self.name()
            self.line(depth + 1, f"for {item} in {v}:")
            self.emit(args[0], item, depth + 1)
        elif kind == "tuple":
            items = args[0]
            self.refuse_if(depth, f"type({v}) is not list or len({v}) != {len(items)}")
            names = [self.name() for _ in items]
            self.line(depth + 1, f"{', '.join(names)}, = {v}")
            for item, name in zip(items, names, strict=True):
                self.emit(item, name, depth)
        else:  # object
            required, optional = args
            known = self.constant(frozenset(required) | frozenset(optional))
            keys = self.name()
            self.refuse_if(depth, f"type({v}) is not dict")
            self.line(depth + 1, f"{keys} = {v}.keys()")
            if optional:
                self.refuse_if(depth, f"not {self.constant(frozenset(required))} <= {keys} "
                                      f"or not {keys} <= {known}")
            else:  # exactly these keys
                self.refuse_if(depth, f"{keys} != {known}")
            for key, item in required.items():
                name = self.name()
                self.line(depth + 1, f"{name} = {v}[{key!r}]")
                self.emit(item, name, depth)
            for key, item in optional.items():
                name = self.name()
                self.line(depth + 1, f"{name} = {v}.get({key!r}, _ABSENT)")
                self.line(depth + 1, f"if {name} is not _ABSENT:")
                self.emit(item, name, depth + 1)
