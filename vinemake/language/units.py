"""Sizes, durations and counts with units, as Vinefiles write them (`2GB`, `30m`, `2k`)."""

from __future__ import annotations

import re

__all__ = ["parse_size_mb", "parse_duration_s", "parse_count"]

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")
# Multipliers into megabytes. Decimal units follow SI, binary units follow IEC; a bare
# number is MB as in Makeflow; single letters (4G) are Makeflow's metric suffixes.
_SIZE_UNITS = {
    "": 1, "b": 1e-6, "k": 1e-3, "kb": 1e-3, "m": 1, "mb": 1, "g": 1e3, "gb": 1e3,
    "t": 1e6, "tb": 1e6, "kib": 1024 / 1e6, "mib": 1024**2 / 1e6, "gib": 1024**3 / 1e6,
    "tib": 1024**4 / 1e6,
}
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Makeflow's metric suffixes on a count (CORES, GPUS, MPI_PROCESSES): `2k` is 2000.
_COUNT_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def parse_size_mb(text: str) -> int:
    """`512MB` → 512, `2GB` → 2000, `1.5GiB` → 1611, `100` → 100. ValueError if malformed."""
    value = _with_unit(text, _SIZE_UNITS, "a size", " (use a number with MB, GB, GiB, ...)")
    return max(0, round(value))


def parse_duration_s(text: str) -> float:
    """`90` → 90, `30m` → 1800, `2h` → 7200. ValueError if malformed."""
    return _with_unit(text, _DURATION_UNITS, "a duration", " (use a number with s, m, h or d)")


def parse_count(text: str) -> float:
    """`4` → 4, `0.5` → 0.5, `2k` → 2000 (Makeflow's metric suffixes). ValueError if malformed."""
    return _with_unit(text, _COUNT_UNITS, "a count", "")


def _with_unit(text: str, units: dict[str, float], what: str, hint: str) -> float:
    m = _SIZE.match(text)
    unit = m.group(2).lower() if m else None
    if not m or unit not in units:
        raise ValueError(f"not {what}: {text!r}{hint}")
    return float(m.group(1)) * units[unit]
