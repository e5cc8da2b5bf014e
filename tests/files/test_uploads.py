"""A dataset upload is read by its file name (or a CSV media type); anything else is a 415."""

from __future__ import annotations

import io

import numpy as np
import pytest

from service.files.errors import UnsupportedFile
from service.files.uploads import parse_upload
from tests.files.refusals import SETTINGS
from tests.support.hostile import honest_npz, npy


@pytest.mark.parametrize(("name", "content_type", "content"), [
    ("d.csv", None, b"a,y\n1,2\n3,4\n"),
    ("D.CSV", "application/octet-stream", b"a,y\n1,2\n3,4\n"),
    ("data", "text/csv", b"a,y\n1,2\n3,4\n"),
    ("data.txt", "application/csv", b"a,y\n1,2\n3,4\n"),
    ("d.npy", None, npy(np.array([[1.0, 2.0], [3.0, 4.0]]))),
    ("d.npz", None, honest_npz(x=np.array([1.0, 3.0]), y=np.array([2.0, 4.0]))),
])
def test_each_kind_of_file_gives_the_same_dataset(name: str, content_type: str | None,
                                                  content: bytes) -> None:
    file = io.BytesIO(content)
    file.seek(len(content))  # the parser reads from the start, wherever the stream was left
    x, y = parse_upload(name, content_type, file, "y", SETTINGS)
    assert x.tolist() == [[1], [3]] and y.tolist() == [2, 4]


@pytest.mark.parametrize(("name", "content_type"), [
    ("d.json", "application/json"), ("d", None), ("d.npy.exe", None), ("", None),
])
def test_any_other_file_is_unsupported(name: str, content_type: str | None) -> None:
    with pytest.raises(UnsupportedFile) as caught:
        parse_upload(name, content_type, io.BytesIO(b"x,y\n1,2\n"), "y", SETTINGS)
    assert caught.value.status == 415
    assert caught.value.detail == (f"unsupported file {name!r}: upload a .csv (with a header "
                                   "row), .npy or .npz file")
