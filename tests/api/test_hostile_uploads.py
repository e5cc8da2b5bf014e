"""Hostile uploads, on SQLite and PostgreSQL: each is judged from its headers and declared sizes
before its data is read, refused with a 422 naming what is wrong, and stores nothing. Every
file here was a 500 (or worse) before uploads were judged before they were read."""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from service.files.uploads import parse_upload
from tests.support.hostile import (
    DEFLATED,
    STORED,
    honest_npz,
    npy,
    npy_header,
    npz_with_members,
    patched_member,
    pickle_bomb,
    zeros_bomb,
    zip_archive,
)


def refused(api: TestClient, name: str, content: bytes, *words: str,
            target: str = "y") -> dict[str, Any]:
    """Upload ``content`` as ``name``; assert a 422 problem naming ``words`` and nothing stored."""
    before = api.get("/v1/datasets", params={"limit": 1000}).json()["items"]
    answer = api.post("/v1/datasets/upload", files={"file": (name, content)},
                      data={"target": target})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = answer.json()
    for word in words:
        assert word.lower() in problem["detail"].lower(), problem["detail"]
    assert problem["errors"][0]["loc"][0] in ("file", "target")
    assert api.get("/v1/datasets", params={"limit": 1000}).json()["items"] == before
    return problem


# The seven malformed uploads of the hardening issue: each answered 500 on both stores.

def test_a_csv_field_over_the_csv_modules_limit(each_store: TestClient) -> None:
    content = b"x,y\n1,2\n" + b"a" * 140_000 + b",3\n"
    refused(each_store, "d.csv", content, "line 3")


def test_an_npy_header_declaring_a_petabyte(each_store: TestClient) -> None:
    content = npy_header((10**15, 2)) + bytes(64)
    refused(each_store, "d.npy", content, "1000000000000000 examples exceed the limit")


@pytest.mark.parametrize("member", ["x.npy", "y.npy"])
def test_npz_members_holding_raw_bytes(each_store: TestClient, member: str) -> None:
    arrays = {"x.npy": npy(np.arange(3.0)), "y.npy": npy(np.arange(3.0)),
              member: b"just some bytes, not an array"}
    refused(each_store, "d.npz", npz_with_members(**arrays), f"file.{member[0]}", "not a readable")


