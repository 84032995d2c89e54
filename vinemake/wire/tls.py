"""ssl's socket and error classes for checks and `except` clauses, without loading ssl.

Loading ssl is a measurable part of a short run's start, and a run without --ssl never uses
it. A TLS socket, and so any of ssl's errors, exists only after a TLS context was made
(`protocol.server_context`/`client_context`, which load ssl): until ssl is loaded, each name
here is a class that nothing is an instance of and nothing raises, so `isinstance` is False
and an `except` clause naming it catches nothing, as the real one would there. ssl's own
classes are kept once it is loaded. Another thread may be loading ssl meanwhile (urllib
does, for a URL): its half-made module in sys.modules counts as not loaded.
"""

from __future__ import annotations

import sys

# (each given by __getattr__ below)
__all__ = ["SSLSocket", "SSLError", "SSLWantReadError", "SSLWantWriteError",  # noqa: F822
           "SSLEOFError", "SSLZeroReturnError"]  # noqa: F822

_NAMES = frozenset(__all__)


class _NotLoaded(Exception):
    """Stands for one of ssl's classes while ssl is not loaded: never instantiated."""


def __getattr__(name: str):
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    ssl = sys.modules.get("ssl")
    try:
        value = getattr(ssl, name)
    except AttributeError:  # not loaded, or still being loaded by another thread: no TLS
        return _NotLoaded  # socket can exist before its import ends
    globals()[name] = value
    return value
