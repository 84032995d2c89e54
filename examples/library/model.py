"""The examples/library workflow's library: a slow preamble, then cheap function calls."""

import time

# Stands in for loading a large model: paid once per library instance, not once per call.
time.sleep(1)


def count_words(source, target):
    """Write the number of words in `source` to `target`."""
    with open(source) as f:
        words = len(f.read().split())
    with open(target, "w") as f:
        f.write(f"{words}\n")
