"""Text that cannot be stored or sent (a lone UTF-16 surrogate) is a 422 at every entry point,
on SQLite and PostgreSQL, and nothing is stored: JSON bodies (a string field with a pattern,
one without, a key), CSV files, multipart names and file names, and imported model files."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

JSON = {"content-type": "application/json"}


def refused(answer: Any, loc: list[Any]) -> None:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["errors"][0]["loc"] == loc


def counts(client: TestClient) -> tuple[int, int]:
    return (len(client.get("/v1/datasets", params={"limit": 1000}).json()["items"]),
            len(client.get("/v1/models", params={"limit": 1000}).json()["items"]))


BODIES = {
    "a dataset's labels": ("/v1/datasets", rb'{"x": [1, 2], "y": ["\ud800", "a"]}',
                           ["body", "y", 0]),
    "a model's name": ("/v1/models", rb'{"kind": "linear", "name": "ab\udfff"}',
                       ["body", "name"]),
    "a key": ("/v1/models", rb'{"kind": "linear", "\ud83d": 1}', ["body"]),
    "a synthetic dataset's name": ("/v1/datasets/synthetic", rb'{"name": "\uDC00x"}',
                                   ["body", "name"]),
}


@pytest.mark.parametrize("case", list(BODIES))
def test_json_bodies(each_store: TestClient, case: str) -> None:
    path, body, loc = BODIES[case]
    before = counts(each_store)
    refused(each_store.post(path, content=body, headers=JSON), loc)
    assert counts(each_store) == before


def test_a_large_json_body_decoded_in_another_process(each_store: TestClient) -> None:
    labels = b", ".join([b'"a"'] * 20_000 + [rb'"\udfff"'])  # past 64 KiB: decoded apart
    body = b'{"x": [' + b", ".join([b"1"] * 20_001) + b'], "y": [' + labels + b"]}"
    before = counts(each_store)
    refused(each_store.post("/v1/datasets", content=body, headers=JSON), ["body", "y", 20_000])
    assert counts(each_store) == before


def test_a_pair_of_surrogates_is_a_character(each_store: TestClient) -> None:
    made = each_store.post("/v1/models", content=rb'{"name": "\ud83d\ude00"}', headers=JSON)
    assert made.status_code == 201 and made.json()["name"] == "\U0001f600"


def test_a_csv_file(each_store: TestClient) -> None:
    answer = each_store.post("/v1/datasets/upload", files={
        "file": ("d.csv", b"a,y\n1,\xed\xa0\x80\n2,b\n", "text/csv")})  # a CESU-8 surrogate
    assert answer.status_code == 422 and "UTF-8" in answer.json()["detail"]


def multipart(file_name: bytes, fields: dict[bytes, bytes], content: bytes) -> bytes:
    parts = [b'--XX\r\nContent-Disposition: form-data; name="file"; filename="' + file_name
             + b'"\r\nContent-Type: application/octet-stream\r\n\r\n' + content + b"\r\n"]
    parts += [b'--XX\r\nContent-Disposition: form-data; name="' + name + b'"\r\n\r\n' + value
              + b"\r\n" for name, value in fields.items()]
    return b"".join(parts) + b"--XX--\r\n"


# A part's charset decides how its names are decoded: unicode_escape makes \ud800 a surrogate.
ESCAPED = {"content-type": "multipart/form-data; boundary=XX; charset=unicode_escape"}
CSV = b"a,y\n1,2\n3,4\n"
MODEL = b'{"format": "tapeline.model/1", "kind": "linear", "config": {"features": 1}, ' \
        b'"params": {"W": [3.0], "b": 2.0}}'
PARTS = {
    "an upload's file name": ("/v1/datasets/upload", multipart(b"d\\ud800.csv", {}, CSV),
                              ["body", "file"]),
    "an upload's name": ("/v1/datasets/upload",
                         multipart(b"d.csv", {b"name": b"n\\ud800"}, CSV), ["body", "name"]),
    "an upload's target": ("/v1/datasets/upload",
                           multipart(b"d.csv", {b"target": b"\\udfff"}, CSV),
                           ["body", "target"]),
    "an import's file name": ("/v1/models/import", multipart(b"m\\udc00.json", {}, MODEL),
                              ["body", "file"]),
    "an import's name": ("/v1/models/import", multipart(b"m.json", {b"name": b"\\ud800"}, MODEL),
                         ["body", "name"]),
    "an upload's description": ("/v1/datasets/upload",
                                multipart(b"d.csv", {b"description": b"n\\udc00"}, CSV),
                                ["body", "description"]),
}


@pytest.mark.parametrize("case", list(PARTS))
def test_multipart_names(each_store: TestClient, case: str) -> None:
    path, body, loc = PARTS[case]
    before = counts(each_store)
    refused(each_store.post(path, content=body, headers=ESCAPED), loc)
    assert counts(each_store) == before
    assert each_store.get("/v1/datasets").status_code == 200


def test_an_uploads_tags_field(each_store: TestClient) -> None:
    """The tags of an upload travel as JSON text in a form field: an escaped lone surrogate
    in them is refused too."""
    before = counts(each_store)
    for tags in (rb'{"team": "\ud800"}', rb'{"\udfff": "cv"}'):
        answer = each_store.post("/v1/datasets/upload", content=multipart(
            b"d.csv", {b"tags": tags}, CSV), headers={"content-type": "multipart/form-data; "
                                                                     "boundary=XX"})
        refused(answer, ["body", "tags"])
    assert counts(each_store) == before


def test_the_same_parts_without_surrogates_are_stored(each_store: TestClient) -> None:
    for path in ("/v1/datasets/upload", "/v1/models/import"):
        content = CSV if path.endswith("upload") else MODEL
        answer = each_store.post(path, content=multipart(b"f.csv", {b"name": b"caf\\u00e9"},
                                                         content), headers=ESCAPED)
        assert answer.status_code == 201 and answer.json()["name"] == "café", answer.text
