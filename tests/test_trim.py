"""Giving back what planning freed: a heap full of holes shrinks to what is still held."""

import subprocess
import sys

HOLES = """
import sys
from vinemake.common.trim import give_back_freed

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

held = []
made = [b"x" * 1500 + i.to_bytes(4, "little") for i in range(150_000)]  # ~220 MB, C heap
held = made[::100]  # one in a hundred stays, scattered through the heap
del made
before = rss_mb()
give_back_freed()
print(round(before - rss_mb()), len(held))
"""


def test_freed_pages_between_held_blocks_go_back_to_the_system():
    out = subprocess.run([sys.executable, "-c", HOLES], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    given_back, held = int(out[0]), int(out[1])
    assert held == 1500
    assert given_back > 100  # of ~220 MB freed, the pages around 1,500 held blocks
