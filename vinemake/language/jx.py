"""Evaluate JX expressions (cctools' JX semantics): names, operators, comprehensions, calls.

- Names are looked up in a chain of scopes: a comprehension's variable, an object's keys
  inside select()/project(), then the context. A `define` entry is kept unevaluated and is
  evaluated where it is used, in the scope of the use, as cctools does: a define may use
  another define, or a comprehension variable in force where it is used. A define that
  needs itself is an error, not a hang.
- Operators follow cctools: an integer meets a float as a float; `+` joins strings and
  arrays, and a string with any other atomic value (`"out." + 3`); integer `/` and `%`
  truncate toward zero as C does; `and`/`or` need booleans and stop at the first that
  decides; `==` between different types is false; `<` and friends compare two numbers or
  two strings. Anything else is an error, located at the operator.
- Every error stops the evaluation (JX errors cannot be caught): a JxError with where.
"""

from __future__ import annotations

from collections.abc import Mapping

from vinemake.common.suggest import did_you_mean
from vinemake.language import jxfunctions
from vinemake.language.jxparse import parse_jx
from vinemake.language.jxsyntax import (
    Array,
    At,
    Binary,
    Call,
    Const,
    Item,
    Lookup,
    Name,
    Node,
    Object,
    Slice,
    Unary,
)
from vinemake.language.jxvalues import (
    JxDict,
    JxError,
    JxList,
    brief,
    equal,
    kind,
    show,
    to_text,
)
from vinemake.language.statements import SourceText

__all__ = ["Scope", "Lazy", "Evaluator", "evaluate"]


class Lazy:
    """A `define` entry: an expression evaluated where its name is used."""

    __slots__ = ("node", "name")

    def __init__(self, name: str, node: Node):
        self.name = name
        self.node = node


class Scope:
    """Names → values (or Lazy defines), with the enclosing scope to look in next."""

    __slots__ = ("names", "parent")

    def __init__(self, names: Mapping, parent: Scope | None = None):
        self.names = names
        self.parent = parent

    def find(self, name: str):
        """(found, value); the value may be a Lazy."""
        scope: Scope | None = self
        while scope is not None:
            if name in scope.names:
                return True, scope.names[name]
            scope = scope.parent
        return False, None

    def all_names(self) -> set[str]:
        names: set[str] = set()
        scope: Scope | None = self
        while scope is not None:
            names.update(scope.names)
            scope = scope.parent
        return names

    def child(self, names: Mapping) -> Scope:
        return Scope(names, self)


_COMPARE = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
_BOOLEAN_OPS = {"and": "and", "&&": "and", "or": "or", "||": "or"}


