"""What this machine offers a worker: its cores, memory, free disk (each overridable)."""

from __future__ import annotations

import os

import psutil

from vinemake.common.spec import Resources

__all__ = ["machine_resources"]


def machine_resources(workdir: str, cores: float | None = None, memory_mb: int | None = None,
                      disk_mb: int | None = None, gpus: int = 0) -> Resources:
    """What this machine offers, each overridable. The worker offers exactly this, and the
    local backend promises it before its worker joins (so a rule too big is refused first)."""
    os.makedirs(workdir, exist_ok=True)
    return Resources(
        cores=cores if cores is not None else float(psutil.cpu_count() or 1),
        memory_mb=memory_mb if memory_mb is not None
        else psutil.virtual_memory().total // 1_000_000,
        disk_mb=disk_mb if disk_mb is not None else psutil.disk_usage(workdir).free // 1_000_000,
        gpus=gpus)
