"""A process named so that a reused pid does not pass for it: its pid and its start tick."""

import os


def start_tick(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, as text), None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rpartition(b")")[2].split()[19].decode()  # field 22; the name may hold ") "


def identity(pid: int | None = None) -> str:
    """`<pid>-<start tick>` of `pid` (this process by default): names one process for good."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}-{start_tick(pid)}"


def still_running(ident: str) -> bool:
    """Is the process named `ident` (an identity(), or a bare pid written before) still here?

    A bare pid cannot be told from a later process given the same pid, so it counts as
    running while any process has it: leaving something of a dead process is safe, taking
    something of a live one is not."""
    pid, _, tick = ident.partition("-")
    if not pid.isdigit():
        return False
    now = start_tick(int(pid))
    return now is not None and (not tick or now == tick)
