"""`dataclass`: the standard library's decorator, its methods compiled in one piece per class.

`dataclasses.dataclass` compiles each generated method on its own (an `__init__`, `__repr__`,
`__eq__`, `__hash__`, and for a frozen class `__setattr__` and `__delattr__`), and asks
`inspect` for a signature to write a class without a docstring one: together the largest part
of a short run's imports, which create some sixty classes. This decorator writes the same
methods, from the same source text, as one function compiled once, and leaves the class as
dataclasses would: `__dataclass_fields__` and `__dataclass_params__` are set, so `fields`,
`replace`, `asdict` and `is_dataclass` work on it unchanged. Anything it does not handle itself
(slots, ordering, keyword-only or `InitVar` fields, `ClassVar` annotations, a base class with
fields, `unsafe_hash` or any other option) goes to `dataclasses.dataclass` as it is.
"""

from __future__ import annotations

import abc
import dataclasses
import reprlib
import sys
from dataclasses import MISSING, Field, FrozenInstanceError, field

__all__ = ["dataclass", "field"]

# Private names of dataclasses this module must agree with: if a Python lacks them, every
# class goes to dataclasses.dataclass.
_FIELD = getattr(dataclasses, "_FIELD", None)
_HAS_DEFAULT_FACTORY = getattr(dataclasses, "_HAS_DEFAULT_FACTORY", None)
_PARAMS = getattr(dataclasses, "_DataclassParams", None)
_PARAMS_ARGS = (_PARAMS.__init__.__code__.co_varnames[1:_PARAMS.__init__.__code__.co_argcount]
                if _PARAMS is not None and hasattr(_PARAMS.__init__, "__code__") else ())
_SUPPORTED = (_FIELD is not None and _HAS_DEFAULT_FACTORY is not None
              and set(_PARAMS_ARGS) >= {"init", "repr", "eq", "order", "unsafe_hash", "frozen"})


def dataclass(cls=None, /, *, frozen: bool = False, eq: bool = True, **options):
    """`dataclasses.dataclass(cls, frozen=..., eq=..., **options)`, made with one compile
    when `options` is empty and the class is a plain one (see the module's docstring)."""

    def wrap(cls):
        fields = None if options or not _SUPPORTED else _own_fields(cls)
        if fields is None:
            return dataclasses.dataclass(cls, frozen=frozen, eq=eq, **options)
        return _process(cls, fields, frozen, eq)

    return wrap if cls is None else wrap(cls)


def _own_fields(cls) -> list[Field] | None:
    """The class's fields as dataclasses would make them, or None where this module leaves
    the class to dataclasses."""
    if "__slots__" in cls.__dict__ or any(hasattr(base, "__dataclass_fields__")
                                          for base in cls.__mro__[1:]):
        return None
    fields = []
    for name, kind in cls.__dict__.get("__annotations__", {}).items():
        text = kind if isinstance(kind, str) else repr(kind)
        if "ClassVar" in text or "InitVar" in text or "KW_ONLY" in text:
            return None
        default = getattr(cls, name, MISSING)
        f = default if isinstance(default, Field) else field(default=default)
        if f.kw_only not in (MISSING, False):
            return None
        f.name, f.type, f._field_type, f.kw_only = name, kind, _FIELD, False
        if f.default is not MISSING and f.default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        if f.default.__class__.__hash__ is None:
            raise ValueError(f"mutable default {type(f.default)} for field {name} is not "
                             "allowed: use default_factory")
        fields.append(f)
    return fields


def _process(cls, fields: list[Field], frozen: bool, eq: bool):
    for f in fields:
        if isinstance(cls.__dict__.get(f.name), Field):
            if f.default is MISSING:
                delattr(cls, f.name)
            else:
                setattr(cls, f.name, f.default)
    for name, value in cls.__dict__.items():
        if isinstance(value, Field) and name not in cls.__dict__.get("__annotations__", {}):
            raise TypeError(f"{name!r} is a field but has no type annotation")
    cls.__dataclass_fields__ = {f.name: f for f in fields}
    params = {"init": True, "repr": True, "eq": eq, "order": False, "unsafe_hash": False,
              "frozen": frozen, "match_args": True, "kw_only": False, "slots": False,
              "weakref_slot": False}
    cls.__dataclass_params__ = _PARAMS(*(params[name] for name in _PARAMS_ARGS))

    class_hash = cls.__dict__.get("__hash__", MISSING)
    explicit_hash = not (class_hash is MISSING
                         or (class_hash is None and "__eq__" in cls.__dict__))
    methods = _methods(cls, fields, frozen, eq, explicit_hash)
    methods["__init__"].__annotations__ = {**{f.name: f.type for f in fields if f.init},
                                           "return": None}
    for name, fn in methods.items():
        fn.__qualname__ = f"{cls.__qualname__}.{name}"
        if name == "__hash__":
            cls.__hash__ = fn
        elif name in cls.__dict__:
            if name in ("__setattr__", "__delattr__"):
                raise TypeError(f"Cannot overwrite attribute {name} in class {cls.__name__}")
        else:
            setattr(cls, name, fn)
    if eq and not frozen and not explicit_hash:
        cls.__hash__ = None
    if cls.__doc__ is None:
        cls.__doc__ = f"{cls.__name__}({', '.join(_parameter(f) for f in fields if f.init)})"
    if "__match_args__" not in cls.__dict__:
        cls.__match_args__ = tuple(f.name for f in fields if f.init)
    abc.update_abstractmethods(cls)
    return cls


def _parameter(f: Field) -> str:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", repr(f.type))
    default = "" if f.default is MISSING and f.default_factory is MISSING else (
        f"={f.default!r}" if f.default is not MISSING else "=<factory>")
    return f"{f.name}: {kind}{default}"


