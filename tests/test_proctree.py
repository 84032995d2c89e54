"""Finding the processes a command started: the pid rule, the counter's wrap, real trees."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil
import pytest

from vinemake.worker.proctree import (
    Lineage,
    ProcessTrees,
    children_of,
    descendants,
    pid_range,
)


def test_only_pids_from_the_oldest_command_to_the_counter_are_read():
    lineages = [Lineage.of(500), Lineage.of(420), Lineage.of(900)]
    assert pid_range(lineages, 950) == (420, 950)
    assert pid_range([], 950) == (0, None)


def test_a_command_that_lived_through_a_wrap_has_every_process_read():
    assert pid_range([Lineage.of(500), Lineage(900, 900, wrapped=True)], 950) == (0, None)


def test_without_the_counter_there_is_no_bound():
    assert pid_range([Lineage.of(500)], None) == (0, None)


def test_the_counter_going_down_is_a_wrap():
    lineage = Lineage.of(500)
    lineage.advance(700)
    assert (lineage.counter, lineage.wrapped) == (700, False)
    lineage.advance(650)
    assert lineage.wrapped
    lineage.advance(800)
    assert lineage.wrapped  # once wrapped, always: its pids may be anything from then on


def test_a_counter_the_kernel_does_not_give_counts_as_a_wrap():
    lineage = Lineage.of(500)
    lineage.advance(None)
    assert lineage.wrapped


def test_descendants_go_down_every_generation_and_no_further():
    parents = {10: 1, 11: 10, 12: 10, 13: 11, 14: 13, 20: 1, 21: 20}
    assert sorted(descendants(children_of(parents), 10)) == [11, 12, 13, 14]
    assert descendants(children_of(parents), 14) == []
    assert descendants(children_of(parents), 99) == []


@pytest.fixture
def tree():
    """A command with two children, one of which has a child: (leader pid, the three)."""
    proc = subprocess.Popen(
        ["/bin/sh", "-c", "sleep 60 & sh -c 'sleep 60; true' & wait"], process_group=0)
    leader = psutil.Process(proc.pid)
    deadline = time.monotonic() + 10
    while len(leader.children(recursive=True)) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    below = {p.pid for p in leader.children(recursive=True)}
    assert len(below) == 3
    yield proc.pid, below
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_the_processes_under_a_running_command_are_found(tree):
    pid, below = tree
    lineage = Lineage.of(pid)
    assert set(ProcessTrees().trees([lineage])[pid]) == below
    assert not lineage.wrapped


def test_after_a_wrap_every_process_is_read_and_the_tree_still_found(tree, tmp_path):
    pid, below = tree
    counter = tmp_path / "ns_last_pid"
    counter.write_text("300\n")  # lower than the command's pid: the counter went round
    lineage = Lineage(pid, pid + 10)
    assert set(ProcessTrees(counter=str(counter)).trees([lineage])[pid]) == below
    assert lineage.wrapped
    assert pid_range([lineage], 300) == (0, None)


def test_without_the_counter_every_process_is_read(tree, tmp_path):
    pid, below = tree
    lineage = Lineage.of(pid)
    trees = ProcessTrees(counter=str(tmp_path / "missing")).trees([lineage])
    assert set(trees[pid]) == below
    assert lineage.wrapped


def test_several_commands_are_told_apart_in_one_pass(tree):
    pid, below = tree
    other = subprocess.Popen(["/bin/sh", "-c", "sleep 60 & wait"], process_group=0)
    try:
        deadline = time.monotonic() + 10
        while not psutil.Process(other.pid).children() and time.monotonic() < deadline:
            time.sleep(0.01)
        theirs = {p.pid for p in psutil.Process(other.pid).children()}
        trees = ProcessTrees().trees([Lineage.of(pid), Lineage.of(other.pid)])
        assert set(trees[pid]) == below
        assert set(trees[other.pid]) == theirs
    finally:
        os.killpg(other.pid, signal.SIGKILL)
        other.wait()


def test_a_command_without_children_has_none():
    proc = subprocess.Popen(["sleep", "60"])
    try:
        assert ProcessTrees().trees([Lineage.of(proc.pid)]) == {proc.pid: []}
    finally:
        proc.kill()
        proc.wait()
