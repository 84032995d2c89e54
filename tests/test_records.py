"""vinemake.common.records.dataclass makes the class dataclasses.dataclass makes: each test
builds the same class body with both and compares what a user of the class can see."""

from __future__ import annotations

import copy
import dataclasses
import inspect
from dataclasses import FrozenInstanceError, field
from typing import ClassVar

import pytest

from vinemake.common import records


def both(body, **options):
    """The class `body` (a function returning a fresh class) decorated by dataclasses and by
    records, with the same options."""
    return dataclasses.dataclass(body(), **options), records.dataclass(body(), **options)


def shape(cls):
    """What dataclasses' own functions and introspection say about a class."""
    params = cls.__dataclass_params__
    return (str(inspect.signature(cls)), cls.__match_args__,
            [(f.name, f.type, f.default, f.default_factory, f.init, f.repr, f.compare, f.hash)
             for f in dataclasses.fields(cls)],
            (params.init, params.repr, params.eq, params.order, params.unsafe_hash,
             params.frozen))


def file_like():
    class FileLike:
        """A file with defaults, a factory and fields left out of some methods."""

        key: str
        sandbox: str
        path: str | None = None
        size: int = 0
        tags: tuple[str, ...] = field(default_factory=tuple)
        seen: float = field(default=0.0, compare=False)
        secret: str = field(default="", repr=False)
        counted: int = field(default=1, init=False)
        listed: list = field(default_factory=list, init=False, hash=False)

    return FileLike


def test_a_frozen_class_behaves_as_dataclasses_makes_it():
    std, fast = both(file_like, frozen=True)
    assert shape(fast) == shape(std)
    for cls in (std, fast):
        a = cls("k", "s", size=3, tags=("x",), seen=1.5, secret="pw")
        assert repr(a).endswith("FileLike(key='k', sandbox='s', path=None, size=3, tags=('x',), "
                                "seen=1.5, counted=1, listed=[])")
        assert a == cls("k", "s", size=3, tags=("x",), seen=9.0, secret="pw")  # seen: not compared
        assert a != cls("k", "t", size=3, tags=("x",))
        assert hash(a) == hash(cls("k", "s", size=3, tags=("x",), secret="pw"))
        assert dataclasses.replace(a, path="/p").path == "/p"
        assert dataclasses.asdict(a) == {"key": "k", "sandbox": "s", "path": None, "size": 3,
                                         "tags": ("x",), "seen": 1.5, "secret": "pw",
                                         "counted": 1, "listed": []}
        assert copy.deepcopy(a) == a == copy.copy(a)
        with pytest.raises(FrozenInstanceError, match="cannot assign to field 'key'"):
            a.key = "other"
        with pytest.raises(FrozenInstanceError, match="cannot delete field 'size'"):
            del a.size
        with pytest.raises(FrozenInstanceError, match="cannot assign to field 'other'"):
            a.other = 1
    assert std("k", "s") != fast("k", "s")  # another class: never equal
    assert std("k", "s").__eq__(fast("k", "s")) is NotImplemented


def test_a_mutable_class_is_unhashable_and_its_repr_survives_a_cycle():
    std, fast = both(file_like)
    assert shape(fast) == shape(std)
    for cls in (std, fast):
        assert cls.__hash__ is None
        a = cls("k", "s")
        a.listed.append(a)
        a.size = 4
        assert repr(a).endswith("FileLike(key='k', sandbox='s', path=None, size=4, tags=(), "
                                "seen=0.0, counted=1, listed=[...])")