def _methods(cls, fields: list[Field], frozen: bool, eq: bool, explicit_hash: bool) -> dict:
    """dataclasses' methods for `cls`. Only `__init__` is compiled (from the source text
    dataclasses writes): the others, not on any hot path or as fast through attrgetter, are
    closures, which cost nothing to make."""
    methods = _compiled(cls, fields, frozen, eq, explicit_hash)
    shown = tuple(f.name for f in fields if f.repr)

    def __repr__(self):
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"{self.__class__.__qualname__}({inner})"

    methods["__repr__"] = reprlib.recursive_repr()(__repr__)
    if frozen:
        own = frozenset(f.name for f in fields)

        def __setattr__(self, name, value):
            if type(self) is cls or name in own:
                raise FrozenInstanceError(f"cannot assign to field {name!r}")
            super(cls, self).__setattr__(name, value)

        def __delattr__(self, name):
            if type(self) is cls or name in own:
                raise FrozenInstanceError(f"cannot delete field {name!r}")
            super(cls, self).__delattr__(name)

        methods["__setattr__"], methods["__delattr__"] = __setattr__, __delattr__
    return methods


def _compiled(cls, fields: list[Field], frozen: bool, eq: bool, explicit_hash: bool) -> dict:
    """`__init__`, and `__eq__` and `__hash__` where dataclasses would add them: from the
    text dataclasses writes, compiled as one function that returns them (the default values
    and factories are names it closes over), at their first use (_Pending)."""
    names: dict[str, object] = {"__dataclass_builtins_object__": object,
                                "_HAS_DEFAULT_FACTORY": _HAS_DEFAULT_FACTORY}
    sources = {"__init__": _init(cls, fields, frozen, names)}
    if eq:
        mine = "".join(f"self.{f.name}," for f in fields if f.compare)
        theirs = "".join(f"other.{f.name}," for f in fields if f.compare)
        sources["__eq__"] = ("def __eq__(self, other):\n"
                             " if other.__class__ is self.__class__:\n"
                             f"  return ({mine})==({theirs})\n"
                             " return NotImplemented")
    if eq and frozen and not explicit_hash:
        hashed = "".join(f"self.{f.name}," for f in fields
                         if (f.compare if f.hash is None else f.hash))
        sources["__hash__"] = f"def __hash__(self):\n return hash(({hashed}))"
    body = "".join(f"\n {line}" for text in sources.values() for line in text.split("\n"))
    text = (f"def __create_fn__({', '.join(names)}):{body}\n"
            f" return ({', '.join(sources)},)")
    pending = _Pending(cls, text, names, tuple(sources))
    return {name: _Method(name, pending) for name in sources}


class _Pending:
    """A class's compiled methods, compiled at the first use of any of them: a short run
    creates some sixty classes and makes instances of about two thirds."""

    def __init__(self, cls, text: str, names: dict, sources: tuple[str, ...]):
        self.cls, self.text, self.names, self.sources = cls, text, names, sources
        self.methods: dict[str, _Method] = {}  # the stand-ins, by name
        self.real: dict | None = None

    def compile(self) -> dict:
        """The methods, compiled now if they were not yet, and put on the class in place of
        their stand-ins (with the names and annotations given to those)."""
        if self.real is None:
            cls, scope = self.cls, {}
            module = sys.modules.get(cls.__module__)
            exec(self.text, module.__dict__ if module is not None else {}, scope)  # noqa: S102
            real = dict(zip(self.sources, scope["__create_fn__"](**self.names), strict=True))
            for name, fn in real.items():
                stand_in = self.methods[name]
                fn.__qualname__ = stand_in.__qualname__
                if name == "__init__":
                    fn.__annotations__ = stand_in.__annotations__
                if cls.__dict__.get(name) is stand_in:
                    setattr(cls, name, fn)
            self.real = real
        return self.real


class _Method:
    """Stands in for a compiled method until its class's methods are compiled: any look-up
    through the class (a call on an instance, `cls.__init__`, introspection) compiles them
    and gets the real function."""

    def __init__(self, name: str, pending: _Pending):
        self.name, self.pending = name, pending
        self.__qualname__ = name
        pending.methods[name] = self

    def __get__(self, obj, owner=None):
        fn = self.pending.compile()[self.name]
        return fn if obj is None else fn.__get__(obj, owner)


def _init(cls, fields: list[Field], frozen: bool, names: dict) -> str:
    """dataclasses' `__init__` for `fields`, its defaults and factories put in `names`."""
    self = "__dataclass_self__" if any(f.name == "self" for f in fields) else "self"
    params, lines, seen_default = [self], [], False
    for f in fields:
        default = f"_dflt_{f.name}"
        if f.init:
            if f.default is MISSING and f.default_factory is MISSING:
                if seen_default:
                    raise TypeError(f"non-default argument {f.name!r} follows default "
                                    "argument")
                params.append(f.name)
            else:
                seen_default = True
                given = "_HAS_DEFAULT_FACTORY" if f.default is MISSING else default
                params.append(f"{f.name}={given}")
        if f.default_factory is not MISSING:
            names[default] = f.default_factory
            value = (f"{default}() if {f.name} is _HAS_DEFAULT_FACTORY else {f.name}"
                     if f.init else f"{default}()")
        elif f.init:
            if f.default is not MISSING:
                names[default] = f.default
            value = f.name
        else:
            continue  # read from the class, where its default stays
        lines.append(f"__dataclass_builtins_object__.__setattr__({self},{f.name!r},{value})"
                     if frozen else f"{self}.{f.name}={value}")
    if hasattr(cls, "__post_init__"):
        lines.append(f"{self}.__post_init__()")
    body = "".join(f"\n {line}" for line in lines or ["pass"])
    return f"def __init__({', '.join(params)}):{body}"
