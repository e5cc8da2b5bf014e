"""Class names become indices into their sorted names."""

from __future__ import annotations

import numpy as np

from service.files.labels import encode
from tests.files.refusals import SETTINGS, refused


def test_names_become_indices_into_their_sorted_names() -> None:
    indices, names = encode(["b", "a", "b", "c"], ["y"], SETTINGS)
    assert names == ["a", "b", "c"] and indices.tolist() == [1, 0, 1, 2]
    assert indices.dtype == np.int64


def test_an_empty_name_is_named_by_its_row() -> None:
    refused(encode, ["a", "", "b"], ["body", "y"], SETTINGS, loc=["body", "y", 1],
            words="may not be empty")


def test_more_classes_than_the_limit() -> None:
    refused(encode, ["a", "b", "c", "d"], ["file", "y"], SETTINGS, loc=["file", "y"],
            words="4 distinct classes exceed the limit of 3 (TAPELINE_MAX_CLASSES)")


def test_a_typo_among_numbers_is_pointed_out() -> None:
    error = refused(encode, ["1", "2", "3", "4x"], ["y"], SETTINGS, loc=["y"],
                    words="exceed the limit")
    assert error.msg.endswith("if y holds numbers, '4x' (example 4) is not a number")


def test_too_many_classes_that_are_all_numbers_say_so() -> None:
    """A categorical upload of numbers (a regression target read as class names) is refused
    with the way out, not a 500 (Schemathesis found this: the hint looked for a non-number)."""
    error = refused(encode, ["1.5", "2", "-3e-300", "4"], ["file", "y"], SETTINGS,
                    loc=["file", "y"], words="exceed the limit")
    assert error.msg.endswith("every class name is a number: to read y as numbers "
                              "(a regression target), leave out target_type=categorical")
