"""422s in the API's own words: a discriminator's problem lists the allowed values, an
unknown field suggests the closest known one, a missing body says what is expected, a union's
alternatives the request did not mean stay out of it; a CSV's target column is read as
numbers or class names as asked, a typo in a column of numbers refused naming its line; and
a bare ``GET /`` names the dashboard."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_errors import assert_problem, snapshot


@pytest.fixture(scope="module")
def ids(app_client: TestClient) -> dict[str, str]:
    dataset = app_client.post("/v1/datasets/synthetic", json={"seed": 1}).json()
    model = app_client.post("/v1/models").json()
    return {"dataset": dataset["id"], "model": model["id"]}


def errors(answer: Any) -> list[dict[str, Any]]:
    problem = assert_problem(answer, 422)
    assert problem["detail"].startswith(".".join(map(str, problem["errors"][0]["loc"])))
    return list(problem["errors"])


def test_a_discriminator_lists_its_allowed_values(app_client: TestClient,
                                                  ids: dict[str, str]) -> None:
    runs = f"/v1/models/{ids['model']}/runs"
    before = snapshot(app_client)
    missing = app_client.post(runs, json={"dataset_id": ids["dataset"],
                                          "optimizer": {"name": "adam"}})
    assert errors(missing) == [{
        "loc": ["body", "optimizer", "kind"],
        "msg": 'required: one of "sgd", "momentum", "adam"; did you mean "kind": "adam" '
               'instead of "name": "adam"?'}]
    unknown = app_client.post("/v1/models", json={"kind": "neural_net"})
    assert errors(unknown) == [{
        "loc": ["body", "kind"],
        "msg": '"neural_net" is not one of the allowed values "linear", "logistic", "mlp"'}]
    typo = app_client.post("/v1/datasets/synthetic", json={"kind": "moon"})
    assert errors(typo)[0]["msg"].endswith('; did you mean "moons"?')
    string = app_client.post(runs, json={"dataset_id": ids["dataset"], "optimizer": "adam"})
    assert errors(string) == [{
        "loc": ["body", "optimizer"],
        "msg": 'expected an object such as {"kind": "adam"}, not a string'}]
    assert snapshot(app_client) == before


@pytest.mark.parametrize(("path", "body", "loc", "suggestion"), [
    ("runs", {"optimizer": {"kind": "adam", "lr": 0.01}}, ["body", "optimizer", "lr"],
     "learning_rate"),
    ("/v1/models", {"n_features": 2}, ["body", "n_features"], "features"),
    ("runs", {"dataset": "ds_x", "epochs": 3}, ["body", "dataset"], "dataset_id"),
    ("runs", {"epoch": 3}, ["body", "epoch"], "epochs"),
])
def test_an_unknown_field_suggests_the_closest_known_name(
        app_client: TestClient, ids: dict[str, str], path: str, body: dict[str, Any],
        loc: list[str], suggestion: str) -> None:
    url = f"/v1/models/{ids['model']}/runs" if path == "runs" else path
    if path == "runs" and "dataset" not in body:
        body = {"dataset_id": ids["dataset"], **body}
    problem = errors(app_client.post(url, json=body))
    name = loc[-1]
    # First, even when the field it meant is also reported missing.
    assert problem[0] == {"loc": loc,
                          "msg": f'unknown field "{name}"; did you mean "{suggestion}"?'}


def test_an_unknown_field_with_no_close_name_lists_the_fields(app_client: TestClient) -> None:
    problem = errors(app_client.post("/v1/datasets", json={"x": [1], "y": [1], "zzz": 1}))
    assert problem == [{"loc": ["body", "zzz"],
                        "msg": ('unknown field "zzz"; the fields are "x", "y", "name", '
                                '"description", "tags"')}]


def test_a_missing_body_says_what_is_expected(app_client: TestClient,
                                              ids: dict[str, str]) -> None:
    predict = errors(app_client.post(f"/v1/models/{ids['model']}/predict"))
    assert predict == [{"loc": ["body"], "msg": 'this request needs a JSON body such as '
                        '{"x": [-1.0, 0.0, 1.0]} (or text/csv, application/octet-stream)'}]
    run = errors(app_client.post(f"/v1/models/{ids['model']}/runs"))
    assert run[0]["msg"].startswith('this request needs a JSON body such as {"dataset_id": ')


def test_only_the_alternative_the_request_meant_is_reported(app_client: TestClient,
                                                            ids: dict[str, str]) -> None:
    answer = app_client.post(f"/v1/models/{ids['model']}/runs", json={
        "dataset_id": ids["dataset"], "validation": {"fraction": 1.5}})
    assert errors(answer) == [{"loc": ["body", "validation", "fraction"],
                               "msg": "Input should be less than 1"}]


def test_a_bare_get_of_the_root_names_the_dashboard(app_client: TestClient) -> None:
    answer = app_client.get("/", headers={"accept": "*/*"})  # as curl asks
    problem = assert_problem(answer, 404)
    assert "/ui/" in problem["detail"] and "/docs" in problem["detail"]


def test_the_synthetic_operation_says_it_makes_every_kind(app_client: TestClient) -> None:
    spec = app_client.get("/openapi.json").json()
    summary = spec["paths"]["/v1/datasets/synthetic"]["post"]["summary"]
    assert all(kind in summary for kind in ("line", "blobs", "moons", "circles")), summary


def upload(client: TestClient, content: bytes, **form: str) -> Any:
    return client.post("/v1/datasets/upload", files={"file": ("d.csv", content, "text/csv")},
                       data=form)


@pytest.mark.parametrize(("content", "line", "words"), [
    (b"a,y\n1,2\n2,abc\n3,4\n", "line 3", "'abc' is not a number, but the values before it"),
    (b"a,y\n1,1O.2\n2,3.5\n", "line 2", "'1O.2' is not a number, but line 3 holds one (3.5)"),
    (b"a,y\n1,2\n2,\n", "line 3", "is empty"),
    (b"a,y\n1,cat\n2,\n", "line 3", "is empty"),
])
def test_a_typo_in_a_column_of_numbers_is_refused_naming_its_line(
        app_client: TestClient, content: bytes, line: str, words: str) -> None:
    before = snapshot(app_client)
    problem = assert_problem(upload(app_client, content), 422, words)
    assert problem["errors"][0]["loc"] == ["file", line, "y"]
    if "empty" not in words:
        assert "target_type=categorical" in problem["detail"]
    assert snapshot(app_client) == before


def test_the_target_type_is_the_users_to_choose(app_client: TestClient) -> None:
    names = upload(app_client, b"a,y\n1,2\n2,abc\n3,4\n", target_type="categorical")
    assert names.status_code == 201, names.text
    assert names.json()["classes"] == ["2", "4", "abc"]
    digits = upload(app_client, b"a,y\n1,1\n2,2\n3,1\n", target_type="categorical")
    assert digits.json()["classes"] == ["1", "2"]
    text = upload(app_client, b"a,y\n1,cat\n2,dog\n")  # auto: no value is a number
    assert text.json()["classes"] == ["cat", "dog"]
    numbers = upload(app_client, b"a,y\n1,2.5\n2,3\n")
    assert numbers.json()["classes"] is None
    assert_problem(upload(app_client, b"a,y\n1,cat\n2,dog\n", target_type="numeric"), 422,
                   "line 2", "'cat' is not a number (target_type=numeric)")
    assert_problem(upload(app_client, b"a,y\n1,2\n", target_type="words"), 422, "target_type")
