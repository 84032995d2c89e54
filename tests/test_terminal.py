"""What a person sees in a terminal: real runs under tmux at 40 and 120 columns, and the plain
log a pipe gets. The screen is read back with `tmux capture-pane`, as a person would read it."""

import os
import shutil
import subprocess
import sys
import time

import pytest
from conftest import require

SLEEPERS = "".join(f"slow-output-number-{i}.txt:\n\tsleep 1; touch slow-output-number-{i}.txt\n\n"
                   for i in range(6))


class Tmux:
    """One tmux server of our own (its own socket), one window of `cols` columns."""

    def __init__(self, tmp_path, cols: int, rows: int = 40):
        require(shutil.which("tmux"), "tmux is not installed (tests/run.sh installs it)")
        self.socket = str(tmp_path / "tmux.sock")
        self.cols, self.rows = cols, rows

    def tmux(self, *args) -> str:
        return subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True,
                              text=True, check=True, timeout=30).stdout

    def start(self, cwd, *args) -> None:
        env = f"PYTHONPATH={os.environ.get('PYTHONPATH', '')}"
        cmd = (f"cd {cwd} && env {env} {sys.executable} -m vinemake {' '.join(args)}; "
               f"echo EXIT=$?; sleep 60")
        self.tmux("new-session", "-d", "-x", str(self.cols), "-y", str(self.rows), cmd)

    def screen(self) -> list[str]:
        # -J joins a line the terminal wrapped: a status line too wide shows as too long
        return [r.rstrip() for r in self.tmux("capture-pane", "-p", "-J").rstrip("\n")
                .split("\n")]

    def wait_for(self, found, what: str, timeout: float = 60) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.screen()
            if found(rows):
                return rows
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} on the screen:\n" + "\n".join(rows))
            time.sleep(0.05)

    def finished(self) -> list[str]:
        rows = self.wait_for(lambda rows: any(r.startswith("EXIT=") for r in rows), "exit")
        return [r for r in rows[:next(i for i, r in enumerate(rows) if r.startswith("EXIT="))]]

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True)


@pytest.fixture
def terminal(tmp_path):
    made = []

    def make(cols):
        t = Tmux(tmp_path, cols)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


def status_rows(rows: list[str]) -> list[str]:
    return [r for r in rows if r.startswith("[") and ("ETA" in r or "eta" in r)]


@pytest.mark.parametrize("cols", [40, 120])
def test_the_live_line_fits_the_terminal_and_leaves_nothing_behind(tmp_path, terminal, cols):
    (tmp_path / "Vinefile").write_text(SLEEPERS)
    t = terminal(cols)
    t.start(tmp_path, "-j", "2")
    # while commands run: one status line, whole on one row, naming the truly running
    during = t.wait_for(lambda rows: any("run" in r for r in status_rows(rows)), "status line")
    (line,) = status_rows(during)
    assert len(line) <= cols - 1
    running = line.split("running " if cols == 120 else "run ")[1].split(",")[0].split()[0]
    assert running in ("0", "1", "2")  # two slots, never the six handed over
    final = t.finished()
    assert status_rows(final) == [] and not any("waiting" in r for r in final)
    assert final[-1].startswith("vinemake: ran 6, restored 0, up to date 0 in ")


def test_a_failure_on_a_terminal_shows_its_command_and_the_end_of_its_stderr(tmp_path,
                                                                             terminal):
    (tmp_path / "Vinefile").write_text(
        "bad.txt:\n\tseq 1 30 | sed 's/^/complaint /' >&2; exit 3\n")
    t = terminal(120)
    t.start(tmp_path)
    rows = t.finished()
    at = rows.index("FAILED  bad.txt: exit code 3")
    assert rows[at + 1:at + 4] == [
        "  command: seq 1 30 | sed 's/^/complaint /' >&2; exit 3",
        "  ran on:  worker local (127.0.0.1)", "  stderr (last lines):"]
    assert rows[at + 4:at + 24] == [f"    complaint {i}" for i in range(11, 31)]
    assert rows[at + 24] == "  see .vinemake/failed/bad.txt/INFO"
    assert rows[-1].startswith("vinemake: ran 0, restored 0, up to date 0, failed 1 (bad.txt)")


# ------------------------------------------------------------------ the plain log (a pipe)


def vinemake(root, *args):
    return subprocess.run([sys.executable, "-m", "vinemake", *args], cwd=root,
                          capture_output=True, text=True, timeout=120)