def test_eq_false_keeps_identity_and_explicit_methods_are_kept():
    def body():
        class Explicit:
            name: str
            self: int = 0  # a field named self: the generated __init__ must not clash

            def __eq__(self, other):
                return isinstance(other, Explicit) and self.name.lower() == other.name.lower()

            def __repr__(self):
                return f"<{self.name}>"

            def __post_init__(self):
                object.__setattr__(self, "name", self.name.strip())

        return Explicit

    for cls in both(body, frozen=True):
        a = cls(" Ab ", self=2)
        assert (a.name, a.self, repr(a)) == ("Ab", 2, "<Ab>")
        assert a == cls("aB") and hash(a) == hash(cls("Ab", 2))

    def plain():
        class Plain:
            name: str

        return Plain

    std, fast = both(plain, frozen=True, eq=False)
    assert shape(fast) == shape(std)
    assert fast("a") != fast("a") and hash(fast("a")) != hash(fast("a"))

    def hashed():
        class Hashed:
            name: str

            def __hash__(self):
                return 7

        return Hashed

    for cls in both(hashed, frozen=True):
        assert hash(cls("a")) == 7


def test_what_dataclasses_refuses_is_refused_the_same_way():
    def mutable_default():
        class Bad:
            items: list = []  # noqa: RUF012 (the mistake under test)

        return Bad

    def default_first():
        class Bad:
            a: int = 0
            b: int

        return Bad

    def unannotated():
        class Bad:
            a: int
            b = field(default=0)

        return Bad

    def own_setattr():
        class Bad:
            a: int

            def __setattr__(self, name, value):
                pass

        return Bad

    for body, error, words in ((mutable_default, ValueError, "field items is not allowed"),
                               (default_first, TypeError, "non-default argument 'b'"),
                               (unannotated, TypeError, "'b' is a field but has no type"),
                               (own_setattr, TypeError, "Cannot overwrite attribute "
                                                        "__setattr__ in class Bad")):
        for decorate in (dataclasses.dataclass, records.dataclass):
            with pytest.raises(error, match=words):
                decorate(body(), frozen=True)


def test_what_it_does_not_make_itself_dataclasses_makes():
    def with_slots():
        class Slotted:
            a: int
            b: str = "x"

        return Slotted

    std, fast = both(with_slots, frozen=True, slots=True)
    assert fast.__slots__ == std.__slots__ == ("a", "b")
    assert shape(fast) == shape(std)

    def with_classvar():
        class Counted:
            a: int
            made: ClassVar[int] = 0

        return Counted

    std, fast = both(with_classvar, frozen=True)
    assert shape(fast) == shape(std)
    assert [f.name for f in dataclasses.fields(fast)] == ["a"]


def test_a_class_without_a_docstring_gets_its_signature_as_one():
    def undocumented():
        class Point:
            x: int
            y: int = 0

        return Point

    assert records.dataclass(undocumented()).__doc__ == "Point(x: int, y: int=0)"


def test_methods_are_compiled_at_their_first_use_whichever_comes_first():
    def point():
        class Point:
            x: int
            y: int = 0

        return Point

    def compiled(cls):
        return all(inspect.isfunction(vars(cls)[name]) for name in ("__init__", "__eq__",
                                                                    "__hash__"))

    never_used = records.dataclass(point(), frozen=True)
    assert not compiled(never_used)
    std = dataclasses.dataclass(point(), frozen=True)
    for first_use in (lambda cls: cls(1), lambda cls: cls.__eq__, lambda cls: hash(cls.__hash__),
                      lambda cls: inspect.signature(cls), lambda cls: type("Sub", (cls,), {})(2)):
        cls = records.dataclass(point(), frozen=True)
        first_use(cls)
        assert compiled(cls)
        assert shape(cls) == shape(std)
        assert vars(cls)["__init__"].__qualname__ == f"{cls.__qualname__}.__init__"
        assert vars(cls)["__init__"].__annotations__ == {"x": "int", "y": "int", "return": None}
        assert cls(1, 2) == cls(1, 2) != cls(1)
        assert hash(cls(1, 2)) == hash(std(1, 2))
    sub = type("Sub", (records.dataclass(point()),), {})
    assert sub(3).x == 3  # through the base's stand-in
