"""Click callbacks that read sizes and durations, shared by every `vinemake` command."""

from __future__ import annotations

import click

from vinemake.language.units import parse_duration_s, parse_size_mb

__all__ = ["size_mb", "duration_s"]


def size_mb(ctx, param, value):
    """`--memory 4GB` → 4000 (MB); a bad size is click's usage error."""
    try:
        return None if value is None else parse_size_mb(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def duration_s(ctx, param, value):
    """`--older-than 30d` → seconds; a bad duration is click's usage error."""
    try:
        return None if value is None else parse_duration_s(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
