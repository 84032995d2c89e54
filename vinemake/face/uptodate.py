"""The no-op rerun's fast path: has nothing changed since the last clean run? (Before parsing.)

Apart from the rest of face/run.py, so that deciding it loads little more than the stat
snapshot's reader: a rerun with nothing to do prints its line and exits without loading the
planning and running code, and a run that has something to do starts its standby worker
(backends/local.py) before loading it.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from vinemake.core.filestate import snapshot_digest, snapshot_matches
from vinemake.core.reporter import nothing_to_do_line
from vinemake.core.statedir import StateDir

__all__ = ["nothing_to_do", "nothing_built", "digest_of", "snapshot_file"]


def snapshot_file(root: str) -> str:
    return StateDir(root).uptodate


def digest_of(options) -> str | None:
    """The digest of what shapes the run (the Vinefile's bytes, the environment, the options
    that change the plan); None when the Vinefile cannot be read or a JX context says so."""
    try:
        with open(options.vinefile, "rb") as f:
            text = f.read()
    except OSError:
        return None
    shaping = repr((options.vinefile, options.root, options.targets, options.gc,
                    options.cache_dir, options.keep_intermediates_remote, options.environment))
    if options.jx is not None:
        context = options.jx.fingerprint(text)
        if context is None:
            return None
        shaping += context
    return snapshot_digest(text, os.environ, shaping)


def nothing_to_do(options, out: TextIO | None = None) -> bool:
    """Before parsing: has nothing changed since the last run that finished cleanly?

    If so, print what a full no-op run prints and return True: the CLI exits 0 without
    parsing. Never with --explain (its point is the reasons), --clean, or -f, --trace and
    --report (each is written from the counts or the record of a real run).
    """
    if options.explain or options.clean or options.summary_file or options.trace \
            or options.report:
        return False
    snapshot = snapshot_file(options.root)
    if not os.path.exists(snapshot):
        return False  # (a first build: the Vinefile, megabytes at a million rules, unhashed)
    digest = digest_of(options)
    rules = snapshot_matches(snapshot, digest) if digest else None
    if rules is None:
        return False
    (out or sys.stderr).write(nothing_to_do_line(rules) + "\n")
    return True


def nothing_built(options) -> bool:
    """A first build, known without parsing: nothing was built here and no shared store can
    restore anything, so every rule asked for will run."""
    return not options.cache_dir and not os.path.exists(StateDir(options.root).journal)
