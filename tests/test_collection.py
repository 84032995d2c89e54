"""The -g policy as plain decisions: how many collectible files go, given the run's state."""

from __future__ import annotations

import pytest

from vinemake.core.collection import DEFAULT_MIN_FREE, Collection

PLENTY = lambda: 1 << 40  # noqa: E731 - a disk with room to spare


def no_disk_question():
    raise AssertionError("only on_demand asks the disk")


@pytest.mark.parametrize("policy,expected", [
    (Collection("none"), 0),
    (Collection("ref_cnt"), 5),
    (Collection("ref_cnt", 2), 2),
    (Collection("ref_cnt", 0), 0),
    (Collection("all"), 5),
    (Collection("all", 1), 5),  # -G means nothing to `all`, as in Makeflow
])
def test_modes_that_never_ask_the_disk(policy, expected):
    assert policy.how_many(5, 100, no_disk_question) == expected


def test_on_demand_waits_for_more_than_count_files():
    assert Collection("on_demand", 3).how_many(2, 3, PLENTY) == 0
    assert Collection("on_demand", 3).how_many(2, 4, PLENTY) == 2
    assert Collection("on_demand").how_many(2, 16, PLENTY) == 0  # Makeflow's default: 16
    assert Collection("on_demand").how_many(2, 17, PLENTY) == 2


def test_on_demand_collects_when_the_disk_is_low():
    assert Collection("on_demand", 100).how_many(3, 1, lambda: DEFAULT_MIN_FREE) == 3
    assert Collection("on_demand", 100).how_many(3, 1, lambda: DEFAULT_MIN_FREE + 1) == 0
    assert Collection("on_demand", 100, 5000).how_many(3, 1, lambda: 5000) == 3


def test_nothing_collectible_asks_nothing():
    assert Collection("on_demand", 0).how_many(0, 100, no_disk_question) == 0
