"""The cyclic garbage collector paused while vinemake builds large structures without cycles."""

from __future__ import annotations

import contextlib
import gc

__all__ = ["collector_paused"]


@contextlib.contextmanager
def collector_paused():
    """No cyclic garbage collection inside; what was built is frozen on the way out.

    Reading a workflow, keying it and planning it allocate millions of objects and free
    almost none, so each generation-2 collection rescans everything built so far for
    nothing (at 1M rules over half of the graph's build and a fifth of the keys' time:
    docs/performance.md). Frozen, the result is never rescanned: the first allocation after
    re-enabling would otherwise run a collection over all of it, and the engine's would
    rescan a million RuleSpecs each time it looks for cycles. Nothing built here makes
    reference cycles.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
