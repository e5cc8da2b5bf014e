"""Batch predictions on files: CSV and .npy bodies, answers in JSON, CSV or .npy per Accept,
equal to the JSON answer; the same validation as JSON input."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.support.servers import sqlite_url

ROWS = 200_000


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app with the default 64 MiB body limit."""
    folder: Path = tmp_path_factory.mktemp("batch")
    settings = Settings(database_url=sqlite_url(folder), workers=1)
    with TestClient(create_app(settings), base_url="http://localhost",
                    raise_server_exceptions=False) as client:
        yield client


def created(answer: Any) -> dict[str, Any]:
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def csv_of(x: np.ndarray, names: list[str]) -> bytes:
    text = io.StringIO()
    np.savetxt(text, x, fmt="%.17g", delimiter=",", header=",".join(names), comments="")
    return text.getvalue().encode()


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    return np.random.default_rng(7).normal(size=(ROWS, 3))


@pytest.fixture(scope="module")
def regression(api: TestClient) -> str:
    return created(api.post("/v1/models", json={
        "kind": "mlp", "features": 3, "hidden": [8], "initial": {"random_seed": 3}}))["id"]


@pytest.fixture(scope="module")
def classifier(api: TestClient) -> str:
    data = created(api.post("/v1/datasets", json={
        "x": [[0, 0, 0], [1, 1, 1], [2, 2, 2]], "y": ["ant", "bee, the", "cat"]}))
    model = created(api.post("/v1/models", json={
        "kind": "logistic", "features": 3, "classes": 3, "initial": {"random_seed": 4}}))
    run = api.post(f"/v1/models/{model['id']}/runs", headers={"prefer": "wait=60"},
                   json={"dataset_id": data["id"], "epochs": 2})
    assert run.json()["status"] == "succeeded", run.text
    return str(model["id"])


