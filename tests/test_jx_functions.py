"""JX expressions and built-in functions, against the behaviour cctools' JX reference documents.

The expected values are the reference's own examples where it gives one (doc/manuals/jx,
jx.md and reference.md), otherwise what cctools' jx_function.c and jx_eval.c compute.
"""

from __future__ import annotations

import http.server
import threading

import pytest

from vinemake.common.errors import VinefileError
from vinemake.language.jx import Lazy, evaluate
from vinemake.language.jxparse import parse_jx
from vinemake.language.jxvalues import JxError, kind, show


def ev(text: str, root: str = ".", **names):
    defined = {k: Lazy(k, parse_jx(v[1:], "define")) if isinstance(v, str) and v[:1] == "="
               else v for k, v in names.items()}
    return evaluate(parse_jx(text, "expr"), defined, root)


def error(text: str, root: str = ".", **names) -> str:
    with pytest.raises(JxError) as e:
        ev(text, root, **names)
    return f"{e.value.at[0]}:{e.value.at[1]}: {e.value.message}"


DOCUMENTED = [
    # The reference's examples, as written there.
    ('"123" + "4"', "1234"),
    ("123 + 4", 127),
    ("range(10)", list(range(10))),
    ("range(10)[:3]", [0, 1, 2]),
    ("range(10)[4:]", [4, 5, 6, 7, 8, 9]),
    ("range(10)[3:7]", [3, 4, 5, 6]),
    ("range(3, 7)", [3, 4, 5, 6]),
    ("range(7, 3)", []),
    ("range(-1, 10, 2)", [-1, 1, 3, 5, 7, 9]),
    ("range(5,0,-1)", [5, 4, 3, 2, 1]),
    ('format("file%d.txt", 10)', "file10.txt"),
    ('format("SM%s_%d.sam", "10001", 23)', "SM10001_23.sam"),
    ('template("file{ID}.txt")', "file10.txt"),
    ('template("SM{PLATE}_{ID}.sam", {"PLATE": "10001", "ID": N/2 - 1})', "SM10001_23.sam"),
    ("len([1,2,3])", 3),
    ('select([{"x": 0, "y": "test", "z": 1.0}, {"x": 1, "y": "example", "z": 0.0}], x==1)',
     [{"x": 1, "y": "example", "z": 0.0}]),
    ('where([{"x": 0, "y": "test", "z": 1.0}, {"x": 1, "y": "example", "z": 0.0}], x==1)',
     [{"x": 1, "y": "example", "z": 0.0}]),
    ('project([{"x": 0, "y": "test", "z": 1.0}, {"x": 1, "y": "example", "z": 0.0}], x)',
     [0, 1]),
    ('schema({"x": 0, "y": "test", "z": 1.0})', {"x": "integer", "y": "string", "z": "float"}),
    ('like("test", ".es.*")', True),
    ('[x + x for x in ["a", "b", "c"]]', ["aa", "bb", "cc"]),
    ("[3 * i for i in range(4)]", [0, 3, 6, 9]),
    ("[i for i in range(10) if i%2 == 0]", [0, 2, 4, 6, 8]),
    # The reference prints a shortened result for this one; this is the full list it means.
    ("[[i, j] for i in range(5) for j in range(4) if (i + j)%2 == 0]",
     [[i, j] for i in range(5) for j in range(4) if (i + j) % 2 == 0]),
    ('"%d".format(10)', "10"),
    ("[1,2,3,4].len()", 4),
    ('[{"a": 1}, {"a": 2}].project(a)', [1, 2]),
    ('"abc".like("a.+")', True),
    ('"ceil(%f) -> %d".format(9.1, 10)', "ceil(9.100000) -> 10"),
    ('[{"a": 1}, {"a": 2}].select(a>0).project(a).len()', 2),
    ('join(["output.1.txt","output.2.txt","output.3.txt"], " ")',
     "output.1.txt output.2.txt output.3.txt"),
    ('[ "output." + N + ".txt" for N in [1,2,3] ]',
     ["output.1.txt", "output.2.txt", "output.3.txt"]),
    ('{ "location": city, "count": len(zipcodes) }', {"location": "South Bend", "count": 7}),
    ("10+20    # This is a comment.", 30),
]


@pytest.mark.parametrize("text,expected", DOCUMENTED, ids=[t for t, _ in DOCUMENTED])
def test_the_documented_examples(text, expected):
    names = {"ID": 10, "N": 48, "city": "South Bend",
             "zipcodes": [46601, 46613, 46614, 46615, 46616, 46617, 46619]}
    value = ev(text, **names)
    assert value == expected and kind(value) == kind(expected)


