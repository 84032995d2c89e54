"""JX values as Python values, their type names and printed form, and the located JX error.

A JX value is None (null), bool, int, float, str, a list (array) or a dict (object, keys in
the order written). Python's bool is an int, so types are always told apart with kind(),
never with isinstance. Arrays and objects made by evaluating a literal remember where each
element was written (JxList, JxDict), so a workflow error can point at the entry at fault.
"""

from __future__ import annotations

import json

from vinemake.language.jxsyntax import At

__all__ = ["JxError", "JxList", "JxDict", "kind", "show", "brief", "to_text", "equal", "where",
           "NULL_AT"]

NULL_AT: At = (1, 1)


class JxError(Exception):
    """A JX evaluation error at `at` (line, column) of the text being evaluated."""

    def __init__(self, at: At, message: str):
        super().__init__(message)
        self.at = at
        self.message = message


class JxList(list):
    """An array with where it and each of its items were written."""

    __slots__ = ("at", "item_at")

    def __init__(self, items=(), at: At = NULL_AT, item_at=None):
        super().__init__(items)
        self.at = at
        self.item_at = item_at if item_at is not None else [at] * len(self)


class JxDict(dict):
    """An object with where it, each key and each value were written."""

    __slots__ = ("at", "key_at", "value_at")

    def __init__(self, items=(), at: At = NULL_AT):
        super().__init__(items)
        self.at = at
        self.key_at: dict[str, At] = {}
        self.value_at: dict[str, At] = {}


def where(value, fallback: At) -> At:
    """Where `value` was written, if it remembers it."""
    return getattr(value, "at", fallback)


_KINDS = {type(None): "null", bool: "boolean", int: "integer", float: "float", str: "string",
          list: "array", JxList: "array", dict: "object", JxDict: "object"}


def kind(value) -> str:
    """JX's name for the type of `value` (as its schema() function names it)."""
    return _KINDS.get(type(value), "unknown")


def show(value) -> str:
    """`value` printed as JX prints it (JSON, floats with up to 16 significant digits)."""
    k = kind(value)
    if k == "null":
        return "null"
    if k == "boolean":
        return "true" if value else "false"
    if k == "integer":
        return str(value)
    if k == "float":
        return f"{value:.16g}"
    if k == "string":
        return json.dumps(value, ensure_ascii=False)
    if k == "array":
        return "[" + ",".join(show(v) for v in value) + "]"
    if k == "object":
        return "{" + ",".join(f"{show(k)}:{show(v)}" for k, v in value.items()) + "}"
    return repr(value)


def brief(value) -> str:
    """`value` printed for a message, cut short."""
    text = show(value)
    return text if len(text) <= 60 else text[:57] + "..."


def to_text(value) -> str:
    """A string as itself, any other atomic value printed (for `"a" + 1` and templates)."""
    return value if kind(value) == "string" else show(value)


def equal(a, b) -> bool:
    """JX equality: types must match (an integer and a float compare as numbers), arrays and
    objects compare element by element."""
    ka, kb = kind(a), kind(b)
    if {ka, kb} == {"integer", "float"}:
        return float(a) == float(b)
    if ka != kb:
        return False
    if ka == "array":
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    if ka == "object":
        return a.keys() == b.keys() and all(equal(a[key], b[key]) for key in a)
    return a == b
