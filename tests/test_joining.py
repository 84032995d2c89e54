"""What the manager makes of workers that join: names kept apart, the largest worker."""

from __future__ import annotations

import collections

from vinemake.common.spec import Resources
from vinemake.manager.joining import largest, unique_name


def test_two_live_workers_with_one_name_are_kept_apart():
    counts = collections.Counter()
    assert unique_name("w", {"x"}, counts) == "w"
    assert unique_name("w", {"w"}, counts) == "w#1"
    assert unique_name("w", {"w", "w#1", "w#2"}, counts) == "w#3"  # numbers never reused


def test_the_largest_worker_takes_the_most_of_each_resource_any_one_offers():
    assert largest([]) is None
    assert largest([Resources(cores=8, memory_mb=100), Resources(cores=2, disk_mb=500, gpus=1)]) \
        == Resources(cores=8, memory_mb=100, disk_mb=500, gpus=1)