SOURCE_BEHAVIOUR = [
    # Integers stay integers, C's truncating division and remainder.
    ("7 / 2", 3), ("-7 / 2", -3), ("-7 % 3", -1), ("7 % -3", 1), ("7.0 / 2", 3.5),
    ("7.5 % 2", 1.0), ("1 + 2.5", 3.5), ("2 * 3", 6), ("10 - 2 - 3", 5),
    ("-(2 + 3)", -5), ("+4", 4), ('+"s"', "s"),
    # Comparisons and logic.
    ("1 == 1.0", True), ('1 == "1"', False), ('1 != "1"', True), ("null == null", True),
    ("[1, [2]] == [1, [2]]", True), ('{"a": 1} == {"a": 1}', True), ('"a" < "b"', True),
    ("2 <= 2.0", True), ("true and false", False), ("true && true", True),
    ("false or true", True), ("false || false", False), ("not true", False), ("!false", True),
    ("not 1 == 2", True), ("true or 1", True), ("false and 1", False),
    # Concatenation: a string with any atomic value, arrays with arrays.
    ('"out." + 3 + ".txt"', "out.3.txt"), ('"x" + 2.5', "x2.5"), ('"x" + 3.0', "x3"),
    ('"x" + true', "xtrue"), ('"x" + null', "xnull"), ("[1] + [2, 3]", [1, 2, 3]),
    # Lookups.
    ('{"a": [10, 20]}["a"][-1]', 20), ("range(10)[-3:]", [7, 8, 9]), ("range(5)[:-3]", [0, 1]),
    ("range(5)[3:1]", []), ("range(5)[-100:2]", [0, 1]),
    # An object comprehension.
    ('{"k" + i: i * i for i in range(3) if i > 0}', {"k1": 1, "k2": 4}),
    # Numbers as JSON writes them.
    ("09631", 9631), ("1e3", 1000.0), (".5", 0.5), ("-2", -2),
    # Strings: JSON escapes, and a backslash before anything else stands for that character.
    (r'"tab\there\u0041\/\q"', "tab\there" + "A/q"),
]


@pytest.mark.parametrize("text,expected", SOURCE_BEHAVIOUR, ids=[t for t, _ in SOURCE_BEHAVIOUR])
def test_operators_as_cctools_evaluates_them(text, expected):
    value = ev(text)
    assert value == expected and kind(value) == kind(expected)


FUNCTIONS = [
    ("range(4)", [0, 1, 2, 3]), ("range(2, 8, 3)", [2, 5]), ("range(0)", []),
    ('format("%i|%e|%E|%f|%F|%g|%G|%s|%%", 1, 1.5, 1.5, 1.5, 1.5, 1.5, 1e20, "s")',
     "1|1.500000e+00|1.500000E+00|1.500000|1.500000|1.5|1E+20|s|%"),
    ("join([\"a\", \"b\"])", "a b"), ('join(["a", "b"], ",")', "a,b"), ("join([])", ""),
    ("ceil(2.1)", 3.0), ("ceil(-2.1)", -2.0), ("ceil(2)", 2), ("floor(2.9)", 2.0),
    ("floor(-2.1)", -3.0), ("floor(7)", 7),
    ('basename("/a/b/c.txt")', "c.txt"), ('basename("/a/b/c.txt", ".txt")', "c"),
    ('basename("dir/")', "dir"), ('basename("/")', "/"), ('basename("")', "."),
    ('basename("c.txt", "x")', "c.txt"),
    ('dirname("/a/b/c.txt")', "/a/b"), ('dirname("c.txt")', "."), ('dirname("/c")', "/"),
    ('dirname("a/b/")', "a"), ('dirname("")', "."), ('dirname("//")', "/"),
    ('escape("it\'s $HOME")', '"it\'s \\$HOME"'), ('escape("a\\"b`c\\\\")', '"a\\"b\\`c\\\\"'),
    ("len([])", 0), ('len([[1, 2], "x"])', 2),
    ('schema([{"a": 1}, {"a": "x", "b": [1]}, {"c": null, "d": true, "e": {}}])',
     {"a": "integer", "b": "array", "c": "null", "d": "boolean", "e": "object"}),
    ('like("sample_12.fastq", "_[0-9]+\\\\.fastq$")', True), ('like("abc", "^b")', False),
    ('keys({"b": 1, "a": 2})', ["b", "a"]), ('values({"b": 1, "a": [2]})', [1, [2]]),
    ('items({"b": 1, "a": 2})', [["b", 1], ["a", 2]]),
    ('template("{{literal}} {A}-{ B }", {"B": 2.5})', "{literal} x-2.5"),
    ('template("{A}{C}", {"A": "over"})', "overdefined"),
    ('select([{"n": 1, "t": "a"}, {"n": 2, "t": "b"}], n > 1 and t == "b")',
     [{"n": 2, "t": "b"}]),
    ('project([{"n": 1}, {"n": 2}], n * base)', [10, 20]),
    ('let({"a": 1, "b": base}, a + b)', 11), ('let({"base": 2}, [base, A])', [2, "x"]),
]


