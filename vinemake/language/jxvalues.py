"""JX values as Python values, their type names and printed form, and the located JX error.

A JX value is None (null), bool, int, float, str, a list (array) or a dict (object, keys in
the order written). Python's bool is an int, so types are always told apart with kind(),
never with isinstance. Arrays and objects made by evaluating a literal remember where each
element was written (JxList, JxDict), so a workflow error can point at the entry at fault.
"""

from __future__ import annotations

import json

from vinemake.language.jxsyntax import At, Const, start

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
    """An array, with where it was written and the Array node it was made from (if any), to
    find where an item was written when an error needs it."""

    __slots__ = ("at", "node")

    def __init__(self, items=(), at: At = NULL_AT, node=None):
        super().__init__(items)
        self.at = at
        self.node = node

    def item_position(self, i: int) -> At:
        node = self.node
        # Item i of the node made item i of the array unless a comprehension made several.
        if node is not None and i < len(node.items) and not any(
                item.clauses for item in node.items[:i + 1]):
            return node.items[i].at
        return where(self[i], self.at) if i < len(self) else self.at


class JxDict(dict):
    """An object, with where it was written and the Object node it was made from (if any), to
    find where a key or its value was written when asked."""

    __slots__ = ("at", "node")

    def __init__(self, items=(), at: At = NULL_AT, node=None):
        super().__init__(items)
        self.at = at
        self.node = node

    def _pair(self, key: str):
        node = self.node
        if node is None:
            return None
        for pair in node.pairs:
            if type(pair.key) is Const and pair.key.value == key:
                return pair
        # A computed key: the first pair whose key is not written out.
        return next((p for p in node.pairs if type(p.key) is not Const), None)

    def key_position(self, key: str) -> At:
        pair = self._pair(key)
        return pair.at if pair is not None else self.at

    def value_position(self, key: str) -> At:
        pair = self._pair(key)
        return start(pair.value) if pair is not None else where(self.get(key), self.at)


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
