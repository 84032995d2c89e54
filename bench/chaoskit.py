"""The chaos benchmark's harness: trials in directories of their own, real processes, tallies.

A trial runs in a fresh directory holding the workflow (`wf/`), a sentinel tree beside it
(`outside/`), the logs of the processes it started (`logs/`) and the harness's own files
(`scratch/`: workers' directories, passwords, other workflows). Everything but wf/, logs/ and
scratch/ is hashed before and after: any change (the sentinel tree, or a new file beside the
workflow) is "data outside the workflow touched". Every process a trial starts goes through
`Trial.run` or `Trial.spawn`, so its output is searched for a Python traceback and a process
still running at its deadline is killed (with its whole session) and counted as a hang. The
scenario itself judges the rest (wrong output, half-written target) and returns those kinds.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

KINDS = ("wrong", "half", "traceback", "hang", "outside")
TRACEBACK = "Traceback (most recent call last)"
VINEMAKE = [sys.executable, "-m", "vinemake"]
WORKER = [sys.executable, "-m", "vinemake.worker.cli"]


@dataclass(frozen=True)
class Done:
    """A finished (or killed at its deadline) process: exit code, its output, whether it hung."""

    code: int | None
    out: str
    err: str
    hung: bool = False


@dataclass
class Tally:
    """One family's figures: trials, correct ones, failures by kind, and a note per failure."""

    family: str
    title: str
    trials: int = 0
    correct: int = 0
    failures: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def add(self, kinds: Iterable[str], note: str, verbose: bool = False) -> None:
        kinds = set(kinds)
        self.trials += 1
        if not kinds:
            self.correct += 1
            if verbose:
                self.notes.append(f"ok: {note}")
            return
        self.failures.update(kinds)
        self.notes.append(f"{','.join(sorted(kinds))}: {note}")

    @property
    def failed(self) -> int:
        """Trials that did not come out right."""
        return self.trials - self.correct

    def line(self) -> str:
        kinds = "  ".join(f"{k} {self.failures[k]}" for k in KINDS)
        extra = f"  harness {self.failures['harness']}" if self.failures["harness"] else ""
        return (f"{self.family} {self.title:<34} trials {self.trials:4d}  "
                f"correct {self.correct:4d}  {kinds}{extra}")


