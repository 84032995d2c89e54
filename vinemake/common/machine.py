"""What this machine offers a worker: its cores, memory, free disk (each overridable)."""

from __future__ import annotations

import os
import shutil

from vinemake.common.spec import Resources

__all__ = ["machine_resources"]


def machine_resources(workdir: str, cores: float | None = None, memory_mb: int | None = None,
                      disk_mb: int | None = None, gpus: int = 0) -> Resources:
    """What this machine offers, each overridable. The worker offers exactly this, and the
    local backend promises it before its worker joins (so a rule too big is refused first)."""
    os.makedirs(workdir, exist_ok=True)
    # The standard library's answers, which are psutil's on Linux: vinemake itself then never
    # loads psutil (its workers do, to measure commands).
    return Resources(
        cores=cores if cores is not None else float(os.cpu_count() or 1),
        memory_mb=memory_mb if memory_mb is not None else _memory_total() // 1_000_000,
        disk_mb=disk_mb if disk_mb is not None else shutil.disk_usage(workdir).free // 1_000_000,
        gpus=gpus)


def _memory_total() -> int:
    """Bytes of physical memory (what /proc/meminfo calls MemTotal)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # a system without these names
        import psutil

        return psutil.virtual_memory().total
