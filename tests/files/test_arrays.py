"""Client input as checked arrays: x as a matrix of rows, and a dataset's x and y checked
against the limits and for finite values."""

from __future__ import annotations

import numpy as np
import pytest

from service.files.arrays import check_dataset, matrix
from tests.files.refusals import SETTINGS, refused

Loc = list[str | int]
LOC: tuple[Loc, Loc] = (["body", "x"], ["body", "y"])


def test_a_flat_list_is_one_feature_and_rows_are_rows() -> None:
    assert matrix([1.0, 2.0], ["x"]).tolist() == [[1], [2]]
    assert matrix([[1.0, 2.0], [3.0, 4.0]], ["x"], features=2).tolist() == [[1, 2], [3, 4]]


def test_an_array_keeps_its_floats_and_widens_anything_else() -> None:
    assert matrix(np.ones(3, dtype=np.float32), ["x"]).dtype == np.float32
    ints = matrix(np.arange(4, dtype=np.int8).reshape(2, 2), ["x"])
    assert ints.dtype == np.float64 and ints.shape == (2, 2)


def test_ragged_rows_and_the_wrong_width() -> None:
    refused(matrix, [[1.0, 2.0], [3.0]], ["body", "x"], loc=["body", "x", 1],
            words="row 0 has 2 values, row 1 has 1")
    refused(matrix, [[1.0], 2.0], ["body", "x"], loc=["body", "x", 1], words="ragged")
    refused(matrix, [[1.0, 2.0]], ["body", "x"], 3, loc=["body", "x"],
            words="expected 3 feature(s) per row, got 2")


def test_a_dataset_within_the_limits() -> None:
    x, y = check_dataset(np.ones((3, 2)), np.array(["1", "2.5", "-3"]), SETTINGS, LOC)
    assert x.shape == (3, 2) and y.dtype == np.float64 and y.tolist() == [1, 2.5, -3]


@pytest.mark.parametrize(("x", "y", "loc", "words"), [
    (np.ones((0, 2)), np.ones(0), ["body", "x"], "at least one example"),
    (np.ones(3), np.ones(3), ["body", "x"], "at least one example"),
    (np.ones((2, 1)), np.array(["1", "b"]), ["body", "y"], "'b' (example 2) is not a number"),
    (np.ones((2, 1)), np.ones((2, 1)), ["body", "y"], "flat list of numbers"),
    (np.ones((2, 1)), np.ones(3), ["body", "y"], "x has 2 examples but y has 3"),
    (np.ones((101, 1)), np.ones(101), ["body", "x"], "101 examples exceed"),
    (np.ones((2, 5)), np.ones(2), ["body", "x"], "5 features exceed"),
    (np.ones((67, 3)), np.ones(67), ["body", "x"], "201 values exceed"),
    (np.array([[np.nan]]), np.ones(1), ["body", "x"], "finite numbers"),
    (np.ones((1, 1)), np.array([np.inf]), ["body", "y"], "finite numbers"),
    (np.array([[1e308], [-1e308]]), np.ones(2), ["body", "x"], "too large"),
])
def test_each_refusal(x: np.ndarray, y: np.ndarray, loc: Loc, words: str) -> None:
    refused(check_dataset, x, y, SETTINGS, LOC, loc=loc, words=words)
