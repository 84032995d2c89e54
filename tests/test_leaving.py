"""The command line's process leaves without the interpreter's clean-up only when nothing can
be lost by it (face/leaving.py): each test runs a real process and reads what it left."""

from __future__ import annotations

import json
import subprocess
import sys

# A process that would report its own teardown: an object whose __del__ runs only in the
# interpreter's clean-up, which leave() skips when it can.
PRELUDE = """\
import atexit, os, sys, threading
from vinemake.face.leaving import leave
class TornDown:
    def __del__(self, write=os.write):
        write(2, b"torn down\\n")
kept = TornDown()
"""


def python(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PRELUDE + code], capture_output=True,
                          text=True, timeout=60, **kw)


def test_leave_runs_the_exit_handlers_flushes_and_skips_the_teardown():
    done = python('atexit.register(os.write, 2, b"exit handler\\n")\n'
                  'print("buffered, no newline", end="")\n'
                  'leave(3)\n')
    assert (done.returncode, done.stdout, done.stderr) == (3, "buffered, no newline",
                                                           "exit handler\n")


def test_the_ordinary_exit_tears_down_what_leave_skips():
    done = python("sys.exit(3)\n")
    assert (done.returncode, done.stderr) == (3, "torn down\n")


def test_leave_waits_for_a_thread_still_at_work():
    # The thread writes its line once its stdin closes, which the test does only after the
    # process said it is leaving: an exit that did not wait for it would lose the line.
    code = ('def work():\n'
            '    sys.stdin.read()\n'
            '    print("the thread finished", flush=True)\n'
            'threading.Thread(target=work).start()\n'
            'print("leaving", flush=True)\n'
            'leave(4)\n')
    proc = subprocess.Popen([sys.executable, "-c", PRELUDE + code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "leaving\n"
    out, err = proc.communicate("", timeout=60)
    assert (proc.returncode, out) == (4, "the thread finished\n")


def test_leave_with_a_stream_that_cannot_flush_exits_the_ordinary_way():
    done = python('sys.stdout.close()\n'
                  'leave(5)\n')
    assert (done.returncode, done.stderr) == (5, "torn down\n")


VINEFILE = "a:\n\techo a > a\nb: a\n\tcat a > b\nc: a b\n\tcat a b > c\n"


def vinemake(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vinemake", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_a_run_that_leaves_at_once_has_written_all_it_writes(tmp_path):
    (tmp_path / "Vinefile").write_text(VINEFILE)
    done = vinemake("--summary-log", "summary", "--trace", "trace.tsv", "-d", "all",
                    "-o", "debug.log", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stderr.splitlines()[-1].startswith("vinemake: ran 3, restored 0, up to date 0")
    assert (tmp_path / "c").read_text() == "a\na\n"
    trace = (tmp_path / "trace.tsv").read_text().splitlines()
    assert [row.split("\t")[1] for row in trace[1:]] == ["a", "b", "c"]
    summary = (tmp_path / "summary").read_text()
    assert "Completed tasks:\t 3/3\n" in summary and summary.endswith("\tc\t4 B\n")
    assert "worker local joined" in (tmp_path / "debug.log").read_text()
    (run,) = (tmp_path / ".vinemake" / "runs").iterdir()
    last = json.loads((run / "events.jsonl").read_text().splitlines()[-1])
    assert (last["ev"], last["counts"]["ran"]) == ("run_end", 3)
    journal = [json.loads(line) for line in (tmp_path / ".vinemake" / "journal").open()]
    assert [e["name"] for e in journal if e["ev"] == "done"] == ["a", "b", "c"]
    # The next runs find everything the first recorded: its up-to-date snapshot, then
    # without it, its journal.
    for _ in range(2):
        again = vinemake(cwd=tmp_path)
        assert (again.returncode, again.stderr) == (
            0, "vinemake: nothing to do, 3 rules up to date\n")
        (tmp_path / ".vinemake" / "uptodate").unlink()


def test_a_failed_run_and_a_long_listing_leave_their_whole_text(tmp_path):
    (tmp_path / "Vinefile").write_text("bad:\n\texit 7\n")
    done = vinemake(cwd=tmp_path)
    assert done.returncode == 1
    assert "ran 0, restored 0, up to date 0, failed 1 (bad) in " in done.stderr.splitlines()[-1]
    # stdout to a pipe is written in blocks: the last one only as the process leaves.
    names = [f"out{i:04}" for i in range(2000)]
    (tmp_path / "Vinefile").write_text("".join(f"{n}:\n\ttouch {n}\n" for n in names))
    done = vinemake("-n", cwd=tmp_path)
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert len(lines) == 4 * len(names)
    assert lines[3::4] == [f"touch {n}" for n in names]
