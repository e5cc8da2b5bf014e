"""``.npz`` archives: the directory and each member's declared size judged before anything is
parsed or inflated, members read as ``.npy`` arrays."""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from service.files import npz
from service.files.npz import read_npz_dataset
from tests.files.refusals import LIMITS, refused
from tests.support.hostile import (
    DEFLATED,
    STORED,
    honest_npz,
    npy,
    npy_header,
    npz_with_members,
    patched_member,
    zeros_bomb,
    zip_archive,
)


def read(content: bytes, target: str = "y") -> tuple[np.ndarray, np.ndarray]:
    return read_npz_dataset(io.BytesIO(content), target, LIMITS)


def test_x_and_y() -> None:
    x, y = read(honest_npz(x=np.arange(6.0).reshape(3, 2), y=np.arange(3.0)))
    assert x.tolist() == [[0, 1], [2, 3], [4, 5]] and y.tolist() == [0, 1, 2]


def test_a_flat_x_is_one_feature_and_compression_is_read() -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=np.arange(3, dtype=np.int32), y=np.ones(3, ">f4"))
    x, y = read(buffer.getvalue())
    assert x.tolist() == [[0], [1], [2]] and y.tolist() == [1, 1, 1]


def test_the_target_names_y_and_the_one_other_array_is_x() -> None:
    x, y = read(honest_npz(features=np.zeros((2, 2)), label=np.ones(2)), "label")
    assert x.shape == (2, 2) and y.tolist() == [1, 1]


def test_a_member_that_lies_about_its_size_is_not_inflated_past_it() -> None:
    header = npy_header((4,))
    data = zlib.compress(header + bytes(32) + bytes(1_000_000), 9)[2:-4]  # raw deflate
    y = npy(np.arange(4.0))
    lying = zip_archive([("x.npy", data, DEFLATED, zlib.crc32(header + bytes(32)),
                          len(header) + 32, 0),
                         ("y.npy", y, STORED, zlib.crc32(y), len(y), 0)])
    x, _ = read(lying)
    assert x.tolist() == [[0], [0], [0], [0]]


def test_a_file_that_is_not_a_zip() -> None:
    refused(read, b"not a zip at all", loc=["file"], words="no zip directory found")


def test_a_zip64_archive() -> None:
    content = bytearray(honest_npz(x=np.zeros(2), y=np.zeros(2)))
    at = content.rfind(b"PK\x05\x06")
    content[at - 20 : at - 16] = b"PK\x06\x07"  # a zip64 locator before the directory's end
    refused(read, bytes(content), loc=["file"], words="zip64")


def test_an_archive_of_many_members_is_refused_before_its_directory_is_read() -> None:
    content = npz_with_members(**{f"a{i}.npy": b"" for i in range(npz.MAX_ZIP_MEMBERS + 1)})
    refused(read, content, loc=["file"], words=f"lists {npz.MAX_ZIP_MEMBERS + 1} members")


def test_a_damaged_archive() -> None:
    content = bytearray(honest_npz(x=np.arange(3.0), y=np.arange(3.0)))
    content[3] = 0x05  # the first member's local header loses its signature
    refused(read, bytes(content), loc=["file"], words="it is damaged")


def test_members_that_are_not_arrays_or_appear_twice() -> None:
    content = npz_with_members(**{"x.npy": npy(np.zeros(2)), "y.npy": npy(np.zeros(2)),
                                  "notes.txt": b"hi"})
    refused(read, content, loc=["file", "notes.txt"], words="not an .npy array")
    y = npy(np.zeros(2))
    twice = zip_archive([("y.npy", y, STORED, zlib.crc32(y), len(y), 0)] * 2)
    refused(read, twice, loc=["file", "y"], words="appears twice")


def test_the_target_and_x_must_be_there() -> None:
    refused(read, honest_npz(x=np.zeros(2), label=np.zeros(2)), loc=["target"],
            words="key 'y' is not in the archive")
    refused(read, honest_npz(y=np.zeros(2)), loc=["file"], words="needs an 'x' array")
    refused(read, honest_npz(a=np.zeros(2), b=np.zeros(2), y=np.zeros(2)), loc=["file"],
            words="needs an 'x' array")


def test_encrypted_members_and_unknown_compression() -> None:
    content = honest_npz(x=np.arange(3.0), y=np.arange(3.0))
    refused(read, patched_member(content, "y.npy", flags=1), loc=["file", "y"],
            words="encrypted")
    refused(read, patched_member(content, "x.npy", method=99), loc=["file", "x"],
            words="compression method 99")


def test_a_zip_bomb_is_refused_by_its_declared_size(tmp_path: Path) -> None:
    bomb = zeros_bomb(tmp_path / "bomb.npz").read_bytes()
    refused(read, bomb, loc=["file", "x"], words="declares 2147483776 bytes")


def test_the_inflation_ratio_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(npz, "INFLATION_FLOOR", 100)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", npy(np.zeros(100)))
        archive.writestr("y.npy", npy(np.zeros(100)))
    monkeypatch.setattr(npz, "MAX_INFLATION", 2)
    refused(read, buffer.getvalue(), loc=["file", "x"], words="would inflate")


def test_a_member_whose_header_disagrees_with_its_zip_entry() -> None:
    x = npy_header((4,)) + bytes(8 * 5)  # one number more than the header says
    y = npy(np.zeros(4))
    content = zip_archive([("x.npy", x, STORED, zlib.crc32(x), len(x), 0),
                           ("y.npy", y, STORED, zlib.crc32(y), len(y), 0)])
    refused(read, content, loc=["file", "x"], words="its zip entry declares")


def test_members_holding_raw_bytes_or_objects() -> None:
    content = npz_with_members(**{"x.npy": b"just some bytes", "y.npy": npy(np.zeros(2))})
    refused(read, content, loc=["file", "x"], words="not a readable .npy array")
    content = npz_with_members(**{"x.npy": npy(np.array(["a", "b"])), "y.npy": npy(np.zeros(2))})
    refused(read, content, loc=["file", "x"], words="expected a numeric array")


def test_shapes_are_judged_before_reading() -> None:
    refused(read, honest_npz(x=np.zeros((3, 2)), y=np.zeros(4)), loc=["file", "y"],
            words="x has 3 examples but y has 4")
    refused(read, honest_npz(x=np.zeros((2, 2, 2)), y=np.zeros(2)), loc=["file", "x"],
            words="1-D or 2-D")
    refused(read, honest_npz(x=np.zeros((2, 2)), y=np.zeros((2, 1))), loc=["file", "y"],
            words="flat list of numbers")
    refused(read, honest_npz(x=np.zeros((2, 5)), y=np.zeros(2)), loc=["file", "x"],
            words="5 features exceed")
