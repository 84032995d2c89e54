""""Did you mean" hints: the nearest known name to a misspelt one."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["closest", "did_you_mean"]

# Comparing against every name of a million-rule workflow would take seconds, so names whose
# length differs too much to pass difflib's cutoff anyway are skipped before comparing.
_CUTOFF = 0.6


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate most similar to `word`, or None when none is close enough."""
    import difflib  # here: asked only once something is misspelt, never by a run

    n = len(word)
    # ratio = 2*matches/(n+m) <= 2*min(n,m)/(n+m): bound the length before the costly compare.
    near = [c for c in candidates if c != word and 2 * min(n, len(c)) >= _CUTOFF * (n + len(c))]
    found = difflib.get_close_matches(word, near, n=1, cutoff=_CUTOFF)
    return found[0] if found else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest candidate, or '' when there is none."""
    match = closest(word, candidates)
    return f" (did you mean '{match}'?)" if match is not None else ""
