"""`-f FILE`: Makeflow's summary of a run, written when it ends, in Makeflow's layout."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence

__all__ = ["summary_text", "write_summary", "human_size", "output_sizes"]


def human_size(n: int) -> str:
    """Bytes as Makeflow's summary prints them: 512 B, 1.5 KB, 2.0 MB."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def summary_text(argv: Sequence[str], outcome, total: int, vinefile: str,
                 finished_at: float, failed_commands: Mapping[str, str],
                 outputs: Sequence[tuple[str, int | None]]) -> str:
    """The summary of one run: its command line, how it ended, its task counts, the commands
    that failed and the workflow's outputs with their sizes (a missing one shows `-`)."""
    if outcome.stopped:
        ended = "Workflow aborted:"
    elif outcome.failed:
        ended = "Workflow failed:"
    else:
        ended = "Workflow completed:"
    seconds = int(outcome.wall_time_s)
    lines = [" ".join(argv) + " ",
             f"{ended}\t {time.strftime('%c', time.localtime(finished_at))}",
             f"Total runtime:\t\t {seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}",
             f"Workflow file:\t\t {vinefile}",
             f"Number of tasks:\t {total}"]
    completed = len(outcome.ran) + len(outcome.restored) + outcome.skipped
    lines.append(f"Completed tasks:\t {completed}/{total}")
    if outcome.not_run:
        lines.append(f"Tasks not run:\t\t {outcome.not_run}/{total}")
    if outcome.failed:
        lines.append(f"Failed tasks:\t\t {len(outcome.failed)}/{total}")
        lines += [f"\t{failed_commands.get(name, name)}" for name in outcome.failed]
    if outputs:
        lines.append("Output files:")
        lines += [f"\t{path}\t{'-' if size is None else human_size(size)}"
                  for path, size in outputs]
    return "\n".join(lines) + "\n"


def write_summary(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def output_sizes(root: str, outputs: Sequence[str]) -> list[tuple[str, int | None]]:
    """Each workflow output with its size now (None when it is not there)."""
    sizes = []
    for p in outputs:
        try:
            sizes.append((p, os.stat(os.path.join(root, p)).st_size))
        except OSError:
            sizes.append((p, None))
    return sizes
