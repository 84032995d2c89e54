"""`@` annotations above a rule, and resource values, read from words into RuleSpec fields.

Pure functions over the annotation's words (already expanded, each with its offset in the
annotation's arguments); problems raise AnnotationError with that offset so the caller can
locate them. The names and keys come from vinemake/keywords.py.
"""

from __future__ import annotations

from vinemake.language import keywords
from vinemake.language.units import parse_count, parse_duration_s, parse_size_mb

__all__ = ["AnnotationError", "RESOURCE_VALUES", "read_annotation"]


class AnnotationError(Exception):
    """A bad annotation; `offset` is where in its arguments, None for the annotation itself."""

    def __init__(self, offset: int | None, message: str):
        super().__init__(message)
        self.offset = offset
        self.message = message


# Resource variable → (Resources field, parser, what a good value looks like).
def _cores(text: str) -> float:
    value = parse_count(text)
    return int(value) if value.is_integer() else value


def _count(text: str) -> int:
    value = parse_count(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


RESOURCE_VALUES = {
    "CORES": ("cores", _cores, "a number of cores"),
    "MEMORY": ("memory_mb", parse_size_mb, "a size like 512MB or 2GB (a bare number is MB)"),
    "DISK": ("disk_mb", parse_size_mb, "a size like 512MB or 2GB (a bare number is MB)"),
    "GPUS": ("gpus", _count, "a whole number of GPUs"),
    "WALL_TIME": ("wall_time_s", parse_duration_s, "a duration like 90s, 30m or 2h"),
    "MPI_PROCESSES": ("mpi_processes", _count, "a whole number of processes"),
}
_ANNOTATION_RESOURCES = dict(zip(keywords.ANNOTATIONS["resources"],
                                 ("CORES", "MEMORY", "DISK", "GPUS", "WALL_TIME"), strict=True))


def read_annotation(name: str, words: list[tuple[str, int]], fields: dict) -> None:
    """Add what `@name words...` means to `fields` (RuleSpec field names, plus "resources")."""
    reader = _READERS.get(name)
    if reader is None:
        known = ", ".join("@" + a for a in keywords.ANNOTATIONS)
        raise AnnotationError(None, f"unknown annotation '@{name}' (expected one of {known})")
    reader(words, fields)


def _resources(words: list[tuple[str, int]], fields: dict) -> None:
    if not words:
        raise AnnotationError(None, "@resources needs key=value pairs "
                              "(cores, memory, disk, gpus, wall_time)")
    found = fields.setdefault("resources", {})
    for word, offset in words:
        key, eq, value = word.partition("=")
        if key not in _ANNOTATION_RESOURCES:
            known = ", ".join(keywords.ANNOTATIONS["resources"])
            raise AnnotationError(offset, f"unknown key '{key}' for @resources "
                                  f"(expected {known})")
        var = _ANNOTATION_RESOURCES[key]
        field, parse, good = RESOURCE_VALUES[var]
        try:
            if not eq:
                raise ValueError(value)
            found[field] = parse(value)
        except ValueError:
            raise AnnotationError(offset, f"bad {key} value {value!r}: "
                                  f"expected {good}") from None

# More attempts than anyone waits for: a bigger number is a typo, or a rule that fails for
# good retried until the run is killed.
MAX_RETRIES = 100


def _retries(words: list[tuple[str, int]], fields: dict) -> None:
    if len(words) != 1 or not words[0][0].isdigit():
        offset = words[0][1] if words else None
        raise AnnotationError(offset, "@retries needs one whole number, like "
                              "@retries 3")
    text, offset = words[0]
    digits = text.lstrip("0") or "0"
    if len(digits) > 3 or int(digits) > MAX_RETRIES:  # never int() of a thousand digits
        raise AnnotationError(offset, f"@retries {text[:20]}{'...' if len(text) > 20 else ''}"
                                      f" is more than {MAX_RETRIES}, the most a rule may "
                                      "retry")
    fields["retries"] = int(digits)

def _temp(words: list[tuple[str, int]], fields: dict) -> None:
    if words:
        raise AnnotationError(words[0][1], "@temp takes no arguments")
    fields["temp"] = True

def _cache(words: list[tuple[str, int]], fields: dict) -> None:
    if [w for w, _ in words] != list(keywords.ANNOTATIONS["cache"]):
        offset = words[0][1] if words else None
        raise AnnotationError(offset, "@cache takes one word: @cache forever")
    fields["cache_forever"] = True

def _library(words: list[tuple[str, int]], fields: dict) -> None:
    if not words or "=" in words[0][0]:
        raise AnnotationError(None, "@library needs a NAME, like @library ml slots=4")
    fields["library"] = words[0][0]
    for word, offset in words[1:]:
        key, eq, value = word.partition("=")
        if key not in keywords.ANNOTATIONS["library"]:
            raise AnnotationError(offset, f"unknown key '{key}' for @library "
                                  "(expected slots)")
        if not eq or not value.isdigit() or int(value) < 1:
            raise AnnotationError(offset, f"bad slots value {value!r}: expected a "
                                  "whole number of at least 1")
        fields["library_slots"] = int(value)

def _call(words: list[tuple[str, int]], fields: dict) -> None:
    if len(words) != 1:
        offset = words[1][1] if len(words) > 1 else None
        raise AnnotationError(offset, "@call needs exactly one library NAME, "
                              "like @call ml")
    fields["call"] = words[0][0]


def _mini(words: list[tuple[str, int]], fields: dict) -> None:
    if words:
        raise AnnotationError(words[0][1], "@mini takes no arguments")
    fields["mini"] = True


def _environment(words: list[tuple[str, int]], fields: dict) -> None:
    if len(words) != 1:
        offset = words[1][1] if len(words) > 1 else None
        raise AnnotationError(offset, "@environment needs one packed environment FILE, like "
                              "@environment env.tar.gz")
    fields["environment"] = words[0][0]


_READERS = {"resources": _resources, "retries": _retries, "temp": _temp, "cache": _cache,
            "library": _library, "call": _call, "mini": _mini, "environment": _environment}