@pytest.mark.parametrize("text,expected", FUNCTIONS, ids=[t for t, _ in FUNCTIONS])
def test_every_function(text, expected):
    value = ev(text, A="x", C="=\"defin\" + \"ed\"", base=10)
    assert value == expected and kind(value) == kind(expected)


def test_listdir_lists_a_directory_sorted_without_dot_entries(tmp_path):
    for name in ("b.txt", "a.txt", ".hidden"):
        (tmp_path / "data" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "data" / name).write_text("")
    assert ev('listdir("data")', root=str(tmp_path)) == [".hidden", "a.txt", "b.txt"]
    assert ev('[f for f in listdir("data") if like(f, "\\\\.txt$")]', root=str(tmp_path)) == \
        ["a.txt", "b.txt"]


def test_fetch_reads_a_document_from_a_file(tmp_path):
    (tmp_path / "example.json").write_text('{"x": 0, "y": "test", "z": 1.0, "w": [1 + 1]}')
    assert ev('fetch("example.json")', root=str(tmp_path)) == \
        {"x": 0, "y": "test", "z": 1.0, "w": [2]}


def test_fetch_reads_a_document_from_a_real_http_server(tmp_path):
    (tmp_path / "samples.json").write_text('[{"id": "s1", "size": 3}, {"id": "s2", "size": 9}]')

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        big = f'fetch("{url}/samples.json").select(size > 5).project(id)'
        assert ev(big) == ["s2"]
        assert error(f'fetch("{url}/missing.json")') == \
            f"1:7: fetch: cannot fetch {url}/missing.json: File not found"
    finally:
        server.shutdown()
        server.server_close()


def test_a_fetched_document_with_an_error_is_located_in_it(tmp_path):
    (tmp_path / "bad.json").write_text('{"x":\n  1 +}\n')
    with pytest.raises(VinefileError) as e:
        ev('fetch("bad.json")', root=str(tmp_path))
    assert str(e.value) == "bad.json:2:6: unexpected '}': expected a value\n  1 +}\n     ^"


def test_a_define_is_evaluated_where_it_is_used():
    # As cctools does: the define sees the comprehension variable in force at the use.
    assert ev('[OUT for N in range(2)]', OUT='="out." + N') == ["out.0", "out.1"]
    assert ev("B", A="=1 + 1", B="=A * 10") == 20


