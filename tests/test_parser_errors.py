"""Every Vinefile error a user can make: the exact `path:line:col: message`, line and caret."""

from __future__ import annotations

import pytest

from vinemake.common.errors import EXIT_INPUT, VinefileError, VinefileErrors
from vinemake.common.spec import Location
from vinemake.language.parser import MAX_SYNTAX_ERRORS, parse_text

T = "\t"

CASES = [
    # (what, Vinefile text, the full error text)
    ("unbalanced quote in a command", "out: in\n\techo \"abc\n",
     'Vinefile:2:7: unbalanced quote: this " is never closed\n\techo "abc\n\t     ^'),
    ("unbalanced single quote", "out: in\n\techo 'it\n",
     "Vinefile:2:7: unbalanced quote: this ' is never closed\n\techo 'it\n\t     ^"),
    ("unbalanced quote in a file list", "out \"x: in\n\techo\n",
     'Vinefile:1:5: unbalanced quote: this " is never closed\nout "x: in\n    ^'),
    ("unbalanced quote in a value", "A = \"x\n",
     'Vinefile:1:5: unbalanced quote: this " is never closed\nA = "x\n    ^'),
    ("header without a colon", "out: in\n\tx\nfoo bar\n",
     "Vinefile:3:8: expected ':' after the targets of a rule (or '=' for an assignment)\n"
     "foo bar\n       ^"),
    ("unknown directive", ".FOO 1\n",
     "Vinefile:1:1: unknown directive '.FOO' (expected .MAKEFLOW or .SIZE)\n.FOO 1\n^"),
    ("unknown .MAKEFLOW word", ".MAKEFLOW FOO 1\n",
     "Vinefile:1:11: unknown .MAKEFLOW directive 'FOO' (expected one of CATEGORY, CORES, "
     "MEMORY, DISK, GPUS, WALL_TIME, MPI_PROCESSES, MODE)\n.MAKEFLOW FOO 1\n          ^"),
    ("non-numeric directive value", ".MAKEFLOW CORES x\n",
     "Vinefile:1:17: bad CORES value 'x': expected a number of cores\n"
     ".MAKEFLOW CORES x\n                ^"),
    ("bad allocation mode", ".MAKEFLOW MODE FAST\n",
     "Vinefile:1:16: bad .MAKEFLOW MODE 'FAST': expected one of MAX_THROUGHPUT, MIN_WASTE, "
     "FIXED\n.MAKEFLOW MODE FAST\n               ^"),
    ("directive without a value", ".MAKEFLOW MEMORY\n",
     "Vinefile:1:17: .MAKEFLOW MEMORY needs a value\n.MAKEFLOW MEMORY\n                ^"),
    ("bad .SIZE", ".SIZE f 10XB\n",
     "Vinefile:1:9: bad size '10XB': expected a size like 512MB or 2GB (a bare number is MB)\n"
     ".SIZE f 10XB\n        ^"),
    ("bad resource variable", "MEMORY=lots\n",
     "Vinefile:1:8: bad MEMORY value 'lots': expected a size like 512MB or 2GB (a bare number "
     "is MB)\nMEMORY=lots\n       ^"),
    ("undefined variable in a file list", "out: $(NOPE)\n\techo\n",
     "Vinefile:1:6: undefined variable 'NOPE'\nout: $(NOPE)\n     ^"),
    ("undefined variable in a command", "out:\n\techo ${A} $B\n",
     "Vinefile:2:7: undefined variable 'A'\n\techo ${A} $B\n\t     ^"),
    ("undefined variable on a continued line", "out:\n\techo a \\\n\t  $(B)\n",
     "Vinefile:3:4: undefined variable 'B'\n\t  $(B)\n\t  ^"),
    ("undefined variable in a value", "A=1\nB = $(A) $(C)\n",
     "Vinefile:2:10: undefined variable 'C'\nB = $(A) $(C)\n         ^"),
    ("double dollar", "out:\n\techo $$HOME\n",
     "Vinefile:2:7: '$$' is not supported: write '\\$' to pass a '$' to the shell\n"
     "\techo $$HOME\n\t     ^"),
    ("make automatic variable", "out: in\n\tcp $< $@\n",
     "Vinefile:2:5: '$<' (a make automatic variable) is not supported: name the files "
     "explicitly\n\tcp $< $@\n\t   ^"),
    ("unclosed reference", "out:\n\techo $(A\n",
     "Vinefile:2:7: bad variable reference: expected a name and ')' after '$('\n"
     "\techo $(A\n\t     ^"),
    ("assignment without a name", "=x\n",
     "Vinefile:1:1: assignment without a variable name (write NAME=value)\n=x\n^"),
    ("minus-equals", "A -= 1\n",
     "Vinefile:1:3: unsupported assignment operator '-=' (use '=' or '+=')\nA -= 1\n  ^"),
    ("minus-equals in a rule", "out:\nA-=1\n\tx\n",
     "Vinefile:2:2: unsupported assignment operator '-=' (use '=' or '+=')\nA-=1\n ^"),
    ("second command line", "out: in\n\tcmd1\n\tcmd2\n",
     "Vinefile:3:1: a rule has exactly one command line: join lines with a trailing '\\' or "
     "start a new rule\n\tcmd2\n^"),
    ("command line outside a rule", "A=1\n\tcmd\n",
     "Vinefile:2:1: a command line (indented with a tab or space) must follow a rule header\n"
     "\tcmd\n^"),
    ("rule without a command", "out: in\nX=1\nother: x\n\tcmd\n",
     "Vinefile:3:1: expected a command line (indented with a tab or space) for the rule "
     "above\nother: x\n^"),
    ("rule followed only by an indented comment", "out: in\n  # not a command",
     "Vinefile:1:8: expected a command line (indented with a tab or space) for the rule "
     "above\nout: in\n       ^"),
    ("rule without a command at the end", "out: in\n\n",
     "Vinefile:1:8: expected a command line (indented with a tab or space) for the rule "
     "above\nout: in\n       ^"),
    ("unknown annotation", "@foo\nout:\n\tx\n",
     "Vinefile:1:1: unknown annotation '@foo' (expected one of @resources, @retries, @temp, "
     "@cache, @library, @call, @mini, @environment)\n@foo\n^"),
    ("unknown annotation key", "@resources cores=4 memry=2GB\nout:\n\tx\n",
     "Vinefile:1:20: unknown key 'memry' for @resources (expected cores, memory, disk, gpus, "
     "wall_time)\n@resources cores=4 memry=2GB\n                   ^"),
    ("bad size", "@resources memory=2XB\nout:\n\tx\n",
     "Vinefile:1:12: bad memory value '2XB': expected a size like 512MB or 2GB (a bare number "
     "is MB)\n@resources memory=2XB\n           ^"),
    ("bad duration", "@resources wall_time=3w\nout:\n\tx\n",
     "Vinefile:1:12: bad wall_time value '3w': expected a duration like 90s, 30m or 2h\n"
     "@resources wall_time=3w\n           ^"),
    ("bad retries", "@retries x\nout:\n\tx\n",
     "Vinefile:1:10: @retries needs one whole number, like @retries 3\n@retries x\n         ^"),
    ("retries beyond the bound", "@retries 99999999999999999999999\nout:\n\tx\n",
     "Vinefile:1:10: @retries 99999999999999999999... is more than 100, the most a rule may "
     "retry\n@retries 99999999999999999999999\n         ^"),
    ("retries just beyond the bound", "@retries 0101\nout:\n\tx\n",
     "Vinefile:1:10: @retries 0101 is more than 100, the most a rule may retry\n"
     "@retries 0101\n         ^"),
    ("a command longer than sh -c takes", "out:\n\techo " + "x" * 131_067 + "\n",
     "Vinefile:2:2: the command is 131072 bytes long; a command may be at most 131071 bytes "
     "(Linux's limit on the one argument of sh -c): put a long one in a script\n"
     "\techo " + "x" * 194 + "...\n\t^"),  # a long line is shown cut
    ("a command made long by a variable", "X = " + "é" * 70_000 + "\nout:\n\techo $(X)\n",
     "Vinefile:3:2: the command is 140005 bytes long; a command may be at most 131071 bytes "
     "(Linux's limit on the one argument of sh -c): put a long one in a script\n"
     "\techo $(X)\n\t^"),
    ("bad cache", "@cache never\nout:\n\tx\n",
     "Vinefile:1:8: @cache takes one word: @cache forever\n@cache never\n       ^"),
    ("bad library slots", "@library ml slots=0\n: m.py\n\tx\n",
     "Vinefile:1:13: bad slots value '0': expected a whole number of at least 1\n"
     "@library ml slots=0\n            ^"),
    ("call without a name", "@call\nout:\n\tx\n",
     "Vinefile:1:1: @call needs exactly one library NAME, like @call ml\n@call\n^"),
    ("annotation not followed by a rule", "@temp\nA=1\n",
     "Vinefile:2:1: an annotation must be directly followed by a rule header\nA=1\n^"),
    ("annotation at the end of the file", "@temp\n",
     "Vinefile:1:6: an annotation must be directly followed by a rule header\n@temp\n     ^"),
    ("library with targets", "@library ml\nout: in\n\tpython3 x\n",
     "Vinefile:2:1: a @library rule has no targets: it defines a library, it makes no files\n"
     "out: in\n^"),
    ("arrow without a sandbox name", "out: a -> \n\tx\n",
     "Vinefile:1:8: expected a file name after '->'\nout: a -> \n       ^"),
    ("arrow without a path", "out: ->b\n\tx\n",
     "Vinefile:1:6: expected a file name before '->'\nout: ->b\n     ^"),
    ("empty file name", "out: a ''\n\tx\n",
     "Vinefile:1:6: empty file name ('' or \"\")\nout: a ''\n     ^"),
    ("export without names", "export\n",
     "Vinefile:1:1: export needs at least one NAME or NAME=value\nexport\n^"),
    ("export of a non-name", "export 1A\n",
     "Vinefile:1:8: export: '1A' is not a variable name\nexport 1A\n       ^"),
    ("LOCAL without a command", "out:\n\tLOCAL\n",
     "Vinefile:2:2: LOCAL needs a command after it\n\tLOCAL\n\t^"),
    ("bad resource value in an export", "export MEMORY=lots\n",
     "Vinefile:1:15: bad MEMORY value 'lots': expected a size like 512MB or 2GB (a bare number "
     "is MB)\nexport MEMORY=lots\n              ^"),
    ("export of names and an assignment", "export A B=2\n",
     "Vinefile:1:10: export NAME=value exports one name: the rest of the line is its value\n"
     "export A B=2\n         ^"),
    ("export assignment to a non-name", "export 1A=2\n",
     "Vinefile:1:8: export: '1A' is not a variable name\nexport 1A=2\n       ^"),
    ("empty category in an export", "export CATEGORY=\n",
     "Vinefile:1:8: a category name is one word, got ''\nexport CATEGORY=\n       ^"),
    ("category name with a blank", "CATEGORY=a b\n",
     "Vinefile:1:10: a category name is one word, got 'a b'\nCATEGORY=a b\n         ^"),
    # An escaped quote, or one a variable brings, leaves a quote open only once expanded.
    ("category name that is an escaped quote", 'CATEGORY=\\"\n',
     'Vinefile:1:10: unbalanced quote in \'"\'\nCATEGORY=\\"\n         ^'),
    ("category from a variable holding a quote", 'Q=\\"\nCATEGORY=$(Q)\n',
     'Vinefile:2:10: unbalanced quote in \'"\'\nCATEGORY=$(Q)\n         ^'),
    ("resource value with an open quote", 'CORES=\\"\n',
     'Vinefile:1:7: unbalanced quote in \'"\'\nCORES=\\"\n      ^'),
    ("environment with an open quote", 'ENVIRONMENT=\\"\n',
     'Vinefile:1:13: unbalanced quote in \'"\'\nENVIRONMENT=\\"\n            ^'),
    ("workflow inputs with an open quote", 'MAKEFLOW_INPUTS=a \\"\n',
     'Vinefile:1:17: unbalanced quote in \'a "\'\nMAKEFLOW_INPUTS=a \\"\n                ^'),
    ("workflow outputs with an open quote", 'MAKEFLOW_OUTPUTS=\\"\n',
     'Vinefile:1:18: unbalanced quote in \'"\'\nMAKEFLOW_OUTPUTS=\\"\n                 ^'),
    (".SIZE with an open quote", 'Q=\\"\n.SIZE $(Q) 1\n',
     'Vinefile:2:7: unbalanced quote in \' " 1\'\n.SIZE $(Q) 1\n      ^'),
    ("sub-workflow named with an open quote", 'Q=\\"\na:\n\tMAKEFLOW $(Q)\n',
     'Vinefile:3:2: unbalanced quote in \'"\'\n\tMAKEFLOW $(Q)\n\t^'),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_error_text(text, expected):
    with pytest.raises(VinefileError) as info:
        parse_text(text, "Vinefile", environ={})
    assert str(info.value) == expected


def test_error_carries_location_and_exit_status():
    with pytest.raises(VinefileError) as info:
        parse_text("a:\n\tx\n\ty\n", "dir/Vinefile", environ={})
    assert info.value.location == Location("dir/Vinefile", 3, 1)
    assert info.value.line_text == f"{T}y"
    assert info.value.exit_code == EXIT_INPUT


def test_not_a_text_file(tmp_path):
    from vinemake.language.parser import parse_file
    path = tmp_path / "Vinefile"
    path.write_bytes(b"out:\n\t\xff\xfe\n")
    with pytest.raises(VinefileError) as info:
        parse_file(str(path), environ={})
    assert str(info.value) == f"{path}:1:1: not a text file: invalid start byte"


def test_missing_file_is_an_input_error(tmp_path):
    from vinemake.common.errors import InputError
    from vinemake.language.parser import parse_file
    with pytest.raises(InputError) as info:
        parse_file(str(tmp_path / "Nope"), environ={})
    assert str(info.value) == f"cannot read {tmp_path / 'Nope'}: No such file or directory"


def test_every_syntax_error_of_a_vinefile_is_reported_in_one_go():
    text = ("a: b\n\techo a > a\n"
            "c d\n\techo c\n"               # no colon
            "x = \"unclosed\n"               # a quote never closed
            "y: \\\n  more\n\techo y\n"      # fine: the continued header is not a new start
            "z: y\n\techo z\n\techo again\n")  # two command lines
    with pytest.raises(VinefileErrors) as info:
        parse_text(text, "Vinefile", environ={})
    assert [(e.location.line, e.location.col, e.message) for e in info.value.errors] == [
        (3, 4, "expected ':' after the targets of a rule (or '=' for an assignment)"),
        (5, 5, 'unbalanced quote: this " is never closed'),
        (11, 1, "a rule has exactly one command line: join lines with a trailing '\\' "
                "or start a new rule")]
    # each with its own line and caret; the whole is the first one's location and status
    assert str(info.value).split("\n")[3:6] == [
        'Vinefile:5:5: unbalanced quote: this " is never closed', 'x = "unclosed', "    ^"]
    assert info.value.location == Location("Vinefile", 3, 4)
    assert info.value.exit_code == EXIT_INPUT


def test_a_single_syntax_error_reads_as_before():
    with pytest.raises(VinefileError) as info:
        parse_text("a: b\n\techo a\nc d\n\techo c\nok: b\n\techo ok\n", "Vinefile", environ={})
    assert not isinstance(info.value, VinefileErrors)
    assert str(info.value).startswith("Vinefile:3:4: expected ':'")


def test_syntax_errors_stop_being_listed_after_twenty():
    text = "".join(f"bad{i} line\n\techo\n" for i in range(30))
    with pytest.raises(VinefileErrors) as info:
        parse_text(text, "Vinefile", environ={})
    assert len(info.value.errors) == MAX_SYNTAX_ERRORS == 20
    assert [e.location.line for e in info.value.errors] == list(range(1, 41, 2))
    assert str(info.value).endswith("(stopped after 20 syntax errors)")


@pytest.mark.parametrize("text, lines", [
    # a rule's own assignment or directive before its command is not a fresh start
    ("a: b\nc: d\nX=1\n\tcmd\n", [2]),
    ("a b\nX=1\n\tcmd\n", [1]),
    ("a: b\n.MAKEFLOW CORES 2\nfoo bar\n.MAKEFLOW MEMORY 100\n\tcmd\n", [3]),
    # after a command line, a blank line or a comment, a statement does start afresh
    ("a b\n\tcmd\n\nc d\n\tcmd\n", [1, 4]),
    ("a b\n\tcmd\n# note\nc d\n\tcmd\n", [1, 4]),
    ("a b\n\tcmd \\\nx y\nc d\n\tcmd\n", [1, 4]),  # x y continues the command
], ids=["local-assignment", "assignment-after-bad-header", "directives", "blank-line",
        "comment", "continued-command"])
def test_the_parse_resumes_only_where_a_statement_surely_starts(text, lines):
    with pytest.raises(VinefileError) as info:
        parse_text(text, "Vinefile", environ={})
    errors = getattr(info.value, "errors", (info.value,))
    assert [e.location.line for e in errors] == lines


def test_an_error_quotes_at_most_two_hundred_characters_of_a_long_line():
    names = " ".join(f"n{i:03}" for i in range(100))
    text = f"out: {names} missing\n\tx\n"
    error = VinefileError(Location("Vinefile", 1, text.index("missing") + 1), "gone",
                          text.split("\n")[0])
    # The 200 characters around the column: here the end of the line.
    assert str(error) == f"Vinefile:1:506: gone\n...{names[-192:]} missing\n{' ' * 196}^"
    first = VinefileError(Location("Vinefile", 1, 6), "gone", text.split("\n")[0])
    assert str(first) == f"Vinefile:1:6: gone\nout: {names[:195]}...\n     ^"
