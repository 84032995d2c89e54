"""Annotations read from words into RuleSpec fields, and their errors with offsets."""

from __future__ import annotations

import pytest

from vinemake.language.annotations import RESOURCE_VALUES, AnnotationError, read_annotation
from vinemake.language.expand import scan_words


def read(name: str, args: str = "") -> dict:
    fields: dict = {}
    read_annotation(name, scan_words(args), fields)
    return fields


def test_every_annotation():
    assert read("resources", "cores=1.5 memory=512MB disk=2GiB gpus=2 wall_time=2h") == {
        "resources": {"cores": 1.5, "memory_mb": 512, "disk_mb": 2147, "gpus": 2,
                      "wall_time_s": 7200.0}}
    assert read("retries", "0") == {"retries": 0}
    assert read("retries", "100") == {"retries": 100}  # the bound itself
    assert read("temp") == {"temp": True}
    assert read("cache", "forever") == {"cache_forever": True}
    assert read("library", "ml slots=4") == {"library": "ml", "library_slots": 4}
    assert read("library", "ml") == {"library": "ml"}
    assert read("call", "ml") == {"call": "ml"}


def test_bare_sizes_are_megabytes_and_durations_seconds():
    assert read("resources", "memory=100 wall_time=90") == {
        "resources": {"memory_mb": 100, "wall_time_s": 90.0}}


@pytest.mark.parametrize(("name", "args", "offset", "message"), [
    ("nope", "", None, "unknown annotation '@nope' (expected one of @resources, @retries, "
                       "@temp, @cache, @library, @call, @mini, @environment)"),
    ("resources", "", None, "@resources needs key=value pairs (cores, memory, disk, gpus, "
                            "wall_time)"),
    ("resources", "cores", 0, "bad cores value '': expected a number of cores"),
    ("resources", "cores=-1", 0, "bad cores value '-1': expected a number of cores"),
    ("resources", "gpus=1.5", 0, "bad gpus value '1.5': expected a whole number of GPUs"),
    ("retries", "1 2", 0, "@retries needs one whole number, like @retries 3"),
    ("temp", "yes", 0, "@temp takes no arguments"),
    ("cache", "", None, "@cache takes one word: @cache forever"),
    ("library", "slots=2", None, "@library needs a NAME, like @library ml slots=4"),
    ("library", "ml cores=2", 3, "unknown key 'cores' for @library (expected slots)"),
    ("call", "a b", 2, "@call needs exactly one library NAME, like @call ml"),
])
def test_errors(name, args, offset, message):
    with pytest.raises(AnnotationError) as info:
        read(name, args)
    assert (info.value.offset, info.value.message) == (offset, message)


def test_resource_variables_cover_the_keywords():
    from vinemake.language import keywords
    assert set(keywords.RESOURCE_VARIABLES) <= set(RESOURCE_VALUES)
