"""What the manager makes of workers that join: names kept apart, the largest worker, which
refusals are said."""

from __future__ import annotations

import collections

from vinemake.common.spec import Resources
from vinemake.manager.joining import Refusals, largest, unique_name


def test_two_live_workers_with_one_name_are_kept_apart():
    counts = collections.Counter()
    assert unique_name("w", {"x"}, counts) == "w"
    assert unique_name("w", {"w"}, counts) == "w#1"
    assert unique_name("w", {"w", "w#1", "w#2"}, counts) == "w#3"  # numbers never reused


def test_the_largest_worker_takes_the_most_of_each_resource_any_one_offers():
    assert largest([]) is None
    assert largest([Resources(cores=8, memory_mb=100), Resources(cores=2, disk_mb=500, gpus=1)]) \
        == Resources(cores=8, memory_mb=100, disk_mb=500, gpus=1)


def test_a_refusal_repeated_within_the_quiet_time_is_counted_not_said():
    R = "refused connection from "
    now = [0.0]
    r = Refusals(quiet_s=10, clock=lambda: now[0])
    assert r.note("10.0.0.9", "garbled message") == R + "10.0.0.9: garbled message"
    assert [r.note("10.0.0.9", "garbled message") for _ in range(3)] == [None] * 3
    # another address or another reason is news
    assert r.note("10.0.0.8", "garbled message") == R + "10.0.0.8: garbled message"
    assert r.note("10.0.0.9", "wrong password") == R + "10.0.0.9: wrong password"
    now[0] = 10.5
    assert r.note("10.0.0.9", "garbled message") == \
        R + "10.0.0.9: garbled message (3 more like it since not shown)"
    assert r.note("10.0.0.9", "garbled message") is None
    assert r.flush() == [R + "10.0.0.9: garbled message (1 more like it not shown)"]
    assert r.flush() == []
