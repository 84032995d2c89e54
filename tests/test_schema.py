"""Checks of decoded JSON values: a compiled check passes exactly what its check passes."""

from __future__ import annotations

import copy
import json
import math

import pytest

from vinemake.common.spec import Resources
from vinemake.common.task import LibrarySpec, MiniTask, Task, TaskFile, TaskResult
from vinemake.wire import protocol as p
from vinemake.wire import schema


def _json(value):
    """`value` as the reader sees it: lists, not tuples."""
    return json.loads(json.dumps(value))


_TASK = _json(p.task_to_wire(Task(
    id=7, rule_key="rule-1", name="out", command="true", inputs=(TaskFile("file-1", "in/x"),),
    outputs=(TaskFile("out-1", "out", None),), env=(("A", "1"),),
    resources=Resources(cores=2, wall_time_s=1.5),
    library=LibrarySpec("lib", "lib-1", "python lib.py", (TaskFile("file-2", "lib.py"),)),
    minis=(MiniTask("mini-1", "m", "true", outputs=(TaskFile("m-1", "m"),)),), after=(3,))))
_OUTCOME = _json(p.outcome_to_wire(p.TaskOutcome(
    TaskResult(task_id=7, status="failed", exit_code=1, worker="w1"),
    outputs=(("out-1", 4, "h", "/c/out-1"),), failed=(("out", "out-1", "/c/x"),),
    unfetched=(("file-1", ("w2", "manager")),), inline=(("out-1", b"hi"),))))

# A good body of every shape the wire carries: each value in it is replaced in turn below.
GOOD = [
    ("Hello", {"version": 12, "role": "worker", "nonce": "n", "name": "w",
               "resources": {"cores": 2, "memory_mb": 100, "disk_mb": None}, "host_id": "h",
               "file_port": 9000}),
    ("Welcome", {"proof": "", "worker_id": "w1", "same_host": True, "transfer_limit": 3,
                 "file_port": 0, "max_tasks": 0, "heartbeat_s": 1.5, "silence_s": 0}),
    ("Cached", {"entries": [["k", 3, "h"]]}),
    ("Run", {"task": _TASK, "fetch": [["file-1", "h", [["host", 9000, "w2", False]]]]}),
    ("Runs", {"runs": [[_TASK, []], [_TASK, [["k", "", [["u", 0, "url", False]]]]]]}),
    ("Done", {"outcomes": [_OUTCOME,
                           _json(p.outcome_to_wire(p.TaskOutcome(TaskResult(8, "ok"))))]}),
    ("Started", {"tasks": [[7, 1700000000.5], [8, 0]]}),
    ("Transferred", {"key": "k", "source": "w2", "size": 3, "start": 1.0, "end": 2.0,
                     "ok": True, "hash": "h", "reason": ""}),
    ("Kill", {"task_ids": [1, 2]}),
    ("FileHead", {"key": "k", "size": -1}),
    ("Heartbeat", {}),
]
ODD = [None, True, False, 0, -1, 2 ** 63, -(2 ** 63) - 1, 1.5, -0.5, math.inf, math.nan, "",
       "ok", "x", [], [1], ["a", "b"], {}, {"cores": 1}]


def _places(value, path=()):
    """The path of every value inside `value`, itself first."""
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _places(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _places(v, (*path, i))


def _replaced(body, path, new):
    body = copy.deepcopy(body)
    *outer, last = path
    for step in outer:
        body = body[step]
    body[last] = new
    return body


def _passes(check, value) -> bool:
    try:
        check(value)
    except schema.Bad:
        return False
    return True


def _variants(body):
    """`body`, each value in it replaced by each odd value, each dict's key dropped or one
    key added."""
    yield body
    for path in _places(body):
        if not path:
            continue
        for new in ODD:
            yield _replaced(body, path, new)
    for path in _places(body):
        inner = body
        for step in path:
            inner = inner[step]
        if isinstance(inner, dict):
            for key in inner:
                cut = copy.deepcopy(inner)
                del cut[key]
                yield _replaced(body, path, cut) if path else cut
            yield _replaced(body, path, {**inner, "evil": 1}) if path else {**inner, "evil": 1}


@pytest.mark.parametrize("name, good", GOOD, ids=[name for name, _ in GOOD])
def test_a_compiled_check_passes_exactly_what_its_check_passes(name, good):
    cls = p._TYPES[name]
    check = schema.js_object({k: cls.SCHEMA[k] for k in cls.REQUIRED},
                             {k: cls.SCHEMA[k] for k in cls.FIELDS - cls.REQUIRED})
    fast = schema.compiled(check)
    assert fast(good) and _passes(check, good)
    bad = 0
    for body in _variants(good):
        assert fast(body) == _passes(check, body), body
        bad += not fast(body)
    assert bad > len(good)


def test_a_message_the_compiled_check_refuses_is_named_by_the_check():
    good = p.encode(p.Run(_TASK))[5:]
    for _ in range(p.COMPILE_AFTER):  # then Run's check is compiled
        p.decode(good)
    assert p.Run in p._PASSES
    body = copy.deepcopy(_TASK)
    body["inputs"][0][3] = -2
    with pytest.raises(p.ProtocolError) as e:
        p.decode(p.encode(p.Run(body))[5:])
    assert str(e.value) == ("garbled message: Run.task.inputs[0][3] must be an integer from 0 "
                            "to 9223372036854775807")
