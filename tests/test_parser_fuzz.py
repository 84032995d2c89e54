"""Random garbage and random edits of the case Vinefiles: a Workflow or a VinefileError, never
anything else (no traceback may reach a user), and errors always point into the file."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vinemake.common.errors import VinefileError
from vinemake.common.spec import Workflow
from vinemake.language.parser import parse_text

CASES = sorted((Path(__file__).parent / "cases").glob("*/Vinefile"))
SEEDS = [p.read_text() for p in CASES]
PIECES = [":", "=", "+=", "-=", "$", "$(", "${", ")", "}", '"', "'", "\\", "\\\n", "\n", "\t",
          " ", "#", "@", ".", "-", "->", ">", "a", "B_1", "x.txt", "LOCAL ", "MAKEFLOW ",
          "export ", ".MAKEFLOW ", ".SIZE ", "CATEGORY=", "CORES=", "MEMORY=", "@resources ",
          "@library ", "@call ", "@temp", "@retries ", "@cache forever", "4G", "30m", "\r\n",
          "é", "\x00", "slots=", "cores=", "wall_time=", "GPUS=", "WALL_TIME=", "BATCH_LOCAL=1",
          "BATCH_OPTIONS=", "MAKEFLOW_INPUTS=", "MAKEFLOW_OUTPUTS=", ".MAKEFLOW MODE ",
          ".MAKEFLOW CATEGORY ", "MPI_PROCESSES "]
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def check(text: str) -> None:
    try:
        wf = parse_text(text, "Vinefile", environ={"HOME": "/home/u"})
    except VinefileError as e:
        lines = text.replace("\r\n", "\n").split("\n")
        assert 1 <= e.location.line <= max(len(lines), 1), str(e)
        assert e.location.col >= 1
        assert e.line_text == lines[e.location.line - 1]
        return
    assert isinstance(wf, Workflow)
    assert [r.id for r in wf.rules] == list(range(len(wf.rules)))
    for rule in wf.rules:
        assert rule.command and rule.command == rule.command.strip()
        assert all(f.path and f.sandbox for f in rule.targets + rule.sources)


@FUZZ
@given(st.lists(st.sampled_from(PIECES), max_size=40).map("".join))
def test_garbage_from_language_pieces(text):
    check(text)


@FUZZ
@given(st.text(max_size=80))
def test_arbitrary_text(text):
    check(text)


@FUZZ
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 3),
                                                  st.sampled_from(PIECES)), max_size=4))
def test_mutated_cases(seed, edits):
    text = seed
    for where, how_long, piece in edits:
        at = int(where * len(text))
        text = text[:at] + piece + text[at + how_long:]
    check(text)


# ---- generated well-formed Vinefiles read back exactly ----------------------------------

# A name as written and as read: bare, or quoted with blanks, `#`, `:` and `->` inside.
BARE = st.from_regex(r"[A-Za-z0-9_.][A-Za-z0-9_./-]{0,8}", fullmatch=True).filter(
    lambda n: n != "export").map(lambda n: (n, n))  # `export` starts an export line
QUOTED = st.from_regex(r"[A-Za-z0-9 #:>._-]{1,8}", fullmatch=True).map(
    lambda n: (f"'{n}'", n) if "'" not in n else (n, n))
NAME = st.one_of(BARE, QUOTED)
FILE = st.tuples(NAME, st.none() | NAME, st.sampled_from(["->", " -> ", "-> ", " ->"]))
COMMAND = st.from_regex(r"[a-z](?:[a-z0-9 ._/=|>-]{0,20}[a-z0-9])?", fullmatch=True)
SPACE = st.sampled_from(["", " ", "  ", "\t"])
INDENT = st.sampled_from(["\t", " ", "    ", "\t  "])
BETWEEN = st.sampled_from(["", "\n", "# note\n", "\n  # indented note\n\n"])
RULE = st.tuples(st.lists(FILE, max_size=3), st.lists(FILE, max_size=4), COMMAND, SPACE, SPACE,
                 INDENT, BETWEEN, st.booleans())


def _file_list(files) -> str:
    return " ".join(path[0] + (arrow + box[0] if box else "") for path, box, arrow in files)


def _refs(files) -> list[tuple[str, str]]:
    return [(path[1], (box or path)[1]) for path, box, _ in files]


@settings(FUZZ, max_examples=60)
@given(st.lists(RULE, min_size=1, max_size=6))
def test_generated_rules_read_back(rules):
    text = ""
    for targets, sources, command, before, after, indent, between, continued in rules:
        source_text = _file_list(sources)
        if continued and len(sources) > 1:  # between two names (in quotes it is one blank)
            source_text = _file_list(sources[:1]) + " \\\n   " + _file_list(sources[1:])
        before = before if targets else ""  # a line starting with a blank is a command
        text += f"{_file_list(targets)}{before}:{after}{source_text}\n{indent}{command}\n"
        text += between
    wf = parse_text(text, "Vinefile", environ={})
    assert len(wf.rules) == len(rules)
    for rule, (targets, sources, command, *_) in zip(wf.rules, rules, strict=True):
        assert [(f.path, f.sandbox) for f in rule.targets] == _refs(targets)
        assert [(f.path, f.sandbox) for f in rule.sources] == _refs(sources)
        assert rule.command == command


VALUE = st.from_regex(r"[A-Za-z0-9 ._/=:>-]{0,12}", fullmatch=True)
REFERENCE = st.sampled_from(["$V{}", "$(V{})", "${{V{}}}"])


@settings(FUZZ, max_examples=60)
@given(st.lists(st.tuples(VALUE, st.sampled_from(["=", " = ", "+=", " += "])), min_size=1,
                max_size=5),
       st.lists(st.tuples(st.integers(0, 4), REFERENCE), max_size=6))
def test_generated_variables_expand_in_order(assignments, uses):
    text, values = "", {}
    for i, (value, op) in enumerate(assignments):
        name = f"V{i % 3}"
        text += f"{name}{op}{value}\n"
        old, new = values.get(name), value.strip()
        values[name] = f"{old} {new}".strip() if "+" in op and old else new
    refs_ = [(f"V{i % 3}", form.format(i % 3)) for i, form in uses if f"V{i % 3}" in values]
    command = "echo " + " ".join(f"<{form}>" for _, form in refs_)
    wf = parse_text(text + "out:\n\t" + command + "\n", "Vinefile", environ={})
    expected = "echo " + " ".join(f"<{values[name]}>" for name, _ in refs_)
    assert wf.rules[0].command == expected.strip()


# ---- the fast path for plain rules against the general one ------------------------------

WORDS = st.lists(st.sampled_from(["a", "b.txt", "->", "-", ">", "x/y", "..", "/", " ", "\t",
                                   "\x0c", "é", "LOCAL", "MAKEFLOW"]), max_size=5).map("".join)
PLAIN_RULE = st.tuples(
    st.sampled_from(["", "X=1\n", "BATCH_LOCAL=1\n", "export X\n", "@retries 1\n",
                     "CATEGORY=c\n", "CORES=2\n"]),
    WORDS, WORDS, st.sampled_from(["", "  \n", "\n", " \t\n", "# c\n"]),
    st.sampled_from(["\t", " ", "  "]), WORDS,
).map(lambda p: f"{p[0]}{p[1]}:{p[2]}\n{p[3]}{p[4]}{p[5]}\n")


def _outcome(text: str):
    try:
        return parse_text(text, "Vinefile", environ={"X": "0"})
    except VinefileError as e:
        return (e.location, e.message)


@FUZZ
@given(st.lists(PLAIN_RULE, max_size=4).map("".join))
def test_plain_rules_mean_what_their_general_form_means(text):
    # A comment at the end of every line makes the parser take its general path.
    general = "".join(line + " # c\n" for line in text.split("\n"))
    plain, slow = _outcome(text), _outcome(general)
    if isinstance(plain, Workflow) or isinstance(slow, Workflow):
        assert plain == slow
    else:
        assert plain[0].line == slow[0].line


# ---- the assignment terminals' lookaheads only make them fail sooner ---------------------

PLAIN_ASSIGN = {"ASSIGN": r"@?[A-Za-z_][A-Za-z0-9_]*[ \t]*\+?=",
                "BAD_ASSIGN": r"@?[A-Za-z_][A-Za-z0-9_]*[ \t]*[-?:!]=|\+?="}


@FUZZ
@given(st.text(alphabet="@aZ_0 \t+=-?:!\n.#", max_size=12))
def test_assignment_terminals_match_what_they_would_without_their_lookaheads(text):
    import re

    from vinemake.language.parser import _lark
    terminals = {t.name: t.pattern.to_regexp() for t in _lark().terminals}
    for name, plain_pattern in PLAIN_ASSIGN.items():
        found, plain = re.match(terminals[name], text), re.match(plain_pattern, text)
        assert (found and found.group()) == (plain and plain.group()), name


# ---- reading plain rules in one pass against the whole file through Lark ------------------

# Statements: plain rules, rules that look almost like one, every other kind of statement,
# and a few lines that are wrong where they stand.
HEADERS = ["o1: a b", "o2:a", ": a", ".x: a", "export: a", "x/y: ./a", "o: a", "o3 : a -> b",
           "o4: 'a b'", "o5: a \\\n  b", "o6: http://h/a", "o7: $X", "o8: a # c", "a b:"]
COMMANDS = ["\tcat a b > o1", "\tcat a", "  echo x=1: y", "\tLOCAL cat a", "\tcat '$X'",
            "\techo $X", "\tcat a # c", " cat a \\\n b"]
STATEMENTS = ([f"{h}\n{c}\n" for h in HEADERS for c in COMMANDS[:3]]
              + [f"{h}\n{c}\n" for h in HEADERS[:2] for c in COMMANDS[3:]]
              + ["@temp\no1: a\n\tcat a\n", "@retries 2\no9: a\n\tcat a\n",
                 "o1: a\nX=2\n\tcat a\n", "o2: a\nCATEGORY=d\n\tcat\n", "X=1\n", "X+=y\n",
                 "Z = a \\\n b\n", "CATEGORY=c\n", "CORES=2\n", "BATCH_LOCAL=1\n",
                 "export X\n", "export Y=2\n", ".MAKEFLOW CORES 2\n", ".SIZE a 1\n", "\n",
                 "# comment\n", "  # note\n\n", "\t\n",
                 # wrong where they stand
                 "export a: b\n\tcat\n", "@o: a\n\tcat\n", "o=1: a\n\tcat\n",
                 "o1 := a\n\tcat\n", " o: a\n", "\tcat a\n", "@temp\n", "o: a\n"])


@FUZZ
@given(st.lists(st.sampled_from(STATEMENTS), max_size=30).map("".join))
def test_plain_rules_read_in_one_pass_as_lark_reads_the_whole_file(text):
    from lark.exceptions import UnexpectedInput

    from vinemake.common.errors import VinemakeError
    from vinemake.language.evaluate import evaluate
    from vinemake.language.parser import _lark, _read
    from vinemake.language.statements import SourceText

    environ = {"X": "0", "HOME": "/home/u"}
    source = SourceText("Vinefile", text)
    outcomes = []
    for read in (lambda: _read(text, source, environ, None),
                 lambda: evaluate(_lark().parse(text), source, environ)):
        try:
            outcomes.append(read())
        except (UnexpectedInput, VinemakeError):
            outcomes.append(None)
    one_pass, whole = outcomes
    assert one_pass == whole
