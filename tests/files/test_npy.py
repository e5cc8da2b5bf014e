"""``.npy`` arrays: judged by their header (numbers only, never a pickle, shapes within the
limits) before their data is read straight into its buffer."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from service.files.npy import read_npy_data, read_npy_dataset, read_npy_header
from tests.files.refusals import LIMITS, refused
from tests.support.hostile import npy, npy_header, pickle_bomb


def read(content: bytes) -> tuple[np.ndarray, np.ndarray]:
    return read_npy_dataset(io.BytesIO(content), LIMITS)


def test_the_last_column_is_y() -> None:
    x, y = read(npy(np.arange(6.0).reshape(3, 2)))
    assert x.tolist() == [[0], [2], [4]] and y.tolist() == [1, 3, 5]


@pytest.mark.parametrize("array", [
    np.arange(6, dtype=np.int16).reshape(3, 2),
    np.arange(6, dtype=">f8").reshape(3, 2),
    np.asfortranarray(np.arange(6.0).reshape(3, 2)),
    np.arange(6, dtype=np.uint8).reshape(3, 2),
    np.array([[True, False]]),
])
def test_integers_big_endian_and_fortran_order_read_as_the_same_numbers(
        array: np.ndarray) -> None:
    x, y = read(npy(array))
    assert np.array_equal(np.column_stack([x, y]), array.astype(np.float64))
    assert x.dtype.kind == "f" and x.dtype.isnative


def test_float32_stays_float32() -> None:
    x, _ = read(npy(np.ones((2, 2), dtype=np.float32)))
    assert x.dtype == np.float32


def test_version_2_headers() -> None:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.arange(4.0).reshape(2, 2), version=(2, 0))
    assert read(buffer.getvalue())[1].tolist() == [1, 3]


def test_a_file_that_is_not_an_npy_array() -> None:
    refused(read, b"just some bytes", loc=["file"], words="header is malformed")
    refused(read, b"", loc=["file"], words="header is malformed")


def test_an_unsupported_format_version() -> None:
    refused(read, b"\x93NUMPY\x09\x00" + bytes(16), loc=["file"], words="version 9.0")


def test_a_pickle_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    objects = io.BytesIO()
    np.save(objects, np.array([[1, pickle_bomb(marker)]], dtype=object), allow_pickle=True)
    refused(read, objects.getvalue(), loc=["file"], words="python objects")
    refused(read, pickle_bomb(marker), loc=["file"], words="header is malformed")
    assert not marker.exists()


@pytest.mark.parametrize("descr", ["<U3", "<c16", [("a", "<f8"), ("b", "<f8")], "<M8[s]"])
def test_arrays_of_anything_but_numbers(descr: object) -> None:
    refused(read, npy_header((2, 2), descr) + bytes(64), loc=["file"],  # type: ignore[arg-type]
            words="expected a numeric array")


@pytest.mark.parametrize(("shape", "words"), [
    ((5,), "2-D array"), ((4, 1), "2-D array"), ((2, 2, 2), "2-D array"),
    ((101, 2), "101 examples exceed"), ((2, 6), "5 features exceed"),
    ((10**15, 2), "1000000000000000 examples exceed"),
])
def test_shapes_are_judged_from_the_header(shape: tuple[int, ...], words: str) -> None:
    refused(read, npy_header(shape) + bytes(64), loc=["file"], words=words)


def test_data_must_match_its_header() -> None:
    refused(read, npy_header((4, 2)) + bytes(8 * 7), loc=["file"], words="holds 56")
    refused(read, npy_header((4, 2)) + bytes(8 * 9), loc=["file"], words="holds 72")


def test_a_stream_shorter_or_longer_than_its_header_says() -> None:
    stream = io.BytesIO(npy_header((4,)) + bytes(8 * 3))
    header = read_npy_header(stream, ["file", "x"])
    assert header.shape == (4,) and header.nbytes == 32 and not header.fortran_order
    refused(read_npy_data, stream, header, ["file", "x"], loc=["file", "x"],
            words="ends after 24 of the 32 bytes")
    stream = io.BytesIO(npy_header((4,)) + bytes(8 * 5))
    header = read_npy_header(stream, ["file", "x"])
    refused(read_npy_data, stream, header, ["file", "x"], loc=["file", "x"],
            words="more data than its header declares")