FUNCTION_ERRORS = [
    ("range(1.5)", "1:7: range: argument 1 must be integer, got float 1.5"),
    ("range(1, 2, 0)", "1:13: range: step must be nonzero"),
    ("range(1, 2, 3, 4)", "1:1: range: takes 1 to 3 arguments, got 4"),
    ('format("%d", "x")', "1:14: format: '%d' needs an integer, got string \"x\""),
    ('format("%f", 1)', "1:14: format: '%f' needs a float, got integer 1"),
    ('format("%s", 1)', "1:14: format: '%s' needs a string, got integer 1"),
    ('format("%5d", 1)', "1:8: format: unsupported format specifier '%5' (use %d %i %e %E %f "
                         "%F %g %G %s or %%)"),
    ('format("%d %d", 1)', "1:8: format: not enough arguments for '%d %d'"),
    ('format("%d", 1, 2)', "1:17: format: too many arguments for '%d'"),
    ('format("50%")', "1:8: format: truncated format specifier '%' at the end"),
    ("format(1)", "1:8: format: the first argument must be a format string"),
    ('join(["a", 1])', "1:6: join: every item must be a string, got integer 1"),
    ('join("a")', "1:6: join: argument 1 must be array, got string \"a\""),
    ('ceil("1")', "1:6: ceil: argument 1 must be integer or float, got string \"1\""),
    ("basename(1)", "1:10: basename: argument 1 must be string, got integer 1"),
    ('dirname("a", "b")', "1:1: dirname: takes 1 argument, got 2"),
    ('escape(["x"])', "1:8: escape: argument 1 must be string, got array [\"x\"]"),
    ('len("abc")', "1:5: len: argument 1 must be array, got string \"abc\""),
    ('listdir("no-such-dir")', "1:9: listdir: cannot list 'no-such-dir': No such file or "
                               "directory"),
    ('fetch("no-such.json")', "1:7: fetch: cannot read no-such.json: No such file or directory"),
    ("schema([1])", "1:8: schema: needs objects, got integer 1"),
    ('like("a", "(")', "1:11: like: bad regular expression \"(\": missing ), unterminated "
                       "subpattern at position 0"),
    ("keys([1])", "1:6: keys: argument 1 must be object, got array [1]"),
    ('template("{A} {nope}")', "1:10: template: undefined symbol 'nope' in \"{A} {nope}\""),
    ('template("{1}")', "1:10: template: '{' must hold a single name and '}' in \"{1}\""),
    ('template("a}")', "1:10: template: unmatched '}' in \"a}\""),
    ('template("{L}")', "1:10: template: cannot put array [1] (L) in a template"),
    ("select([1], true)", "1:8: select: argument 1 must be an array of objects, got an item "
                          "integer 1"),
    ('select([{"a": 1}], a)', "1:20: select: the condition must be a boolean, got integer 1"),
    ("project([{}])", "1:1: project: takes 2 arguments (an array of objects, an expression), "
                      "got 1"),
    ("let([1], 2)", "1:5: let: argument 1 must be an object of names, got array [1]"),
    ('let({"a": 1})', "1:1: let: takes 2 arguments (an object of names, an expression), got 1"),
    ("nosuch(1)", "1:1: unknown function 'nosuch'"),
    ("lenn([1])", "1:1: unknown function 'lenn' (did you mean 'len'?)"),
]


@pytest.mark.parametrize("text,expected", FUNCTION_ERRORS, ids=[t for t, _ in FUNCTION_ERRORS])
def test_function_errors_are_located_at_the_argument_at_fault(text, expected, tmp_path):
    assert error(text, str(tmp_path), A="x", L=[1]) == expected


OPERATOR_ERRORS = [
    ('"123" + 4 * []', "1:11: '*' needs numbers, got integer 4 and array []"),
    ("1 / 0", "1:3: division by zero in 1 / 0"),
    ("1.5 % 0.5", "1:5: division by zero in 1.5 % 0.5"),
    ("2.0 / 0", "1:5: division by zero in 2 / 0"),
    ('1 < "2"', "1:3: '<' needs two numbers or two strings, got integer 1 and string \"2\""),
    ("1 and true", "1:3: 'and' needs booleans, got integer 1 and boolean true"),
    ("not 1", "1:1: 'not' needs a boolean, got integer 1"),
    ('-"a"', "1:1: unary '-' needs a number, got string \"a\""),
    ("[1] + {}", "1:5: '+' needs numbers, strings or arrays, got array [1] and object {}"),
    ("x + 1", "1:1: undefined symbol 'x'"),
    ("cout + 1", "1:1: undefined symbol 'cout' (did you mean 'count'?)"),
    ('{"a": 1}["b"]', "1:10: key \"b\" not found"),
    ("[1, 2][2]", "1:8: index 2 out of range (the array has 2 items)"),
    ('[1, 2]["0"]', "1:7: cannot look up string \"0\" in array [1,2] (an array takes an "
                    "integer, an object a string)"),
    ('"abc"[0:1]', "1:8: only arrays can be sliced, not string \"abc\""),
    ("[1][0.5:]", "1:5: slice indices must be integers, got float 0.5"),
    ("[x for x in 3]", "1:13: 'for x in' needs an array, got integer 3"),
    ("[x for x in [1] if x]", "1:20: a comprehension's 'if' needs a boolean, got integer 1"),
    ("{1: 2}", "1:2: an object's key must be a string, got integer 1"),
    ("A", "1:1: define 'A' needs itself (A -> B -> A)"),
]


@pytest.mark.parametrize("text,expected", OPERATOR_ERRORS, ids=[t for t, _ in OPERATOR_ERRORS])
def test_operator_errors_are_located_at_the_operator(text, expected):
    assert error(text, count=1, A="=B", B="=A") == expected


def test_values_print_as_jx_prints_them():
    assert show({"a": [1, 2.5, None, True, "q\""]}) == '{"a":[1,2.5,null,true,"q\\""]}'
    assert show(0.1 + 0.2) == "0.3"  # %.16g, as jx_print writes a double
    assert show(1 / 3) == "0.3333333333333333"
    assert show(1e20) == "1e+20" and show(3.0) == "3"
