"""Regression tests for what Schemathesis and the client generators found, on SQLite and
PostgreSQL: each was a 500 or a disagreement between the spec and the server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.contract.conftest import SPEC

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def api(each_store: TestClient) -> TestClient:
    """The app on a fresh SQLite file or a fresh PostgreSQL schema."""
    return each_store


@pytest.fixture(scope="module")
def ids(api: TestClient) -> dict[str, str]:
    dataset = api.post("/v1/datasets/synthetic", json={"num_examples": 20, "seed": 3}).json()
    model = api.post("/v1/models").json()
    run = api.post(f"/v1/models/{model['id']}/runs", headers={"Prefer": "wait=30"},
                   json={"dataset_id": dataset["id"], "epochs": 2}).json()
    return {"dataset": dataset["id"], "model": model["id"], "run": run["id"]}


def problem(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    return body


@pytest.mark.parametrize("query", [
    "cursor=99999999999999999999999",  # overflowed the 64-bit seq column: 500
    "cursor=czk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5", "cursor=-1", "cursor=%D9%A1", "cursor=%00",
])
def test_malformed_cursors_are_422(api: TestClient, query: str) -> None:
    problem(api.get(f"/v1/datasets?{query}"), 422)


def test_cursors_are_positions(api: TestClient, ids: dict[str, str]) -> None:
    first = api.get("/v1/models", params={"limit": 1}).json()
    assert first["next_cursor"] is None or first["next_cursor"].isdigit()
    assert api.get("/v1/models", params={"cursor": "999999999999999999"}).json()["items"] == []


@pytest.mark.parametrize("path", ["/v1/runs/{run}/history", "/v1/models/{model}/history",
                                  "/v1/runs/{run}/events"])
def test_positions_beyond_32_bits_are_422(api: TestClient, ids: dict[str, str],
                                          path: str) -> None:
    url = path.format(**ids)
    problem(api.get(url, params={"after": 2**31}), 422)  # overflowed PostgreSQL's integer: 500
    assert api.get(url, params={"after": 2**31 - 1}).status_code == 200


@pytest.mark.parametrize("value", ["1234567890", "seven", "1e3", " "])
def test_last_event_id_must_be_an_epoch(api: TestClient, ids: dict[str, str],
                                        value: str) -> None:
    problem(api.get(f"/v1/runs/{ids['run']}/events", headers={"Last-Event-ID": value}), 422)


def test_values_whose_statistics_overflow_are_422(api: TestClient) -> None:
    detail = problem(api.post("/v1/datasets", json={"x": [1e308, -1e308], "y": [1, 2]}),
                     422)["detail"]
    assert "too large" in detail
    problem(api.post("/v1/datasets", json={"x": [1, 2], "y": [1e308, -1e308]}), 422)
    upload = api.post("/v1/datasets/upload",
                      files={"file": ("big.csv", b"x,y\n1e308,1\n-1e308,2\n", "text/csv")})
    problem(upload, 422)


def test_nul_never_reaches_the_store(api: TestClient) -> None:
    for path in ("/v1/models/a%00b", "/v1/datasets/a%00b", "/v1/runs/a%00b",
                 "/v1/runs/a%00b/history", "/v1/models/a%00b/runs"):
        problem(api.get(path), 404)
    problem(api.post("/v1/models", json={"name": "a\x00b"}), 422)
    model = api.post("/v1/models").json()
    problem(api.post(f"/v1/models/{model['id']}/runs", json={"dataset_id": "ds\x00"}), 422)
    upload = api.post("/v1/datasets/upload", data={"name": "a\x00b"},
                      files={"file": ("d.csv", b"x,y\n1,2\n", "text/csv")})
    problem(upload, 422)


def test_long_upload_file_names_are_cut_to_a_name(api: TestClient) -> None:
    answer = api.post("/v1/datasets/upload",
                      files={"file": ("a" * 300 + ".csv", b"x,y\n1,2\n", "text/csv")})
    assert answer.status_code == 201, answer.text
    assert answer.json()["name"] == "a" * 200


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/datasets/synthetic", {"seed": False}),
    ("/v1/datasets/synthetic", {"num_examples": "10"}),
    ("/v1/datasets/synthetic", {"true_b": True}),
    ("/v1/datasets/synthetic", {"seed": 2**53}),
    ("/v1/datasets", {"x": [[False]], "y": [1]}),
    ("/v1/models", {"features": 1.5}),
    ("/v1/models", {"initial": {"W": ["5"]}}),
])
def test_values_of_the_wrong_json_type_are_422(api: TestClient, path: str,
                                               body: dict[str, Any]) -> None:
    problem(api.post(path, json=body), 422)


def test_integral_numbers_count_as_integers(api: TestClient) -> None:
    answer = api.post("/v1/datasets/synthetic", json={"num_examples": 10.0, "seed": 7.0})
    assert answer.status_code == 201, answer.text
    assert answer.json()["synthetic"]["seed"] == 7


def test_random_seeds_survive_javascript(api: TestClient) -> None:
    seed = api.post("/v1/datasets/synthetic", json={"num_examples": 5}).json()["synthetic"]["seed"]
    assert 0 <= seed < 2**53


def test_optimizer_needs_its_kind(api: TestClient, ids: dict[str, str]) -> None:
    model = api.post("/v1/models").json()
    body = {"dataset_id": ids["dataset"], "optimizer": {"learning_rate": 0.1}}
    problem(api.post(f"/v1/models/{model['id']}/runs", json=body), 422)
    spec = json.loads(SPEC.read_text())
    assert "kind" in spec["components"]["schemas"]["SGD"]["required"]


def test_405_lists_every_method_of_the_path(api: TestClient, ids: dict[str, str]) -> None:
    answer = api.request("PATCH", "/v1/datasets")
    problem(answer, 405)
    assert set(answer.headers["allow"].split(", ")) >= {"GET", "POST"}
    answer = api.request("PUT", f"/v1/datasets/{ids['dataset']}")
    assert set(answer.headers["allow"].split(", ")) >= {"GET", "DELETE"}


def test_undecodable_body_is_a_declared_400(api: TestClient) -> None:
    problem(api.post("/v1/models", content=b"\xff\xfe{", headers=JSON), 400)
    spec = json.loads(SPEC.read_text())
    for path in spec["paths"].values():
        for operation in path.values():
            if "requestBody" in operation:
                assert "400" in operation["responses"], operation["operationId"]


def test_allow_follows_the_most_specific_path(api: TestClient) -> None:
    answer = api.request("PATCH", "/v1/datasets/synthetic")
    assert answer.headers["allow"] == "POST"


def test_param_names_the_spec_refuses_are_refused_by_their_name(api: TestClient) -> None:
    """A param name holding NUL missed the spec's key pattern, which (as patternProperties)
    left its value unconstrained: Schemathesis sent an object as a param and called the 422
    a surprise. The spec now says every value is a param array and names need no NUL."""
    schemas = json.loads(SPEC.read_text())["components"]["schemas"]
    named = schemas["NamedInit"]["properties"]["params"]
    assert "patternProperties" not in named
    assert named["propertyNames"]["pattern"] == "^[^\\x00]*$"
    assert "anyOf" in named["additionalProperties"]
    body = {"kind": "logistic", "features": 1, "initial": {"params": {"W\x00": {"a": False}}}}
    refused = problem(api.post("/v1/models", json=body), 422)
    assert any(error["loc"][:3] == ["body", "initial", "params"] for error in refused["errors"])