def test_under_j1_each_start_is_logged_when_its_command_begins_with_a_done_line(tmp_path):
    (tmp_path / "Vinefile").write_text("".join(f"s{i}:\n\tsleep 1; touch s{i}\n\n"
                                               for i in range(5)))
    proc = vinemake(tmp_path, "-j", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    starts = [line[:8] for line in lines if line[9:].startswith("start   s")]
    assert len(starts) == 5 and len(set(starts)) == 5  # one a second, not five at once
    done = [line[9:] for line in lines if line[9:].startswith("done ")]
    assert sorted(d.split(" (")[0] for d in done) == [f"done    s{i}" for i in range(5)]
    assert all(d.endswith(" s)") and float(d.split("(")[1].split()[0]) >= 1.0 for d in done)


LIBRARY = """\
@library words
: words.py
\tpython3 -m vinemake.library words.py

@call words
out.txt: in.txt
\tcount_wrds in.txt out.txt
"""


def test_a_failed_call_says_the_library_has_no_such_function(tmp_path):
    (tmp_path / "words.py").write_text("def count_words(src, dst):\n    pass\n")
    (tmp_path / "in.txt").write_text("a b\n")
    (tmp_path / "Vinefile").write_text(LIBRARY)
    proc = vinemake(tmp_path)
    lines = [line[9:] if line[:2].isdigit() else line for line in proc.stderr.splitlines()]
    at = lines.index("FAILED  out.txt: exit code 1: function count_wrds failed in library words")
    assert lines[at + 1:at + 6] == [
        "  command: count_wrds in.txt out.txt", "  ran on:  worker local (127.0.0.1)",
        "  stderr (last lines):",
        "    no function named 'count_wrds' in this library (it has: count_words)",
        "  see .vinemake/failed/out.txt/INFO"]


def test_a_missing_output_is_said_once_with_what_the_command_wrote_instead(tmp_path):
    (tmp_path / "Vinefile").write_text("out.txt:\n\techo hi > ou.txt\n")
    proc = vinemake(tmp_path)
    assert proc.returncode == 1
    assert "FAILED  out.txt: missing output: out.txt (wrote ou.txt instead?)" in proc.stderr
    assert proc.stderr.count("missing output") == 1


def test_a_rule_without_targets_is_named_by_file_and_line(tmp_path):
    (tmp_path / "Vinefile").write_text("x:\n\ttouch x\n\n:\n\texit 5\n")
    proc = vinemake(tmp_path, "-k")
    assert "FAILED  Vinefile:4: exit code 5" in proc.stderr
    assert "rule@" not in proc.stderr


def test_dry_run_ends_with_a_count_and_clean_cache_says_what_it_did(tmp_path):
    (tmp_path / "Vinefile").write_text("a:\n\ttouch a\n\nb: a\n\tcp a b\n")
    proc = vinemake(tmp_path, "-n")
    assert proc.stderr == "vinemake: would run 2, restore 0, up to date 0\n"
    assert vinemake(tmp_path).returncode == 0
    assert vinemake(tmp_path, "--clean", "cache").stderr == "removed 2 cache entries\n"
    assert vinemake(tmp_path, "--clean", "cache").stderr == (
        "vinemake: the cache holds nothing this workflow made\n")


def test_restored_files_count_the_same_in_the_first_line_and_the_summary(tmp_path):
    (tmp_path / "Vinefile").write_text("a:\n\ttouch a\n\nb: a\n\tcp a b\n\nc:\n\ttouch c\n")
    assert vinemake(tmp_path).returncode == 0
    os.unlink(tmp_path / "b")
    lines = vinemake(tmp_path).stderr.splitlines()
    assert lines[0][9:] == "0 rules to run, 1 to restore, 2 up to date"
    assert lines[-1].startswith("vinemake: ran 0, restored 1, up to date 2 in ")


def test_a_library_that_cannot_start_shows_the_end_of_its_log(tmp_path):
    (tmp_path / "words.py").write_text("import nosuchmodule\n\n\ndef count_words(a, b):\n"
                                       "    pass\n")
    (tmp_path / "in.txt").write_text("a b\n")
    (tmp_path / "Vinefile").write_text(LIBRARY.replace("count_wrds", "count_words"))
    proc = vinemake(tmp_path)
    lines = proc.stderr.splitlines()
    failed = next(i for i, line in enumerate(lines) if "FAILED  out.txt:" in line)
    block = lines[failed:]
    assert "  stderr (last lines):" in block
    assert "    ModuleNotFoundError: No module named 'nosuchmodule'" in block
    assert block[-2] == "  see .vinemake/failed/out.txt/INFO"