def test_an_npz_member_holding_a_pickle_is_never_unpickled(each_store: TestClient,
                                                           tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    content = npz_with_members(**{"x.npy": pickle_bomb(marker), "y.npy": npy(np.arange(2.0))})
    refused(each_store, "d.npz", content, "file.x")
    objects = io.BytesIO()
    np.save(objects, np.array([1, pickle_bomb(marker)], dtype=object), allow_pickle=True)
    refused(each_store, "d.npz", npz_with_members(**{"x.npy": objects.getvalue(),
                                                     "y.npy": npy(np.arange(2.0))}),
            "python objects")
    refused(each_store, "d.npy", objects.getvalue(), "python objects")
    assert not marker.exists()


def test_zip_compression_method_99(each_store: TestClient) -> None:
    content = patched_member(honest_npz(x=np.arange(3.0), y=np.arange(3.0)), "x.npy", method=99)
    refused(each_store, "d.npz", content, "file.x", "compression method 99")


def test_the_zip_encrypted_flag(each_store: TestClient) -> None:
    content = patched_member(honest_npz(x=np.arange(3.0), y=np.arange(3.0)), "y.npy", flags=1)
    refused(each_store, "d.npz", content, "file.y", "encrypted")


# Sizes judged before anything is inflated.

def test_a_zip_bomb_is_refused_by_its_declared_size(each_store: TestClient,
                                                   tmp_path: Path) -> None:
    bomb = zeros_bomb(tmp_path / "bomb.npz").read_bytes()
    assert len(bomb) < 3_000_000
    refused(each_store, "bomb.npz", bomb, "file.x", "declares 2147483776 bytes")


def test_a_member_that_lies_about_its_size_is_not_inflated_past_it(each_store: TestClient,
                                                                   tmp_path: Path) -> None:
    header = npy_header((4,))
    data = zlib.compress(header + bytes(32) + bytes(50_000_000), 9)[2:-4]  # raw deflate
    lying = zip_archive([("x.npy", data, DEFLATED, zlib.crc32(header + bytes(32)),
                          len(header) + 32, 0),
                         ("y.npy", npy(np.arange(4.0)), STORED,
                          zlib.crc32(npy(np.arange(4.0))), len(npy(np.arange(4.0))), 0)])
    answer = each_store.post("/v1/datasets/upload", files={"file": ("d.npz", lying)})
    # The declared 160 bytes are read and nothing more: a dataset of four zeros.
    assert answer.status_code == 201, answer.text
    assert answer.json()["num_examples"] == 4


def test_the_inflation_ratio_is_bounded(each_store: TestClient) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", npy(np.zeros((400_000, 2))))
        archive.writestr("y.npy", npy(np.zeros(400_000)))
    refused(each_store, "d.npz", buffer.getvalue(), "would inflate", "np.savez")


def test_an_archive_of_many_members_is_refused_before_its_directory_is_read(
        each_store: TestClient) -> None:
    content = npz_with_members(**{f"a{i}.npy": b"" for i in range(100)})
    refused(each_store, "d.npz", content, "lists 100 members")


@pytest.mark.parametrize(("shape", "words"), [
    ((2_000_001, 2), "examples exceed"), ((3, 1026), "features exceed"),
    ((1_000_000, 18), "values exceed"), ((5,), "2-d array"), ((4, 1), "2-d array"),
])
def test_npy_shapes_are_judged_from_the_header(each_store: TestClient,
                                               shape: tuple[int, ...], words: str) -> None:
    refused(each_store, "d.npy", npy_header(shape) + bytes(64), words)


def test_npy_data_must_match_its_header(each_store: TestClient) -> None:
    refused(each_store, "d.npy", npy_header((4, 2)) + bytes(8 * 7), "holds 56")
    refused(each_store, "d.npy", npy_header((4, 2)) + bytes(8 * 9), "holds 72")


def test_npz_shapes_are_judged_before_reading(each_store: TestClient) -> None:
    content = npz_with_members(**{"x.npy": npy(np.zeros((3, 2))), "y.npy": npy(np.zeros(4))})
    refused(each_store, "d.npz", content, "x has 3 examples but y has 4")
    content = npz_with_members(**{"x.npy": npy(np.zeros((2, 2, 2))), "y.npy": npy(np.zeros(2))})
    refused(each_store, "d.npz", content, "1-d or 2-d")


def test_npz_members_must_be_arrays_and_appear_once(each_store: TestClient) -> None:
    content = npz_with_members(**{"x.npy": npy(np.zeros(2)), "y.npy": npy(np.zeros(2)),
                                  "notes.txt": b"hi"})
    refused(each_store, "d.npz", content, "notes.txt", "not an .npy array")


# What honest files still do.

def test_big_endian_fortran_and_integer_arrays_are_read(each_store: TestClient) -> None:
    x = np.asfortranarray(np.arange(6, dtype=">f8").reshape(3, 2))
    content = honest_npz(x=x, y=np.array([1, 2, 3], dtype=np.int16))
    answer = each_store.post("/v1/datasets/upload", files={"file": ("d.npz", content)})
    assert answer.status_code == 201, answer.text
    data = each_store.get(f"/v1/datasets/{answer.json()['id']}/data").json()
    assert data == {"x": [[0, 1], [2, 3], [4, 5]], "y": [1, 2, 3]}


def test_a_csv_read_in_many_blocks_keeps_every_row(each_store: TestClient) -> None:
    rows = [f"{i},{i * 0.5},{2 * i + 1}" for i in range(30_000)]
    content = ("a,b,y\n" + "\n".join(rows) + "\n").encode()
    answer = each_store.post("/v1/datasets/upload", files={"file": ("d.csv", content)})
    assert answer.status_code == 201, answer.text
    data = each_store.get(f"/v1/datasets/{answer.json()['id']}/data").json()
    assert len(data["y"]) == 30_000 and data["x"][-1] == [29_999, 14_999.5]
    assert data["y"][:3] == [1, 3, 5]


def test_csv_problems_name_their_line_and_column(each_store: TestClient) -> None:
    rows = "".join(f"{i},{i}\n" for i in range(20_000))
    problem = refused(each_store, "d.csv", f"a,y\n{rows}1.5,2\n7,eight\n".encode(),
                      "'eight' is not a number, but the values before it are numbers",
                      "target_type=categorical")
    assert problem["errors"][0]["loc"] == ["file", "line 20003", "y"]
    problem = refused(each_store, "d.csv", f"a,y\n{rows}x1,2\n".encode(), "'x1' is not a number")
    assert problem["errors"][0]["loc"] == ["file", "line 20002", "a"]
    refused(each_store, "d.csv", f"a,y\n{rows}1,inf\n".encode(), "line 20002", "finite")


def test_a_text_target_column_reaches_the_caller_as_text() -> None:
    settings = Settings()
    content = b"petal,species\n1.4,setosa\n4.7,versicolor\n1.3,setosa\n"
    x, y = parse_upload("iris.csv", None, io.BytesIO(content), "species", settings)
    assert x.tolist() == [[1.4], [4.7], [1.3]]
    assert y.dtype.kind == "U" and y.tolist() == ["setosa", "versicolor", "setosa"]
    x, y = parse_upload("n.csv", None, io.BytesIO(b"a,y\n1,2\n"), "y", settings)
    assert y.dtype == np.float64 and y.tolist() == [2.0]


def test_a_text_target_becomes_class_names(each_store: TestClient) -> None:
    content = b"petal,species\n1.4,setosa\n4.7,versicolor\n"
    answer = each_store.post("/v1/datasets/upload", data={"target": "species"},
                             files={"file": ("iris.csv", content, "text/csv")})
    assert answer.status_code == 201, answer.text
    assert answer.json()["classes"] == ["setosa", "versicolor"]
