"""The nodes of a parsed JX expression: plain immutable tuples, each with where it starts.

jxparse.py makes them from the text, jx.py evaluates them. `at` is (line, column), 1-based,
of the node's first character (of the operator, for binary operators: where an error in it
is best shown).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Const", "Name", "Array", "Item", "Object", "Pair", "Comprehension", "Binary",
           "Unary", "Call", "Lookup", "Slice", "Node", "At", "start"]

At = tuple[int, int]


class Const(NamedTuple):
    """A literal: a string, an integer, a float, true, false or null."""

    value: object
    at: At


class Name(NamedTuple):
    """A name, looked up in the evaluation context."""

    name: str
    at: At


class Comprehension(NamedTuple):
    """`for NAME in ITERABLE [if CONDITION]`."""

    name: str
    iterable: Node
    condition: Node | None
    at: At


class Item(NamedTuple):
    """An entry of an array or an argument list, repeated by its comprehension clauses."""

    value: Node
    clauses: tuple[Comprehension, ...]
    at: At


class Array(NamedTuple):
    items: tuple[Item, ...]
    at: At


class Pair(NamedTuple):
    """`key: value` in an object, repeated by its comprehension clauses."""

    key: Node
    value: Node
    clauses: tuple[Comprehension, ...]
    at: At


class Object(NamedTuple):
    pairs: tuple[Pair, ...]
    at: At


class Binary(NamedTuple):
    """`left OP right`; `op` is the operator as the user wrote it (`and`, `&&`, `+`, ...)."""

    op: str
    left: Node
    right: Node
    at: At


class Unary(NamedTuple):
    """`not x`, `!x`, `-x`, `+x`."""

    op: str
    operand: Node
    at: At


class Call(NamedTuple):
    """`name(args)`; `x.name(args)` is a Call with x as its first argument."""

    name: str
    args: tuple[Item, ...]
    at: At


class Lookup(NamedTuple):
    """`target[index]`, where index may be a Slice."""

    target: Node
    index: Node
    at: At


class Slice(NamedTuple):
    """`[start:stop]` inside a lookup; either may be absent."""

    start: Node | None
    stop: Node | None
    at: At


Node = Const | Name | Array | Object | Binary | Unary | Call | Lookup | Slice


def start(node: Node) -> At:
    """Where the text of `node` starts (a binary operator's `at` is the operator's)."""
    while type(node) in (Binary, Lookup):
        node = node.left if type(node) is Binary else node.target
    return node.at