def _c_div(a: int, b: int) -> int:
    """a / b truncated toward zero (C's integer division)."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


class Evaluator:
    """Evaluates nodes; `root` is the directory listdir() and fetch() read relative paths in."""

    def __init__(self, root: str = "."):
        self.root = root
        self._defining: list[str] = []

    def eval(self, node: Node, scope: Scope):
        if type(node) is Const:
            return node.value
        try:
            return _METHODS[type(node)](self, node, scope)
        except RecursionError:
            raise JxError(node.at, "expression nested too deeply") from None

    # ---- values ------------------------------------------------------------------------
    def _name(self, node: Name, scope: Scope):
        found, value = scope.find(node.name)
        if not found:
            hint = did_you_mean(node.name, scope.all_names())
            raise JxError(node.at, f"undefined symbol '{node.name}'{hint}")
        if type(value) is Lazy:
            return self._define(value, node, scope)
        return value

    def _define(self, lazy: Lazy, use: Name, scope: Scope):
        if lazy.name in self._defining:
            chain = " -> ".join([*self._defining[self._defining.index(lazy.name):], lazy.name])
            raise JxError(use.at, f"define '{lazy.name}' needs itself ({chain})")
        self._defining.append(lazy.name)
        try:
            return self.eval(lazy.node, scope)
        finally:
            self._defining.pop()

    def _array(self, node: Array, scope: Scope) -> JxList:
        return JxList(self.items(node.items, scope), node.at, node)

    def items(self, items: tuple[Item, ...], scope: Scope) -> list:
        """The values of a list's items, comprehensions expanded."""
        values: list = []
        for item in items:
            if not item.clauses:
                values.append(self.eval(item.value, scope))
                continue
            value = item.value
            for inner in self._clauses(item.clauses, scope):
                values.append(self.eval(value, inner))
        return values

    def _clauses(self, clauses, scope: Scope):
        """Each scope the comprehension clauses make, left to right (nested loops)."""
        first, rest = clauses[0], clauses[1:]
        iterable = self.eval(first.iterable, scope)
        if kind(iterable) != "array":
            raise JxError(first.iterable.at, f"'for {first.name} in' needs an array, got "
                                             f"{kind(iterable)} {brief(iterable)}")
        for element in iterable:
            inner = scope.child({first.name: element})
            if first.condition is not None:
                ok = self.eval(first.condition, inner)
                if kind(ok) != "boolean":
                    raise JxError(first.condition.at, "a comprehension's 'if' needs a boolean, "
                                                      f"got {kind(ok)} {brief(ok)}")
                if not ok:
                    continue
            if rest:
                yield from self._clauses(rest, inner)
            else:
                yield inner

    def _object(self, node: Object, scope: Scope) -> JxDict:
        result = JxDict(at=node.at, node=node)
        for pair in node.pairs:
            scopes = self._clauses(pair.clauses, scope) if pair.clauses else (scope,)
            key_node, value_node = pair.key, pair.value
            for inner in scopes:
                key = key_node.value if type(key_node) is Const else self.eval(key_node, inner)
                if type(key) is not str:
                    raise JxError(key_node.at, f"an object's key must be a string, got "
                                               f"{kind(key)} {brief(key)}")
                result[key] = (value_node.value if type(value_node) is Const
                               else self.eval(value_node, inner))
        return result

    # ---- operators ---------------------------------------------------------------------
    def _unary(self, node: Unary, scope: Scope):
        value = self.eval(node.operand, scope)
        k = kind(value)
        if node.op in ("not", "!"):
            if k != "boolean":
                raise JxError(node.at, f"'{node.op}' needs a boolean, got {k} {brief(value)}")
            return not value
        if k in ("integer", "float") or (node.op == "+" and k == "string"):
            return -value if node.op == "-" else value
        raise JxError(node.at, f"unary '{node.op}' needs a number, got {k} {brief(value)}")

    def _binary(self, node: Binary, scope: Scope):
        op = _BOOLEAN_OPS.get(node.op)
        left = node.left
        left = left.value if type(left) is Const else self.eval(left, scope)
        if op is not None:
            # Stops at the first operand that decides, as cctools does.
            if kind(left) == "boolean" and left == (op == "or"):
                return left
            right = self.eval(node.right, scope)
            if kind(left) != "boolean" or kind(right) != "boolean":
                raise self._mismatch(node, left, right, "booleans")
            return right
        right = node.right
        right = right.value if type(right) is Const else self.eval(right, scope)
        return self.operate(node, left, right)

    def operate(self, node: Binary, left, right):
        op = node.op
        if op == "+":
            # The usual cases, building names and commands: "out." + name, "out." + 3.
            tl, tr = type(left), type(right)
            if tl is str and (tr is str or tr is int):
                return left + (right if tr is str else str(right))
            if tl is int and tr is str:
                return str(left) + right
        kl, kr = kind(left), kind(right)
        numbers = kl in ("integer", "float") and kr in ("integer", "float")
        if op == "==":
            return equal(left, right)
        if op == "!=":
            return not equal(left, right)
        if op in _COMPARE:
            if numbers or kl == kr == "string":
                return _COMPARE[op](left, right)
            raise self._mismatch(node, left, right, "two numbers or two strings")
        if op == "+":
            if numbers:
                return left + right
            if kl == kr and kl in ("string", "array"):
                return left + right
            atomic = ("null", "boolean", "integer", "float", "string")
            if "string" in (kl, kr) and kl in atomic and kr in atomic:
                return to_text(left) + to_text(right)
            raise self._mismatch(node, left, right, "numbers, strings or arrays")
        if not numbers:
            raise self._mismatch(node, left, right, "numbers")
        if op == "-":
            return left - right
        if op == "*":
            return left * right
        if right == 0:
            raise JxError(node.at, f"division by zero in {show(left)} {op} {show(right)}")
        both_int = kl == kr == "integer"
        if op == "/":
            return _c_div(left, right) if both_int else left / right
        # % as C computes it: the remainder takes the sign of the dividend.
        if both_int:
            return left - right * _c_div(left, right)
        a, b = int(left), int(right)
        if b == 0:
            raise JxError(node.at, f"division by zero in {show(left)} % {show(right)}")
        return float(a - b * _c_div(a, b))

    @staticmethod
    def _mismatch(node: Binary, left, right, needs: str) -> JxError:
        return JxError(node.at, f"'{node.op}' needs {needs}, got {kind(left)} {brief(left)} "
                                f"and {kind(right)} {brief(right)}")

    # ---- lookups and calls -------------------------------------------------------------
    def _lookup(self, node: Lookup, scope: Scope):
        target = self.eval(node.target, scope)
        if type(node.index) is Slice:
            return self._slice(node.index, target, scope)
        index = self.eval(node.index, scope)
        kt, ki = kind(target), kind(index)
        if kt == "object" and ki == "string":
            if index not in target:
                hint = did_you_mean(index, target.keys())
                raise JxError(node.index.at, f"key {show(index)} not found{hint}")
            return target[index]
        if kt == "array" and ki == "integer":
            if not -len(target) <= index < len(target):
                raise JxError(node.index.at, f"index {index} out of range (the array has "
                                             f"{len(target)} items)")
            return target[index]
        raise JxError(node.at, f"cannot look up {ki} {brief(index)} in {kt} {brief(target)} "
                               "(an array takes an integer, an object a string)")

    def _slice(self, node: Slice, target, scope: Scope):
        if kind(target) != "array":
            raise JxError(node.at, f"only arrays can be sliced, not {kind(target)} "
                                   f"{brief(target)}")
        bounds = []
        for bound in (node.start, node.stop):
            value = None if bound is None else self.eval(bound, scope)
            if bound is not None and kind(value) != "integer":
                raise JxError(bound.at, f"slice indices must be integers, got {kind(value)} "
                                        f"{brief(value)}")
            bounds.append(value)
        start, stop = bounds
        n = len(target)
        start = 0 if start is None else (start + n if start < 0 else start)
        stop = n if stop is None else (stop + n if stop < 0 else stop)
        return JxList(target[max(start, 0):max(stop, 0)], node.at)

    def name_value(self, name: str, at: At, scope: Scope):
        """The value of `name` in `scope`, a define evaluated (for template())."""
        return self._name(Name(name, at), scope)

    def document(self, text: str, path: str):
        """The value of the JX document `text` read from `path` (for fetch()), evaluated in
        an empty context; its errors are located in it."""
        source = SourceText(path, text)
        node = parse_jx(text, path)
        try:
            return Evaluator(self.root).eval(node, Scope({}))
        except JxError as e:
            raise source.error(*e.at, e.message) from None

    def _call(self, node: Call, scope: Scope):
        function = jxfunctions.FUNCTIONS.get(node.name)
        if function is None:
            hint = did_you_mean(node.name, jxfunctions.FUNCTIONS)
            raise JxError(node.at, f"unknown function '{node.name}'{hint}")
        call = jxfunctions.CallSite(node.name, node.at, node.args, scope, self)
        if function.deferred:
            return function.run(call)
        return function.run(call, *self.items(node.args, scope))


def evaluate(node: Node, names: Mapping | None = None, root: str = "."):
    """The value of `node` in a context of `names` (values, or Lazy defines)."""
    return Evaluator(root).eval(node, Scope(dict(names or {})))


# What evaluates each kind of node (Const is answered before the lookup).
_METHODS = {Name: Evaluator._name, Array: Evaluator._array, Object: Evaluator._object,
            Unary: Evaluator._unary, Binary: Evaluator._binary, Lookup: Evaluator._lookup,
            Call: Evaluator._call}
