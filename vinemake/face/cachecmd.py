"""`vinemake cache ...`: commands on a cache store itself (today: `prune`)."""

from __future__ import annotations

import os

import click

from vinemake.common.errors import describe_os_error
from vinemake.core.statedir import StateDir
from vinemake.face.params import duration_s, size_mb

__all__ = ["cache"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cache() -> None:
    """Commands on a cache store (a workflow's own, or a shared --cache-dir)."""


@cache.command("prune")
@click.option("--cache-dir", metavar="DIR", help="The store to prune (default: this "
              "directory's workflow store, .vinemake/cache).")
@click.option("--older-than", callback=duration_s, metavar="TIME",
              help="Remove entries not stored or restored for TIME (30d, 12h, 90m).")
@click.option("--max-size", callback=size_mb, metavar="SIZE",
              help="Then remove the oldest entries until the store holds at most SIZE (50GB).")
def prune_command(cache_dir, older_than, max_size) -> None:
    """Evict entries from a store; never one a running workflow holds."""
    from vinemake.core.prune import foreign, prune  # here: a run never loads it

    if older_than is None and max_size is None:
        raise click.UsageError("say what to remove: --older-than TIME, --max-size SIZE or both")
    root = os.path.abspath(cache_dir) if cache_dir else StateDir(os.getcwd()).cache
    if cache_dir and not os.path.isdir(root):
        raise click.BadParameter(f"{cache_dir}: no such directory", param_hint="--cache-dir")
    stranger = foreign(root) if os.path.isdir(root) else None
    if stranger is not None:  # pruning it would delete files that are not entries
        raise click.BadParameter(f"{cache_dir or root} is not a vinemake store (it holds "
                                 f"'{stranger}')", param_hint="--cache-dir")
    try:
        result = prune(root, older_than, None if max_size is None else max_size * 1_000_000)
    except OSError as e:  # a store this user cannot write, a full disk: one line, exit 1
        raise click.ClickException(describe_os_error(e)) from None
    click.echo(result.line(root), err=True)
