"""Give the memory freed after planning back to the system (glibc's malloc_trim)."""

from __future__ import annotations

__all__ = ["give_back_freed"]


def give_back_freed() -> None:
    """Return the free pages of the C heap to the system; nothing where malloc is not glibc's.

    Reading, keying and planning a large workflow free much of what they allocate (the
    file's text, the parser's tokens, the rule cache's encoding) among blocks that stay, so
    the heap cannot shrink from its top and the process keeps those pages resident for the
    whole run (about a kilobyte a rule: docs/performance.md). malloc_trim releases free pages
    anywhere in the heap.
    """
    import ctypes  # here: a short run, which has little to give back, never loads it

    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library this process already runs on
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return
    trim(0)
