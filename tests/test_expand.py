"""Variable expansion and quote-aware word splitting, on plain strings."""

from __future__ import annotations

import pytest

from vinemake.language.expand import ExpandError, expand, scan_words, split_files, split_words

VARS = {"A": "1", "B": "two words", "E": ""}


def ex(text: str) -> str:
    return expand(text, VARS.get)


@pytest.mark.parametrize(("raw", "expanded"), [
    ("plain text", "plain text"),
    ("$A ${A} $(A)x", "1 1 1x"),
    ("'$A' \"$A\"", "'$A' \"1\""),
    ("\"it's $A\"", "\"it's 1\""),
    ("'a\\' $A", "'a\\' 1"),  # a backslash does not escape inside single quotes
    ("\\$A \\\\$A '\\$A' \"\\$A\"", "$A \\\\1 '$A' \"$A\""),
    ("a   \\\n   b", "a b"),
    ("'a \\\n b'", "'a b'"),
    ("$1 $? $ end$", "$1 $? $ end$"),
    ("[$E]", "[]"),
])
def test_expand(raw, expanded):
    assert ex(raw) == expanded


def test_expanded_values_are_not_expanded_again():
    assert expand("$(X)", {"X": "$(A) '$$'"}.get) == "$(A) '$$'"


@pytest.mark.parametrize(("raw", "offset", "message"), [
    ("ab $(NOPE)", 3, "undefined variable 'NOPE'"),
    ("$Ab", 0, "undefined variable 'Ab'"),  # the longest name is taken
    ("x $$", 2, "'$$' is not supported: write '\\$' to pass a '$' to the shell"),
    ("$@", 0, "'$@' (a make automatic variable) is not supported: name the files explicitly"),
    ("${A", 0, "bad variable reference: expected a name and '}' after '${'"),
    ("$(A B)", 0, "bad variable reference: expected a name and ')' after '$('"),
])
def test_expand_errors(raw, offset, message):
    with pytest.raises(ExpandError) as info:
        ex(raw)
    assert (info.value.offset, info.value.message) == (offset, message)


def test_split_words_removes_quotes_and_escapes():
    assert split_words("a 'b c' \"d \\\"e\\\"\" f\\ g ''") == ["a", "b c", 'd "e"', "f g", ""]


def test_scan_words_gives_offsets():
    assert scan_words("  ab 'c d'") == [("ab", 2), ("c d", 5)]


@pytest.mark.parametrize(("text", "pairs"), [
    ("a b", [("a", "a"), ("b", "b")]),
    ("a->b c -> d e->  f", [("a", "b"), ("c", "d"), ("e", "f")]),
    ("my-file x-y->z", [("my-file", "my-file"), ("x-y", "z")]),
    ("'a->b' \"c d\"->e", [("a->b", "a->b"), ("c d", "e")]),
])
def test_split_files(text, pairs):
    assert split_files(text) == pairs


@pytest.mark.parametrize(("text", "offset", "message"), [
    ("->b", 0, "expected a file name before '->'"),
    ("a ->", 2, "expected a file name after '->'"),
    ("a -> -> b", 2, "expected a file name after '->'"),
    ("a 'b", 2, "unbalanced quote"),
])
def test_split_files_errors(text, offset, message):
    with pytest.raises(ExpandError) as info:
        split_files(text)
    assert (info.value.offset, info.value.message) == (offset, message)


def test_split_is_linear_on_a_hundred_thousand_names():
    text = " ".join(f"'n {i}'->s{i}" for i in range(100_000))
    pairs = split_files(text)
    assert len(pairs) == 100_000 and pairs[-1] == ("n 99999", "s99999")
