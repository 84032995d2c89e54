"""Random JX: a Workflow or a located VinefileError, never anything else (no traceback may
reach a user), and an error always points into the text."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_jx_equivalence import PAIRS

from vinemake.common.errors import VinefileError
from vinemake.common.spec import Workflow
from vinemake.language.jxworkflow import parse_jx_workflow

SEEDS = [jx for _, jx in PAIRS.values()]
PIECES = ["{", "}", "[", "]", "(", ")", ",", ":", '"', '"rules"', '"command"', '"outputs"',
          '"inputs"', '"define"', '"categories"', '"resources"', '"cores"', '"environment"',
          '"dag_name"', '"x"', "\\", "\\u00", "1", "-2", "0.5", "1e400", "true", "null", "x",
          " for ", " in ", " if ", " and ", " or ", "not ", "!", "+", "-", "*", "/", "%",
          "==", "<", ".", "range(3)", "format(", "template(", "join(", "len(", "select(",
          "let(", "error(", "#", "\n", "\x00", "é", "'", "="]
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(text: str) -> None:
    try:
        workflow = parse_jx_workflow(text, "w.jx", environ={})
    except VinefileError as e:
        lines = text.split("\n")
        assert 1 <= e.location.line <= max(len(lines), 1), str(e)
        assert e.location.col >= 1, str(e)
        return
    assert isinstance(workflow, Workflow)
    for rule in workflow.rules:
        assert rule.command and rule.command == rule.command.strip()


@FUZZ
@given(st.lists(st.sampled_from(PIECES), max_size=40))
def test_random_pieces(pieces):
    check("".join(pieces))


@FUZZ
@given(st.sampled_from(SEEDS), st.integers(min_value=0), st.integers(min_value=0, max_value=8),
       st.lists(st.sampled_from(PIECES), max_size=4))
def test_random_edits_of_real_workflows(seed, at, cut, pieces):
    at %= len(seed) + 1
    check(seed[:at] + "".join(pieces) + seed[at + cut:])


@FUZZ
@given(st.text(max_size=60))
def test_random_text(text):
    check(text)
