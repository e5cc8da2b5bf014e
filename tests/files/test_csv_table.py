"""CSV tables read a block of lines at a time: numbers, a text target column, and a refusal
naming the line and column at fault for everything else."""

from __future__ import annotations

import io

import numpy as np
import pytest

from service.files import csv_table
from service.files.csv_table import (
    exact_block,
    fast_block,
    line_blocks,
    read_csv_dataset,
    read_header,
)
from tests.files.refusals import LIMITS, refused


def read(content: bytes, target: str = "y") -> tuple[np.ndarray, np.ndarray]:
    return read_csv_dataset(io.BytesIO(content), target, LIMITS)


def test_numbers_with_the_target_anywhere() -> None:
    x, y = read(b"a,y,b\n1,2,3\n4.5,-6e3,7\n")
    assert x.tolist() == [[1, 3], [4.5, 7]] and y.tolist() == [2, -6000]
    assert x.dtype == y.dtype == np.float64


def test_blank_lines_quotes_crlf_and_a_byte_order_mark() -> None:
    x, y = read(b'\xef\xbb\xbf\r\n"a" , y \r\n\r\n"1",2\r\n3,"4"\r\n\r\n')
    assert x.tolist() == [[1], [3]] and y.tolist() == [2, 4]


def test_a_target_of_text_is_kept_as_text() -> None:
    x, y = read(b"petal,species\n1.4,setosa\n4.7,versicolor\n", "species")
    assert x.tolist() == [[1.4], [4.7]]
    assert y.dtype.kind == "U" and y.tolist() == ["setosa", "versicolor"]


def test_many_blocks_keep_every_row_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_table, "CSV_BLOCK", 16)  # a few lines per block
    rows = "".join(f"{i},{2 * i}\n" for i in range(50))
    x, y = read(f"a,y\n{rows}".encode())
    assert x[:, 0].tolist() == list(range(50)) and y.tolist() == [2 * i for i in range(50)]


def test_a_file_that_is_not_utf8() -> None:
    refused(read, b"a,y\n1,\xff\xfe\n", loc=["file"], words="UTF-8")


def test_a_file_without_a_header_or_a_row() -> None:
    refused(read, b"", loc=["file"], words="needs a header row")
    refused(read, b"\n\n", loc=["file"], words="needs a header row")
    refused(read, b"a,y\n", loc=["file"], words="at least one data row")


def test_a_header_longer_than_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_table, "CSV_HEADER", 8)
    refused(read, b"aaaa,bbbb,y\n1,2,3\n", loc=["file", "line 1"], words="longer than 8")


def test_a_header_that_is_not_csv() -> None:
    field = b"a" * 140_000  # past the csv module's field limit
    refused(read, field + b",y\n1,2\n", loc=["file", "line 1"], words="not valid CSV")


def test_a_target_not_in_the_header() -> None:
    refused(read, b"a,b\n1,2\n", loc=["target"], words="column 'y' is not in the CSV header")


def test_a_target_alone() -> None:
    refused(read, b"y\n1\n", loc=["file"], words="at least one feature column")


def test_a_row_of_the_wrong_width() -> None:
    refused(read, b"a,y\n1,2\n3,4,5\n", loc=["file", "line 3"], words="has 3 fields")


def test_a_feature_that_is_not_a_number() -> None:
    refused(read, b"a,y\n1,2\nx1,2\n", loc=["file", "line 3", "a"], words="'x1' is not a number")


def test_a_value_that_is_not_finite() -> None:
    refused(read, b"a,y\n1,2\ninf,2\n", loc=["file", "line 3", "a"], words="finite")
    refused(read, b"a,y\n1,nan\n", loc=["file", "line 2", "y"], words="finite")


def test_a_cell_past_the_csv_modules_limit() -> None:
    refused(read, b"a,y\n1,2\n" + b"a" * 140_000 + b",3\n", loc=["file", "line 3"],
            words="not valid CSV")


def test_the_limits() -> None:
    refused(read, b"a,b,c,d,e,y\n1,2,3,4,5,6\n", loc=["file"], words="5 features exceed")
    rows = "".join(f"{i},{i}\n" for i in range(101))
    refused(read, f"a,y\n{rows}".encode(), loc=["file"], words="101 examples exceed")


def test_the_header_and_its_blocks() -> None:
    text = io.StringIO("\n a , b \n1,2\n3,4\n")
    header, first_line = read_header(text)
    assert header == ["a", "b"] and first_line == 3
    assert list(line_blocks(text, first_line)) == [(3, ["1,2\n", "3,4\n"])]


def test_the_fast_reader_leaves_anything_unusual_to_the_exact_one() -> None:
    x, y = fast_block(["1,2,3\n", "4,5,6\n"], 3, column=1)  # type: ignore[misc]
    assert x.tolist() == [[1, 3], [4, 6]] and y.tolist() == [2, 5]
    assert fast_block(["1,2\n"], 3) is None  # another width
    assert fast_block(["1,x,3\n"], 3) is None  # not a number
    assert fast_block(["1,inf,3\n"], 3) is None  # not finite
    assert fast_block(["\n", "1,2,3\n"], 3) is None  # a blank line first


def test_the_exact_reader_of_features_only() -> None:
    x, y = exact_block(["1,2\n", "\n", "3,4\n"], 2, ["a", "b"])
    assert x.tolist() == [[1, 2], [3, 4]] and len(y) == 0
