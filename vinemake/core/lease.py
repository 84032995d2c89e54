"""A run's lease on a store: the entries it is restoring, which `cache prune` never removes.

Why: a store shared with `--cache-dir` is pruned by an explicit `vinemake cache prune`, maybe
by another user while runs of other workflows restore from it; an entry must not vanish under
a run that is copying it out. Each run that restores holds a lease: a file in the store's
`leases/` directory, flock'ed for as long as the run lives (the kernel drops the flock when
the run dies, kill -9 included), listing the keys it holds, one a line. A run appends a key
before it restores the entry; prune reads the leases and removes entries, each side under the
store's `.lock` (shared for a run's append, exclusive for prune), so an entry prune removes is
one no live lease named when it looked: a restore that starts later finds the entry gone and
the rule runs instead. A lease whose flock nobody holds is a dead run's: prune removes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import uuid
from collections.abc import Iterable, Iterator

__all__ = ["Lease", "store_lock", "held_keys", "make_shared_dir", "LEASES", "LOCK"]

LEASES = "leases"
LOCK = ".lock"


def make_shared_dir(root: str, path: str) -> None:
    """Make `path` inside the store at `root`, as writable as the store itself is.

    Users share a store through a directory they can all write (group-writable, say); the
    directories vinemake makes inside it must be just as writable, whatever this user's umask.
    """
    if os.path.isdir(path):
        return
    os.makedirs(path, exist_ok=True)
    mode = os.stat(root).st_mode & 0o7777
    if mode & 0o022:
        with contextlib.suppress(OSError):
            os.chmod(path, mode)


@contextlib.contextmanager
def store_lock(root: str, exclusive: bool) -> Iterator[None]:
    """The store-wide lock: shared while a run adds to its lease, exclusive while pruning."""
    path = os.path.join(root, LOCK)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except PermissionError:  # another user made it: reading is enough to flock it
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


class Lease:
    """This process's lease on the store at `root`, made when it first holds a key."""

    def __init__(self, root: str):
        self.root = root
        self.fd: int | None = None
        self.path = ""
        self.held: set[str] = set()

    def hold(self, keys: Iterable[str]) -> None:
        """Name `keys` in the lease before restoring them."""
        new = [k for k in keys if k not in self.held]
        if not new:
            return
        if self.fd is None:
            self._open()
        with store_lock(self.root, exclusive=False):
            os.write(self.fd, ("\n".join(new) + "\n").encode())  # type: ignore[arg-type]
        self.held.update(new)

    def _open(self) -> None:
        folder = os.path.join(self.root, LEASES)
        make_shared_dir(self.root, folder)
        # Locked under a name prune ignores, then renamed: prune never sees it unlocked.
        tmp = os.path.join(folder, f".new-{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self.path = os.path.join(folder, f"{socket.gethostname()}.{os.getpid()}."
                                         f"{uuid.uuid4().hex[:8]}")
        os.rename(tmp, self.path)
        self.fd = fd

    def release(self) -> None:
        """The run is over: its entries may go."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self.fd)
        self.fd = None
        self.held.clear()


def held_keys(root: str) -> set[str]:
    """The keys live leases hold; dead runs' leases are removed.

    Call it under the exclusive store_lock."""
    folder = os.path.join(root, LEASES)
    try:
        names = [n for n in os.listdir(folder) if not n.startswith(".")]
    except FileNotFoundError:
        return set()
    held: set[str] = set()
    for name in names:
        path = os.path.join(folder, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # released meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # a live run holds it
                with os.fdopen(os.dup(fd), "rb") as f:
                    held.update(line.decode(errors="replace").strip() for line in f)
                continue
            with contextlib.suppress(OSError):
                os.unlink(path)
        finally:
            os.close(fd)
    held.discard("")
    return held
