"""The bodies of batch predictions sent as files: a CSV table of features, or an ``.npy`` array
of rows read as a view of the body's bytes; every problem names the ``body``."""

from __future__ import annotations

import numpy as np
import pytest

from service.files.predict_bodies import CSV, parse, read_csv, read_npy
from tests.files.refusals import LIMITS, SETTINGS, refused
from tests.support.hostile import npy, npy_header


def test_a_csv_body() -> None:
    header, x = read_csv(b"x0,x1\n0.5,1.0\n\n1.5,-2.0\n", LIMITS)
    assert header == ["x0", "x1"] and x.tolist() == [[0.5, 1], [1.5, -2]]


def test_csv_problems_name_the_body() -> None:
    refused(read_csv, b"a,b\n1,x\n", LIMITS, loc=["body", "line 2", "b"], words="not a number")
    refused(read_csv, b"a,b\n1,2,3\n", LIMITS, loc=["body", "line 2"], words="has 3 fields")
    refused(read_csv, b"", LIMITS, loc=["body"], words="needs a header row")
    refused(read_csv, b"a,b\n", LIMITS, loc=["body"], words="at least one row of inputs")
    refused(read_csv, b"a,b,c,d,e\n1,2,3,4,5\n", LIMITS, loc=["body"], words="5 features")
    rows = "".join(f"{i}\n" for i in range(101))
    refused(read_csv, f"a\n{rows}".encode(), LIMITS, loc=["body"], words="101 examples")


@pytest.mark.parametrize("array", [
    np.arange(6.0).reshape(3, 2), np.arange(6, dtype=np.float32).reshape(3, 2),
    np.asfortranarray(np.arange(6.0).reshape(3, 2)), np.arange(3, dtype=np.int64),
])
def test_an_npy_body_is_a_view_of_its_bytes(array: np.ndarray) -> None:
    body = npy(array)
    rows = read_npy(body, LIMITS)
    assert np.array_equal(rows, array.reshape(len(array), -1)) and rows.dtype == array.dtype
    assert not rows.flags.owndata  # no copy of the body


def test_npy_problems_name_the_body() -> None:
    refused(read_npy, b"just bytes", LIMITS, loc=["body"], words="header is malformed")
    refused(read_npy, npy(np.zeros((0, 2))), LIMITS, loc=["body"], words="non-empty 1-D or 2-D")
    refused(read_npy, npy(np.zeros((2, 2, 2))), LIMITS, loc=["body"], words="1-D or 2-D")
    refused(read_npy, npy_header((2, 5)) + bytes(80), LIMITS, loc=["body"], words="5 features")
    refused(read_npy, npy_header((2, 2)) + bytes(24), LIMITS, loc=["body"],
            words="describes 32 bytes of data but it holds 24")
    refused(read_npy, npy(np.array([[1.0, 2.0], [np.nan, 0.0]])), LIMITS, loc=["body", 1],
            words="finite")


def test_parse_by_media_type() -> None:
    x, header = parse(CSV, b"a\n1\n2\n", SETTINGS)
    assert header == ["a"] and x.tolist() == [[1], [2]]
    x, header = parse("application/octet-stream", memoryview(npy(np.ones(2))), SETTINGS)
    assert header is None and x.tolist() == [[1], [1]]
