"""Bad input never hurts: a clear problem+json 4xx for each, and nothing stored changes."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

JSON = {"content-type": "application/json"}


def snapshot(client: TestClient) -> dict[str, Any]:
    """Everything the API can list, to compare before and after a bad request."""
    datasets = client.get("/v1/datasets", params={"limit": 1000}).json()["items"]
    models = client.get("/v1/models", params={"limit": 1000}).json()["items"]
    runs = {m["id"]: client.get(f"/v1/models/{m['id']}/runs").json()["items"] for m in models}
    return {"datasets": datasets, "models": models, "runs": runs}


@pytest.fixture
def unchanged(app_client: TestClient) -> Iterator[None]:
    before = snapshot(app_client)
    yield
    assert snapshot(app_client) == before


@pytest.fixture(scope="module")
def ids(app_client: TestClient) -> dict[str, str]:
    dataset = app_client.post("/v1/datasets", json={"x": [1, 2, 3], "y": [2, 4, 6]}).json()
    model = app_client.post("/v1/models").json()
    wide = app_client.post("/v1/datasets", json={"x": [[1, 2]], "y": [3]}).json()
    return {"dataset": dataset["id"], "model": model["id"], "wide": wide["id"]}


def assert_problem(answer: Any, status: int, *words: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["status"] == status
    assert {"type", "title", "status", "detail", "instance"} <= problem.keys()
    for word in words:
        assert word.lower() in problem["detail"].lower(), problem["detail"]
    assert "NaN" not in answer.text and "Infinity" not in answer.text
    return problem


BAD_DATASETS = [
    (b'{"x": [1, NaN], "y": [1, 2]}', "finite"),
    (b'{"x": [1, 2], "y": [Infinity, 2]}', "finite"),
    (b'{"x": [1, -Infinity], "y": [1, 2]}', "finite"),
    (b'{"x": [1e999], "y": [1]}', "finite"),
    (b'{"x": [[1, 2], [3]], "y": [1, 2]}', "ragged"),
    (b'{"x": [1, 2, 3], "y": [1, 2]}', "3 examples but y has 2"),
    (b'{"x": [], "y": []}', "at least 1"),
    (b'{"x": "abc", "y": [1]}', "valid list"),
    (b'{"x": [1, "two"], "y": [1, 2]}', "number"),
    (b'{"x": [1], "y": [1], "z": 3}', "unknown field \"z\""),
    (b'{"y": [1]}', "required"),
    (b'[1, 2]', "dictionary"),
    (b'{"x": [1], ', "json"),
    (b'{"x": [[]], "y": [1]}', "at least 1"),
]


@pytest.mark.parametrize(("body", "words"), BAD_DATASETS)
def test_bad_inline_datasets(app_client: TestClient, unchanged: None, body: bytes,
                             words: str) -> None:
    answer = app_client.post("/v1/datasets", content=body, headers=JSON)
    problem = assert_problem(answer, 422, words)
    assert problem["instance"] == "/v1/datasets"
    assert problem["errors"] and all({"loc", "msg"} == e.keys() for e in problem["errors"])


@pytest.mark.parametrize("body", [
    {"num_examples": 0}, {"num_examples": 10**9}, {"noise_stddev": -1}, {"true_W": []},
    {"seed": -1}, {"num_examples": "many"}, {"true_b": "NaN"},
    {"true_W": [1.0, 2.0], "num_examples": 10**7},
    {"colour": "red"},
])
def test_bad_synthetic_parameters(app_client: TestClient, unchanged: None,
                                  body: dict[str, Any]) -> None:
    assert_problem(app_client.post("/v1/datasets/synthetic", json=body), 422)


def test_nan_tokens_in_synthetic(app_client: TestClient, unchanged: None) -> None:
    answer = app_client.post("/v1/datasets/synthetic", content=b'{"true_b": NaN}', headers=JSON)
    assert_problem(answer, 422, "finite")


def test_synthetic_overflowing_to_infinity(app_client: TestClient, unchanged: None) -> None:
    answer = app_client.post("/v1/datasets/synthetic", json={"true_W": [1e308], "seed": 1})
    assert_problem(answer, 422, "not finite")


@pytest.mark.parametrize("body", [
    {"kind": "svm"}, {"kind": 3}, {"features": 0}, {"features": 10**6},
    {"initial": {"W": [1], "c": 1}}, {"initial": {"random_seed": -3}}, {"initial": {"W": ["a"]}},
    {"name": "x" * 201},
])
def test_bad_models(app_client: TestClient, unchanged: None, body: dict[str, Any]) -> None:
    assert_problem(app_client.post("/v1/models", json=body), 422)


def test_nan_initial_weights(app_client: TestClient, unchanged: None) -> None:
    answer = app_client.post("/v1/models", content=b'{"initial": {"W": [NaN]}}', headers=JSON)
    assert_problem(answer, 422, "finite")


@pytest.mark.parametrize("body", [
    {"epochs": 0}, {"epochs": 10**9}, {"epochs": "ten"},
    {"optimizer": {"kind": "sgd", "learning_rate": 0}},
    {"optimizer": {"kind": "sgd", "learning_rate": -0.1}},
    {"optimizer": {"kind": "rmsprop"}}, {"optimizer": {"kind": "momentum", "momentum": 1.5}},
    {"optimizer": {"kind": "adam", "beta_1": 1.0}}, {"batch_size": 0}, {"dtype": "float16"},
    {"shuffle_seed": -1}, {"learning_rate": 0.1},
])
def test_bad_runs(app_client: TestClient, unchanged: None, ids: dict[str, str],
                  body: dict[str, Any]) -> None:
    answer = app_client.post(f"/v1/models/{ids['model']}/runs",
                             json={"dataset_id": ids["dataset"], **body})
    assert_problem(answer, 422)


def test_nan_learning_rate(app_client: TestClient, unchanged: None, ids: dict[str, str]) -> None:
    body = json.dumps({"dataset_id": ids["dataset"], "optimizer": {"kind": "sgd"}}).replace(
        '"sgd"}', '"sgd", "learning_rate": NaN}').encode()
    answer = app_client.post(f"/v1/models/{ids['model']}/runs", content=body, headers=JSON)
    assert_problem(answer, 422, "finite")


def test_run_on_a_dataset_with_other_features(app_client: TestClient, unchanged: None,
                                              ids: dict[str, str]) -> None:
    answer = app_client.post(f"/v1/models/{ids['model']}/runs", json={"dataset_id": ids["wide"]})
    assert_problem(answer, 422, "2 feature")


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/datasets/ds_missing"), ("GET", "/v1/datasets/ds_missing/data"),
    ("DELETE", "/v1/datasets/ds_missing"), ("GET", "/v1/models/mdl_missing"),
    ("DELETE", "/v1/models/mdl_missing"), ("GET", "/v1/models/mdl_missing/runs"),
    ("GET", "/v1/models/mdl_missing/history"), ("GET", "/v1/runs/run_missing"),
    ("POST", "/v1/runs/run_missing/cancel"), ("GET", "/v1/runs/run_missing/history"),
    ("GET", "/v1/runs/run_missing/events"), ("GET", "/v1/nothing-here"),
])
def test_unknown_ids_are_404(app_client: TestClient, unchanged: None, method: str,
                             path: str) -> None:
    assert_problem(app_client.request(method, path), 404)


def test_unknown_ids_in_bodies(app_client: TestClient, unchanged: None,
                               ids: dict[str, str]) -> None:
    assert_problem(app_client.post(f"/v1/models/{ids['model']}/runs",
                                   json={"dataset_id": "ds_missing"}), 404, "dataset")
    assert_problem(app_client.post("/v1/models/mdl_missing/runs",
                                   json={"dataset_id": ids["dataset"]}), 404, "model")
    assert_problem(app_client.post("/v1/models/mdl_missing/predict", json={"x": [1]}), 404)


@pytest.mark.parametrize("path", ["/v1/datasets", "/v1/datasets/synthetic", "/v1/models"])
def test_wrong_content_type_is_415(app_client: TestClient, unchanged: None, path: str) -> None:
    answer = app_client.post(path, content=b"x=1", headers={"content-type": "text/plain"})
    assert_problem(answer, 415, "json")


def test_method_not_allowed_is_a_problem(app_client: TestClient, unchanged: None) -> None:
    assert_problem(app_client.put("/v1/datasets"), 405)


@pytest.mark.parametrize(("name", "content", "status", "words"), [
    ("d.txt", b"hello", 415, "unsupported"),
    ("d.csv", b"a,y\n1,2\n3\n", 422, "fields"),
    ("d.csv", b"a,y\nabc,1\n", 422, "not a number"),
    ("d.csv", b"a,y\n1,nan\n", 422, "finite"),
    ("d.csv", b"a,b\n1,2\n", 422, "'y' is not in the csv header"),
    ("d.csv", b"a,y\n", 422, "at least one data row"),
    ("d.csv", b"y\n1\n", 422, "feature column"),
    ("d.csv", b"\xff\xfe\x00", 422, "utf-8"),
    ("d.npy", b"not numpy at all", 422, "readable"),
    ("d.npz", b"PK\x03\x04broken", 422, "readable"),
])
def test_malformed_uploads(app_client: TestClient, unchanged: None, name: str, content: bytes,
                           status: int, words: str) -> None:
    answer = app_client.post("/v1/datasets/upload", files={"file": (name, content)})
    assert_problem(answer, status, words)


def test_npy_with_wrong_shape_or_pickles(app_client: TestClient, unchanged: None) -> None:
    flat = io.BytesIO()
    np.save(flat, np.arange(3.0))
    assert_problem(app_client.post("/v1/datasets/upload", files={"file": ("d.npy",
                                   flat.getvalue())}), 422, "2-d")
    objects = io.BytesIO()
    np.save(objects, np.array([[{"a": 1}, 2]], dtype=object), allow_pickle=True)
    assert_problem(app_client.post("/v1/datasets/upload", files={"file": ("d.npy",
                                   objects.getvalue())}), 422)
    strings = io.BytesIO()
    np.savez(strings, x=np.array(["a", "b"]), y=np.array([1.0, 2.0]))
    assert_problem(app_client.post("/v1/datasets/upload", files={"file": ("d.npz",
                                   strings.getvalue())}), 422, "numeric")


def test_body_over_the_limit_is_413_before_it_is_read(app_client: TestClient,
                                                      unchanged: None) -> None:
    big = b'{"x": [' + b"1," * 600_000 + b'1], "y": [1]}'
    assert_problem(app_client.post("/v1/datasets", content=big, headers=JSON), 413, "limit")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams in
        yield b'{"x": ['
        for _ in range(200):
            yield b"1," * 5000
        yield b'1], "y": [1]}'

    answer = app_client.post("/v1/datasets", content=chunks(), headers=JSON)
    assert_problem(answer, 413, "limit")
    upload = app_client.post("/v1/datasets/upload", files={"file": ("d.csv", b"a,y\n" +
                                                                    b"1,2\n" * 300_000)})
    assert_problem(upload, 413)


@pytest.mark.parametrize("query", ["limit=0", "limit=100000", "cursor=%%%", "cursor=bm9wZQ",
                                   "limit=abc"])
def test_bad_paging(app_client: TestClient, unchanged: None, query: str) -> None:
    assert_problem(app_client.get(f"/v1/datasets?{query}"), 422)


@pytest.mark.parametrize("query", ["format=table", "after=-5", "limit=0", "after=x"])
def test_bad_history_queries(app_client: TestClient, unchanged: None, ids: dict[str, str],
                             query: str) -> None:
    assert_problem(app_client.get(f"/v1/models/{ids['model']}/history?{query}"), 422)


def test_mismatched_lengths_name_the_field(app_client: TestClient, unchanged: None) -> None:
    answer = app_client.post("/v1/datasets", json={"x": [1, 2, 3], "y": [1, 2]})
    problem = assert_problem(answer, 422, "3 examples but y has 2")
    assert problem["errors"] == [{"loc": ["body", "y"], "msg": "x has 3 examples but y has 2"}]


@pytest.mark.parametrize("query", ["seed=0.0", "seed=1e0", "sample=2.0", "sample=two"])
def test_integer_query_parameters_are_written_in_digits(app_client: TestClient,
                                                        ids: dict[str, str], query: str) -> None:
    # Pydantic's lax parsing of text would take `0.0` and `1e0`; a query says what it means.
    answer = app_client.get(f"/v1/datasets/{ids['dataset']}/data?{query}")
    name = query.split("=")[0]
    problem = assert_problem(answer, 422, f"query.{name}")
    assert problem["errors"][0]["loc"] == ["query", name]


@pytest.mark.parametrize("path", ["/v1/runs?limit=2.5", "/v1/runs?limit=2.0",
                                  "/v1/models?limit=1e1"])
def test_page_sizes_are_written_in_digits(app_client: TestClient, path: str) -> None:
    assert_problem(app_client.get(path), 422, "query.limit", "digits")
    assert app_client.get(path.split("=")[0] + "=2").status_code == 200