def test_csv_and_npy_in_and_out_equal_the_json_answer(api: TestClient, inputs: np.ndarray,
                                                      regression: str) -> None:
    url = f"/v1/models/{regression}/predict"
    expected = api.post(url, json={"x": inputs.tolist()}).json()["y"]
    answer = api.post(url, content=csv_of(inputs, ["a", "b", "c"]),
                      headers={"content-type": "text/csv", "accept": "text/csv"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    lines = answer.text.splitlines()
    assert lines[0] == "y" and len(lines) == ROWS + 1
    assert [float(v) for v in lines[1:]] == expected
    answer = api.post(url, content=npy(inputs),
                      headers={"content-type": "application/octet-stream",
                               "accept": "application/octet-stream"})
    assert answer.status_code == 200, answer.text
    y = np.load(io.BytesIO(answer.content), allow_pickle=False)
    assert y.shape == (ROWS,) and y.tolist() == expected
    float32 = api.post(url, content=npy(inputs.astype(np.float32)),
                       headers={"content-type": "application/octet-stream"})
    assert float32.json()["y"] == api.post(url, json={
        "x": inputs.astype(np.float32)[:ROWS].tolist()}).json()["y"]


def test_npy_in_any_layout_or_without_a_length_equals_the_json_answer(
        api: TestClient, inputs: np.ndarray, regression: str) -> None:
    url = f"/v1/models/{regression}/predict"
    x = inputs[:5000]
    headers = {"content-type": "application/octet-stream", "accept": "application/octet-stream"}

    def answered(content: Any) -> list[float]:
        answer = api.post(url, content=content, headers=headers)
        assert answer.status_code == 200, answer.text
        return list(np.load(io.BytesIO(answer.content), allow_pickle=False).tolist())

    for sent in (x, x.astype(">f8"), np.asfortranarray(x), x.astype(np.float32),
                 np.rint(x * 10).astype(np.int16), x[:, :1].repeat(3, axis=1)[:, 0:3]):
        expected = api.post(url, json={"x": sent.astype(np.float64).tolist()}).json()["y"]
        assert answered(npy(sent)) == expected, sent.dtype
    body = npy(x)
    streamed = (body[i : i + 7777] for i in range(0, len(body), 7777))  # no Content-Length
    assert answered(streamed) == api.post(url, json={"x": x.tolist()}).json()["y"]


def test_a_classifier_answers_classes_probabilities_and_labels(
        api: TestClient, inputs: np.ndarray, classifier: str) -> None:
    url = f"/v1/models/{classifier}/predict"
    x = inputs[:500]
    expected = api.post(url, json={"x": x.tolist()}).json()
    as_json = api.post(url, content=npy(x), headers={"content-type":
                                                     "application/octet-stream"})
    assert as_json.json() == expected
    answer = api.post(url, content=csv_of(x, ["a", "b", "c"]),
                      headers={"content-type": "text/csv", "accept": "text/csv"})
    lines = answer.text.splitlines()
    assert lines[0] == "y,p_0,p_1,p_2,label"
    first = lines[1].split(",", 4)
    assert int(first[0]) == expected["y"][0]
    assert [float(p) for p in first[1:4]] == expected["probabilities"][0]
    assert first[4] == ('"bee, the"' if expected["labels"][0] == "bee, the"
                        else expected["labels"][0])
    table = np.load(io.BytesIO(api.post(url, json={"x": x.tolist()}, headers={
        "accept": "application/octet-stream"}).content))
    assert table.shape == (500, 4)
    assert table[:, 0].tolist() == expected["y"]
    assert table[:, 1:].tolist() == expected["probabilities"]


@pytest.mark.parametrize(("content", "words"), [
    (b"a,b\n1,2\n", "file.column 3"),
    (b"a,b,c,y\n1,2,3,4\n", "extra column y"),
    (b"a,b,c\n1,2,nan\n", "line 2.c: values must be finite"),
    (b"a,b,c\n1,2,x\n", "line 2.c: 'x' is not a number"),
    (b"a,b,c\n1,2\n", "line 2: has 2 fields"),
    (b"a,b,c\n", "at least one row"),
])
def test_bad_csv_bodies(api: TestClient, regression: str, content: bytes, words: str) -> None:
    answer = api.post(f"/v1/models/{regression}/predict", content=content,
                      headers={"content-type": "text/csv"})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert words.replace("file.", "body.") in answer.json()["detail"], answer.json()


class Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("unpickled!",))


@pytest.mark.parametrize(("content", "words"), [
    (npy(np.ones((4, 2))), "expected 3 feature(s)"),
    (npy(np.array([[1.0, 2.0, np.inf]])), "body.0: values must be finite"),
    (npy(np.ones((2, 3, 1))), "1-D or 2-D"),
    (npy(np.zeros((0, 3))), "non-empty"),
    (npy(np.array([Evil()], dtype=object)), "never pickles"),
    (npy(np.ones((4, 3)))[:-8], "holds 88"),
    (b"not an array at all", "not a readable .npy"),
])
def test_bad_npy_bodies(api: TestClient, regression: str, content: bytes, words: str,
                        capsys: pytest.CaptureFixture[str]) -> None:
    answer = api.post(f"/v1/models/{regression}/predict", content=content,
                      headers={"content-type": "application/octet-stream"})
    assert answer.status_code == 422, answer.text
    assert words in answer.json()["detail"], answer.json()
    assert "unpickled!" not in capsys.readouterr().out


def test_other_bodies_and_limits(api: TestClient, regression: str) -> None:
    url = f"/v1/models/{regression}/predict"
    answer = api.post(url, content=b"1 2 3", headers={"content-type": "text/plain"})
    assert answer.status_code == 415 and "text/csv" in answer.json()["detail"]
    huge = npy(np.ones((3_000_000, 3)))  # 72 MB: over the 64 MiB limit
    assert api.post(url, content=huge, headers={
        "content-type": "application/octet-stream"}).status_code == 413
    assert api.post("/v1/models/mdl_nope/predict", content=b"a,b,c\n1,2,3\n",
                    headers={"content-type": "text/csv"}).status_code == 404
