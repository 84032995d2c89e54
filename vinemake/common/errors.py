"""Every error vinemake reports, and the one way they are printed.

    VinemakeError                 anything vinemake reports instead of a traceback
     ├── InputError               the user's input is wrong: exit 2, located when possible
     │    └── VinefileError       a located error in a Vinefile (path:line:col + caret)
     │         └── VinefileErrors several at once (every syntax error, every missing source)
     └── InfrastructureError      a worker, transfer or batch system failed: exit 1
"""

from __future__ import annotations

from vinemake.common.spec import Location

__all__ = ["describe_os_error", "VinemakeError", "InputError", "VinefileError", "VinefileErrors",
           "InfrastructureError", "format_located", "EXIT_INPUT", "EXIT_FAILED"]

EXIT_FAILED = 1
EXIT_INPUT = 2


class VinemakeError(Exception):
    """Base of every error vinemake reports to a user."""

    exit_code = EXIT_FAILED


class InputError(VinemakeError):
    """The user's input (Vinefile, options, files on disk) is wrong."""

    exit_code = EXIT_INPUT


class VinefileError(InputError):
    """A located error in a Vinefile: prints `path:line:col: message`, the line and a caret."""

    def __init__(self, location: Location, message: str, line_text: str | None = None):
        self.location = location
        self.message = message
        self.line_text = line_text
        super().__init__(format_located(location, message, line_text))


class VinefileErrors(VinefileError):
    """Several located errors found together, printed one after another; its own location
    and message are the first one's."""

    def __init__(self, errors: list[VinefileError], untold: str = ""):
        first = errors[0]
        super().__init__(first.location, first.message, first.line_text)
        self.errors = tuple(errors)
        self.args = ("\n".join([*(str(e) for e in errors), *([untold] if untold else [])]),)


class InfrastructureError(VinemakeError):
    """Something vinemake depends on failed: a worker, a transfer, a batch system."""


# The most characters of a line an error quotes: a generated workflow's line may be megabytes
# long, and twenty errors on it must not print it twenty times.
MAX_QUOTED = 200
_CUT = "..."


def format_located(location: Location, message: str, line_text: str | None) -> str:
    """`path:line:col: message`, then the line and a caret under the column (ninja-style);
    of a long line, only the MAX_QUOTED characters around the column, cuts marked '...'."""
    head = f"{location}: {message}"
    if line_text is None:
        return head
    line_text = line_text.rstrip("\n")
    col = max(location.col - 1, 0)
    if len(line_text) > MAX_QUOTED:
        start = max(0, min(col - MAX_QUOTED // 2, len(line_text) - MAX_QUOTED))
        end = start + MAX_QUOTED
        shown = line_text[start:end]
        lead = _CUT if start else ""
        line_text = lead + shown + (_CUT if end < len(line_text) else "")
        col = col - start + len(lead)
    # Tabs are kept so the caret lines up under the same characters in a terminal.
    pad = "".join("\t" if ch == "\t" else " " for ch in line_text[:col])
    return f"{head}\n{line_text}\n{pad}^"


def describe_os_error(e: OSError) -> str:
    """One line for an OSError that reached the command line (a full disk, a directory
    taken away): what failed, on which file, and what to do when the answer is plain."""
    import errno

    where = f"{e.filename}: " if e.filename else ""
    text = f"cannot go on: {where}{e.strerror or e}"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        text += " (free some space and run again)"
    return text