def tree_digest(root: Path, skip: Iterable[str] = ()) -> str:
    """A hash of every name, type, mode, size, mtime, content and link target under root."""
    h = hashlib.sha256()
    skip = set(skip)
    for here, dirs, files in os.walk(root):
        rel_here = os.path.relpath(here, root)
        dirs[:] = sorted(d for d in dirs if os.path.join(rel_here, d).lstrip("./") not in skip)
        for name in sorted(dirs + files):
            path = os.path.join(here, name)
            rel = os.path.relpath(path, root)
            if rel in skip:
                continue
            st = os.lstat(path)
            h.update(f"{rel}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
            if os.path.islink(path):
                h.update(os.readlink(path).encode())
            elif os.path.isfile(path):
                h.update(Path(path).read_bytes())
    return h.hexdigest()


def make_sentinel(outside: Path) -> None:
    """A small tree of files, a directory and links that no trial may change."""
    (outside / "sub").mkdir(parents=True)
    (outside / "data.txt").write_text("sentinel data\n")
    (outside / "sub" / "deep.txt").write_text("deep sentinel\n")
    os.symlink("data.txt", outside / "link-to-data")


class Trial:
    """One trial's directory and processes; `kinds()` adds traceback, hang and outside."""

    def __init__(self, base: Path, timeout: float):
        self.base, self.timeout = base, timeout
        self.wf, self.outside, self.logs = base / "wf", base / "outside", base / "logs"
        self.scratch = base / "scratch"
        for d in (self.wf, self.logs, self.scratch):
            d.mkdir(parents=True)
        make_sentinel(self.outside)
        self._before = self._digest()
        self._seen: list[Done] = []
        self._procs: list[tuple[subprocess.Popen, Path, Path]] = []
        self.tracebacks: list[str] = []
        self.hung = False

    def _digest(self) -> str:
        return tree_digest(self.base, skip=("wf", "logs", "scratch"))

    def run(self, args: list[str], cwd: Path | None = None, timeout: float | None = None,
            env: dict | None = None) -> Done:
        """Run a command to its end (or its deadline); its output is kept and checked."""
        return self.wait(self.spawn(args, cwd, env), timeout)

    def vinemake(self, *args: str, cwd: Path | None = None, timeout: float | None = None) -> Done:
        return self.run([*VINEMAKE, *args], cwd or self.wf, timeout)

    def spawn(self, args: list[str], cwd: Path | None = None,
              env: dict | None = None) -> subprocess.Popen:
        """Start a command in a session of its own, its output to files under logs/."""
        n = len(self._procs)
        out, err = self.logs / f"{n}.out", self.logs / f"{n}.err"
        with open(out, "w") as o, open(err, "w") as e:
            proc = subprocess.Popen(args, cwd=cwd or self.wf, stdout=o, stderr=e,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    env=env)
        self._procs.append((proc, out, err))
        return proc

    def wait(self, proc: subprocess.Popen, timeout: float | None = None) -> Done:
        """Wait for a spawned process; at the deadline kill its session and count a hang."""
        hung = False
        try:
            proc.wait(timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired:
            hung = True
            kill_session(proc)
        return self.collect(proc, hung)

    def collect(self, proc: subprocess.Popen, hung: bool = False) -> Done:
        _, out, err = next(t for t in self._procs if t[0] is proc)
        done = Done(proc.returncode, out.read_text(errors="replace"),
                    err.read_text(errors="replace"), hung)
        self._seen.append(done)
        self.hung |= hung
        return done

    def end_processes(self) -> None:
        """Kill every process of the trial's sessions still running (workers waiting for more
        work, and anything that outlived a killed leader)."""
        for proc, _, _ in self._procs:
            kill_session(proc)

    def kinds(self) -> set[str]:
        """The harness's own findings once the scenario is done (every process ended first)."""
        self.end_processes()
        found = set()
        logs = sorted(self.logs.iterdir()) if self.logs.is_dir() else []
        texts = [p.read_text(errors="replace") for p in logs]
        for text in texts:
            if TRACEBACK in text:
                found.add("traceback")
                self.tracebacks.append(text[text.index(TRACEBACK):][-1500:])
        if self.hung:
            found.add("hang")
        if self._digest() != self._before:
            found.add("outside")
        return found


def kill_session(proc: subprocess.Popen) -> None:
    """SIGCONT then SIGKILL to the process's whole session (a stopped one must die too)."""
    for sig in (signal.SIGCONT, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def session_gone(sid: int) -> bool:
    """No live process is left in session `sid` (a zombie awaiting its reaper is dead)."""
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getsid(proc.pid) == sid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return False
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass
    return True


def wait_until(condition: Callable[[], object], limit_s: float, step: float = 0.02) -> bool:
    """Poll until condition() holds or limit_s passes; whether it held."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def read(path: Path) -> bytes | None:
    """A file's bytes, or None when there is no file (a directory reads as its listing)."""
    try:
        if path.is_dir() and not path.is_symlink():
            return "\n".join(sorted(str(p.relative_to(path)) + "=" + (
                p.read_text(errors="replace") if p.is_file() else "/")
                for p in path.rglob("*"))).encode()
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None


def snapshot(root: Path, names: Iterable[str]) -> dict[str, bytes | None]:
    return {n: read(root / n) for n in names}


Scenario = Callable[[random.Random, Trial], tuple[set[str], str]]


def run_family(family: str, title: str, scenario: Scenario, trials: int, seed: int,
               timeout: float, time_limit: float | None = None,
               keep: bool = False, verbose: bool = False) -> Tally:
    """Run `trials` trials of a scenario (fewer if time_limit passes first), each in a fresh
    directory removed afterwards (kept for a post-mortem when it failed and `keep`); the
    scenario returns (its kinds, a note for a failure)."""
    tally = Tally(family, title)
    rng = random.Random(seed)
    start = time.monotonic()
    for i in range(trials):
        if time_limit is not None and time.monotonic() - start > time_limit:
            break
        base = Path(tempfile.mkdtemp(prefix=f"chaos-{family}-{i}-"))
        trial = Trial(base, timeout)
        try:
            kinds, note = scenario(random.Random(rng.getrandbits(64)), trial)
        except Exception as e:  # the harness's own failure: counted apart, never hidden
            kinds, note = {"harness"}, f"{type(e).__name__}: {e}"
        finally:
            found = trial.kinds()
        kinds = set(kinds) | found
        if trial.tracebacks:
            note += " | " + trial.tracebacks[0].replace("\n", " / ")[-400:]
        tally.add(kinds, f"trial {i}: {note}" + (f" (kept in {base})" if kinds and keep else ""),
                  verbose)
        if not (kinds and keep):
            shutil.rmtree(base, ignore_errors=True)
    return tally
