"""Compact JSON text: orjson where it can write the value, the json module where it cannot."""

from __future__ import annotations

import json

import orjson

__all__ = ["compact"]

# Built once: json.dumps with options builds an encoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def compact(obj) -> tuple[bytes, bool]:
    """`obj` as compact JSON, and whether the json module wrote it.

    orjson writes several times faster, but refuses a string with a lone surrogate (a path's
    undecodable bytes under surrogateescape) and an integer beyond 64 bits; those go through
    the json module (ASCII, escaped) as they always did.
    """
    try:
        return orjson.dumps(obj), False
    except TypeError:
        return _ENCODER.encode(obj).encode(), True
