"""Every JX workflow error a user can make: the exact `path:line:col: message`, line and caret."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vinemake.common.errors import EXIT_INPUT, InputError, VinefileError
from vinemake.language.jxinput import JxInput, jx_input
from vinemake.language.jxworkflow import jx_context, parse_jx_workflow, read_jx

CASES = [
    # (what, workflow text, the full error text)
    ("a syntax error", '{"rules": [{"command": "x" + }]}',
     'w.jx:1:30: unexpected \'}\': expected a value\n{"rules": [{"command": "x" + }]}\n'
     "                             ^"),
    ("a missing comma", '{"rules": []\n "define": {}}',
     'w.jx:2:2: unexpected string "define": expected \',\' or \'}\'\n "define": {}}\n ^'),
    ("an unclosed array", '{"rules": [\n  {"command": "x"}\n',
     'w.jx:2:19: unexpected end of file: expected \',\' or \']\'\n  {"command": "x"}\n'
     "                  ^"),
    ("an unterminated string", '{"rules": [{"command": "x]}',
     'w.jx:1:24: unterminated string: this " is never closed\n{"rules": [{"command": "x]}\n'
     "                       ^"),
    ("single quotes", "{'rules': []}",
     "w.jx:1:2: strings are written in double quotes (\")\n{'rules': []}\n ^"),
    ("a single =", '{"rules": [{"command": "x" = 1}]}',
     "w.jx:1:28: '=' is not an operator (compare with '==')\n"
     '{"rules": [{"command": "x" = 1}]}\n                           ^'),
    ("an unknown function", '{"rules": [{"command": fromat("%d", 1)}]}',
     "w.jx:1:24: unknown function 'fromat' (did you mean 'format'?)\n"
     '{"rules": [{"command": fromat("%d", 1)}]}\n                       ^'),
    ("a wrong argument type", '{"rules": [{"command": format("%d", "x")}]}',
     'w.jx:1:37: format: \'%d\' needs an integer, got string "x"\n'
     '{"rules": [{"command": format("%d", "x")}]}\n                                    ^'),
    ("an undefined variable", '{"define": {"N": 3},\n "rules": [{"command": "echo " + M}]}',
     "w.jx:2:34: undefined symbol 'M'\n" ' "rules": [{"command": "echo " + M}]}\n'
     "                                 ^"),
    ("a misspelt variable", '{"define": {"SAMPLES": [1]},\n "rules": [{"command": "" + SAMPLE}]}',
     "w.jx:2:29: undefined symbol 'SAMPLE' (did you mean 'SAMPLES'?)\n"
     ' "rules": [{"command": "" + SAMPLE}]}\n                            ^'),
    ("a rule without a command", '{"rules": [\n  {"outputs": ["a"]}\n]}',
     'w.jx:2:3: a rule needs a "command" (or a "workflow" to run)\n  {"outputs": ["a"]}\n  ^'),
    ("a rule with both", '{"rules": [{"command": "x", "workflow": "w.jx"}]}',
     'w.jx:1:29: a rule has a "command" or a "workflow", not both\n'
     '{"rules": [{"command": "x", "workflow": "w.jx"}]}\n                            ^'),
    ("an empty command", '{"rules": [{"command": "  "}]}',
     'w.jx:1:24: empty command\n{"rules": [{"command": "  "}]}\n                       ^'),
    ("a misspelt rule key", '{"rules": [{"command": "x", "ouputs": ["a"]}]}',
     'w.jx:1:29: unknown key "ouputs" in a rule (did you mean \'outputs\'?)\n'
     '{"rules": [{"command": "x", "ouputs": ["a"]}]}\n                            ^'),
    ("a misspelt top-level key", '{"rule": []}',
     'w.jx:1:2: unknown key "rule" in a workflow (did you mean \'rules\'?)\n{"rule": []}\n ^'),
    ("no rules", "{}", 'w.jx:1:1: a workflow needs "rules" (an array of rules)\n{}\n^'),
    ("not an object", "[1]", 'w.jx:1:1: a workflow is an object with "rules", got array [1]\n'
                             "[1]\n^"),
    ("rules not an array", '{"rules": "x"}',
     'w.jx:1:11: "rules" must be an array, got string "x"\n{"rules": "x"}\n          ^'),
    ("a rule that is not an object", '{"rules": [1]}',
     'w.jx:1:12: a rule is an object with a "command", got integer 1\n{"rules": [1]}\n'
     "           ^"),
    ("bad resources: a word", '{"rules": [{"command": "x", "resources": {"cores": "many"}}]}',
     'w.jx:1:52: bad resources: "cores" must be a number of cores, got "many"\n'
     '{"rules": [{"command": "x", "resources": {"cores": "many"}}]}\n'
     "                                                   ^"),
    ("bad resources: negative", '{"rules": [{"command": "x", "resources": {"memory": -1}}]}',
     'w.jx:1:53: bad resources: "memory" must be a size like 512MB or 2GB (a bare number is '
     'MB), got -1\n{"rules": [{"command": "x", "resources": {"memory": -1}}]}\n'
     "                                                    ^"),
    ("bad resources: a boolean", '{"rules": [{"command": "x", "resources": {"gpus": true}}]}',
     'w.jx:1:51: bad resources: "gpus" must be a whole number of GPUs, got boolean true\n'
     '{"rules": [{"command": "x", "resources": {"gpus": true}}]}\n'
     "                                                  ^"),
    ("bad resources: a misspelt key", '{"rules": [{"command": "x", "resources": {"memroy": 1}}]}',
     'w.jx:1:43: unknown key "memroy" in "resources" (did you mean \'memory\'?)\n'
     '{"rules": [{"command": "x", "resources": {"memroy": 1}}]}\n'
     "                                          ^"),
    ("bad resources in a category",
     '{"categories": {"big": {"resources": {"disk": "lots"}}}, "rules": []}',
     'w.jx:1:47: bad resources: "disk" must be a size like 512MB or 2GB (a bare number is MB), '
     'got "lots"\n{"categories": {"big": {"resources": {"disk": "lots"}}}, "rules": []}\n'
     "                                              ^"),
    ("a file that is a number", '{"rules": [{"command": "x", "inputs": ["a", 1]}]}',
     'w.jx:1:45: a file is a string or an object with "dag_name", got integer 1\n'
     '{"rules": [{"command": "x", "inputs": ["a", 1]}]}\n'
     "                                            ^"),
    ("a file object without dag_name",
     '{"rules": [{"command": "x", "outputs": [{"task_name": "a"}]}]}',
     'w.jx:1:41: a file given as an object needs "dag_name" (its name here) and may have '
     '"task_name" (its name in the task)\n'
     '{"rules": [{"command": "x", "outputs": [{"task_name": "a"}]}]}\n'
     "                                        ^"),
    ("an empty file name", '{"rules": [{"command": "x", "outputs": [""]}]}',
     'w.jx:1:41: empty file name\n{"rules": [{"command": "x", "outputs": [""]}]}\n'
     "                                        ^"),
    ("local_job not a boolean", '{"rules": [{"command": "x", "local_job": "yes"}]}',
     'w.jx:1:42: "local_job" must be a boolean, got string "yes"\n'
     '{"rules": [{"command": "x", "local_job": "yes"}]}\n'
     "                                         ^"),
    ("an environment value that is a number",
     '{"environment": {"THREADS": 4}, "rules": []}',
     "w.jx:1:29: environment variable THREADS must be a string (or null to pass this one's), "
     'got integer 4\n{"environment": {"THREADS": 4}, "rules": []}\n                            ^'),
    ("an unknown allocation", '{"rules": [{"command": "x", "allocation": "fast"}]}',
     'w.jx:1:43: "allocation" must be one of auto, first, max, error\n'
     '{"rules": [{"command": "x", "allocation": "fast"}]}\n'
     "                                          ^"),
    ("a define that is not an object", '{"define": [1], "rules": []}',
     'w.jx:1:12: "define" must be an object of names\n{"define": [1], "rules": []}\n'
     "           ^"),
    ("a NUL in a command", '{"rules": [{"command": "a\\u0000b"}]}',
     'w.jx:1:24: a command cannot hold a NUL character\n{"rules": [{"command": "a\\u0000b"}]}\n'
     "                       ^"),
    ("a NUL in a file name", '{"rules": [{"command": "x", "outputs": ["a\\u0000"]}]}',
     'w.jx:1:41: a file name cannot hold a NUL character\n'
     '{"rules": [{"command": "x", "outputs": ["a\\u0000"]}]}\n'
     "                                        ^"),
    ("error() stops with its message",
     '{"rules": [{"command": "x" + n} for n in [1, 2] if n < 2 or error("too many: " + n)]}',
     'w.jx:1:61: error: too many: 2\n'
     '{"rules": [{"command": "x" + n} for n in [1, 2] if n < 2 or error("too many: " + n)]}\n'
     "                                                            ^"),
    ("an error inside a comprehension",
     '{"rules": [{"command": "x" + i, "outputs": ["o" + i]} for i in range(3, "9")]}',
     'w.jx:1:73: range: argument 2 must be integer, got string "9"\n'
     '{"rules": [{"command": "x" + i, "outputs": ["o" + i]} for i in range(3, "9")]}\n'
     "                                                                        ^"),
]


@pytest.mark.parametrize("what,text,expected", CASES, ids=[c[0] for c in CASES])
def test_jx_errors_are_located(what, text, expected):
    with pytest.raises(VinefileError) as e:
        parse_jx_workflow(text, "w.jx", environ={})
    assert str(e.value) == expected
    assert e.value.exit_code == EXIT_INPUT


def test_keys_far_from_any_known_key_are_ignored_as_makeflow_ignores_them():
    workflow = parse_jx_workflow(
        '{"comment": ["what this does"], "author": "me", "rules": [{"command": "x", '
        '"comment": "a note", "owner": "me", "outputs": [{"dag_name": "a", "comment": "b"}]}]}',
        "w.jx", environ={})
    assert [(r.command, r.targets[0].path) for r in workflow.rules] == [("x", "a")]


def test_a_workflow_nested_beyond_reason_is_an_error_not_a_crash():
    deep = '{"rules": [' + "[" * 5000 + "]" * 5000 + "]}"
    for plain in (True, False):
        with pytest.raises(VinefileError, match="nested too deeply"):
            parse_jx_workflow(deep, "w.json", plain=plain, environ={})


def test_plain_json_refuses_expressions():
    with pytest.raises(VinefileError) as e:
        parse_jx_workflow('{"rules": [{"command": "echo " + 1}]}', "w.json", plain=True)
    assert str(e.value) == (
        "w.json:1:24: a --json workflow is plain JSON, this is an expression (for expressions, "
        'use --jx)\n{"rules": [{"command": "echo " + 1}]}\n                       ^')


def test_jx_define_errors_point_into_the_define(tmp_path):
    with pytest.raises(VinefileError) as e:
        jx_context(defines=["N=1 +"])
    assert str(e.value) == "--jx-define:1:6: unexpected end of file: expected a value\nN=1 +\n" \
                           "     ^"
    with pytest.raises(VinefileError) as e:
        jx_context(defines=["N=M * 2"])
    assert str(e.value) == "--jx-define:1:3: undefined symbol 'M'\nN=M * 2\n  ^"
    with pytest.raises(InputError) as e:
        jx_context(defines=["1N=2"])
    assert str(e.value) == "--jx-define 1N=2: expected NAME=EXPRESSION"


def test_jx_args_errors_are_located_in_the_args_file(tmp_path):
    (tmp_path / "args.jx").write_text('{"N":\n  [1, 2, 3].len() * "x"}\n')
    with pytest.raises(VinefileError) as e:
        jx_context(args_files=[str(tmp_path / "args.jx")])
    assert str(e.value) == (f"{tmp_path}/args.jx:2:19: '*' needs numbers, got integer 3 and "
                            'string "x"\n  [1, 2, 3].len() * "x"}\n                  ^')
    (tmp_path / "list.jx").write_text("[1]\n")
    with pytest.raises(VinefileError) as e:
        jx_context(args_files=[str(tmp_path / "list.jx")])
    assert str(e.value) == f"{tmp_path}/list.jx:1:1: --jx-args needs an object of names, got " \
                           "array [1]\n[1]\n^"
    with pytest.raises(InputError) as e:
        jx_context(args_files=[str(tmp_path / "none.jx")])
    assert str(e.value) == f"cannot read --jx-args {tmp_path}/none.jx: No such file or directory"


def test_which_files_are_jx():
    assert jx_input("Vinefile") is None and jx_input("Makeflow") is None
    assert jx_input("wf.jx") == JxInput()
    assert jx_input("wf.json") == JxInput(plain=True)
    assert jx_input("Makeflow", jx=True) == JxInput()
    assert jx_input("wf.txt", plain=True) == JxInput(plain=True)
    assert jx_input("wf.json", defines=["N=1"]) == JxInput(defines=("N=1",))
    with pytest.raises(InputError, match="--jx and --json cannot be combined"):
        jx_input("wf", jx=True, plain=True)
    with pytest.raises(InputError, match="need --jx"):
        jx_input("wf", plain=True, args_files=["a.jx"])


def test_a_byte_order_mark_and_windows_line_ends_are_read(tmp_path):
    (tmp_path / "w.json").write_bytes(b'\xef\xbb\xbf{"rules": [\r\n{"command": "x"}]}\r\n')
    assert read_jx(str(tmp_path / "w.json")).rules[0].location.line == 2


def test_a_workflow_that_is_not_utf8_is_a_located_error(tmp_path):
    (tmp_path / "w.jx").write_bytes(b'{"rules": ["\xff"]}')
    with pytest.raises(VinefileError, match=r"w.jx:1:1: not a text file"):
        read_jx(str(tmp_path / "w.jx"))


def test_the_command_line_prints_the_error_and_exits_2_writing_nothing(tmp_path):
    (tmp_path / "wf.jx").write_text('{"rules": [\n  {"command": "touch a", "outputs": [a]}\n]}\n')
    proc = subprocess.run([sys.executable, "-m", "vinemake", "wf.jx"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == ("wf.jx:2:38: undefined symbol 'a'\n"
                           '  {"command": "touch a", "outputs": [a]}\n'
                           "                                     ^\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wf.jx"]
