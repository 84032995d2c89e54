"""The handover between the manager's loop and other threads, with real threads: results
from the loop wait for the end of its turn, results from elsewhere go at once, the engine's
wait() ends with results, a crash or a provider's failure, and lost files are reported once."""

from __future__ import annotations

import threading

import pytest

from vinemake.common.errors import InfrastructureError
from vinemake.common.task import Task, TaskResult
from vinemake.manager.mailbox import INBOX_WAKE, RESULT_BATCH, SUBMIT_LATENCY_S, Mailbox


def ok(tid):
    return TaskResult(task_id=tid, status="ok")


def test_results_reported_by_the_loop_wait_for_the_end_of_its_turn():
    mb = Mailbox()
    mb.loop = threading.current_thread()
    mb.report([ok(1)])
    assert mb.wait(0) == []
    assert mb.publish(tasks_waiting=False) == SUBMIT_LATENCY_S
    assert mb.wait(0) == [ok(1)]


def test_a_full_batch_is_handed_over_even_while_tasks_wait():
    mb = Mailbox()
    mb.loop = threading.current_thread()
    mb.report([ok(i) for i in range(RESULT_BATCH)])
    mb.publish(tasks_waiting=True)
    assert len(mb.wait(0)) == RESULT_BATCH


def test_results_from_another_thread_wake_a_waiting_engine():
    mb = Mailbox()
    mb.loop = threading.Thread(target=lambda: None)  # not this one, nor the reporter
    reporter = threading.Thread(target=mb.report, args=([ok(7)],))
    reporter.start()
    assert mb.wait(30) == [ok(7)]
    reporter.join()


def test_the_loop_drains_tasks_and_posted_callables_in_order():
    mb = Mailbox()
    t = Task(id=1, rule_key="r", name="t", command="true")
    mb.submit(t)
    mb.post(print)
    tasks, events = mb.drain()
    assert (tasks, events, mb.inbox) == ([t], [print], [])
    assert mb.drain() == ([], [])


def woken(mb) -> bool:
    """Whether the loop's wake-up socket holds a byte (read, so the next check starts anew)."""
    try:
        return mb.wake_r.recv(4096) != b""
    except BlockingIOError:
        return False


def test_the_first_task_wakes_the_loop_and_later_ones_wait_for_a_full_inbox():
    mb = Mailbox()
    assert not woken(mb)
    mb.submit(Task(id=1, rule_key="r", name="t", command="true"))
    assert woken(mb)
    mb.drain()
    for i in range(2, INBOX_WAKE + 1):
        mb.submit(Task(id=i, rule_key="r", name="t", command="true"))
        assert not woken(mb)
    mb.submit(Task(id=INBOX_WAKE + 1, rule_key="r", name="t", command="true"))
    assert woken(mb)


def test_forgotten_keys_gather_until_the_loop_takes_them():
    mb = Mailbox()
    assert mb.forget(["a"]) is True  # the first of a batch: the caller posts the pass
    assert mb.forget(["b"]) is False
    assert mb.forget([]) is False
    assert mb.take_dead() == ["a", "b"]
    assert mb.forget([]) is False  # nothing to do: no pass


def test_wait_reports_a_crash_of_the_loop_and_a_failure_of_the_provider():
    mb = Mailbox()
    mb.fail(InfrastructureError("the batch system refuses"))
    with pytest.raises(InfrastructureError, match="refuses"):
        mb.wait(None)
    mb = Mailbox()
    mb.crash("KeyError: 'x'")
    with pytest.raises(InfrastructureError, match="the manager failed: KeyError: 'x'"):
        mb.wait(None)
    assert mb.close() is False  # a crashed loop is closed already


def test_close_wakes_the_engine():
    mb = Mailbox()
    closer = threading.Thread(target=mb.close)
    closer.start()
    assert mb.wait(None) == []  # returns: closed, nothing to hand over
    closer.join()
    assert mb.close() is False
