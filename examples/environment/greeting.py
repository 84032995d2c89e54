"""A module the host's Python does not have: only the packed environment holds it."""

WORDS = "hello from inside the environment"
