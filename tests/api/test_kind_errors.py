"""Bad input for model kinds, classification data and run options: each a 422 problem naming
the field, and not one stored row more or less in any table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.store.db import make_engine
from service.store.tables import DatasetRow, EpochRow, ModelRow, RunRow


def stored(client: TestClient) -> dict[str, int]:
    """How many rows each table holds, read from the database itself."""
    engine = make_engine(client.app.state.settings.database_url)  # type: ignore[attr-defined]
    try:
        with engine.connect() as connection:
            return {table.__tablename__: connection.execute(
                select(func.count()).select_from(table)).scalar_one()
                for table in (DatasetRow, ModelRow, RunRow, EpochRow)}
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def ids(app_client: TestClient) -> dict[str, str]:
    def made(path: str, body: dict[str, Any]) -> str:
        answer = app_client.post(path, json=body)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    return {
        "line": made("/v1/datasets", {"x": [1, 2, 3, 4], "y": [2.0, 4.0, 6.5, 8.0]}),
        "named": made("/v1/datasets", {"x": [1, 2, 3], "y": ["a", "b", "a"]}),
        "three": made("/v1/datasets", {"x": [1, 2, 3], "y": [0, 1, 2]}),
        "halves": made("/v1/datasets", {"x": [1, 2], "y": [0.5, 1]}),
        "wide": made("/v1/datasets", {"x": [[1, 2]], "y": [1]}),
        "regression": made("/v1/models", {}),
        "binary": made("/v1/models", {"kind": "logistic"}),
        "mlp": made("/v1/models", {"kind": "mlp", "task": "classification", "classes": 3}),
    }


@pytest.fixture
def nothing_stored(app_client: TestClient, ids: dict[str, str]) -> Iterator[None]:
    before = stored(app_client)
    yield
    assert stored(app_client) == before


def assert_names(answer: Any, loc: list[str | int], *words: str) -> None:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["errors"][0]["loc"] == loc, problem
    for word in words:
        assert word in problem["detail"], problem["detail"]


BAD_MODELS: list[tuple[dict[str, Any], list[str | int], str]] = [
    ({"kind": "mlp", "features": 1000, "hidden": [1000, 1000]}, ["body", "hidden"],
     "TAPELINE_MAX_PARAMS"),
    ({"kind": "logistic", "features": 1024, "classes": 999}, ["body", "classes"],
     "TAPELINE_MAX_PARAMS"),
    ({"kind": "mlp", "hidden": [10**6]}, ["body", "hidden", 0], "TAPELINE_MAX_LAYER_WIDTH"),
    ({"kind": "mlp", "hidden": [2] * 17}, ["body", "hidden"], "TAPELINE_MAX_HIDDEN_LAYERS"),
    ({"kind": "mlp", "hidden": []}, ["body", "hidden"], "at least 1"),
    ({"kind": "mlp", "hidden": [0]}, ["body", "hidden", 0], "greater than or equal to 1"),
    ({"kind": "logistic", "classes": 1}, ["body", "classes"], "greater than or equal to 2"),
    ({"kind": "mlp", "task": "classification", "classes": 0}, ["body", "classes"],
     "greater than or equal to 2"),
    ({"kind": "mlp", "classes": 3}, ["body", "classes"], "classification only"),
    ({"kind": "mlp", "activation": "gelu"}, ["body", "activation"], "relu"),
    ({"kind": "svm"}, ["body", "kind"], '"svm" is not one of the allowed values "linear"'),
    ({"kind": "logistic", "features": 2, "initial": {"params": {"W": [1, 2, 3], "b": 0}}},
     ["body", "initial", "params", "W"], "expected shape [2], got [3]"),
    ({"kind": "logistic", "classes": 3, "initial": {"params": {"W": [[1, 2, 3]], "b": 0}}},
     ["body", "initial", "params", "b"], "expected shape [3], got []"),
    ({"kind": "mlp", "hidden": [2], "initial": {"params": {"W1": [[1, 2]], "b1": [0, 0],
                                                           "W2": [[1], [1, 2]], "b2": [0]}}},
     ["body", "initial", "params", "W2"], "ragged"),
    ({"kind": "mlp", "hidden": [2], "initial": {"params": {"W1": [[1, 2]], "b1": [0, 0],
                                                           "W2": [[1], [1]]}}},
     ["body", "initial", "params", "b2"], "missing"),
    ({"kind": "linear", "initial": {"params": {"W": [1], "b": 0, "W2": [1]}}},
     ["body", "initial", "params", "W2"], "no param 'W2'"),
    ({"kind": "logistic", "classes": 3, "initial": {"W": [1.0], "b": 0.0}},
     ["body", "initial", "W"], "initial.params"),
    ({"kind": "logistic", "features": 2, "initial": {"W": [1.0], "b": 0.0}},
     ["body", "initial", "W"], "weights but the model has 2"),
]


@pytest.mark.parametrize(("body", "loc", "words"), BAD_MODELS,
                         ids=[str(i) for i in range(len(BAD_MODELS))])
def test_bad_models(app_client: TestClient, nothing_stored: None, body: dict[str, Any],
                    loc: list[str | int], words: str) -> None:
    assert_names(app_client.post("/v1/models", json=body), loc, words)


BAD_RUNS: list[tuple[str, str, dict[str, Any], list[str | int], str]] = [
    ("binary", "line", {}, ["body", "dataset_id"], "class indices in [0, 2)"),
    ("binary", "three", {}, ["body", "dataset_id"], "[0, 2]"),
    ("mlp", "halves", {}, ["body", "dataset_id"], "with fractions"),
    ("regression", "named", {}, ["body", "dataset_id"], "labels are strings"),
    ("regression", "line", {"loss": "cross_entropy"}, ["body", "loss"], "fits classification"),
    ("binary", "named", {"loss": "mse"}, ["body", "loss"], "fits regression"),
    ("regression", "line", {"validation": {"fraction": 0.1}}, ["body", "validation", "fraction"],
     "no validation row"),
    ("regression", "line", {"validation": {"fraction": 0}}, ["body", "validation", "fraction"],
     "greater than 0"),
    ("regression", "line", {"validation": {"fraction": 1}}, ["body", "validation", "fraction"],
     "less than 1"),
    ("regression", "line", {"early_stopping": {"monitor": "val_loss"}},
     ["body", "early_stopping", "monitor"], "needs validation"),
    ("regression", "line", {"early_stopping": {"monitor": "accuracy"}},
     ["body", "early_stopping", "monitor"], "classification metric"),
    ("binary", "named", {"early_stopping": {"monitor": "r2"}},
     ["body", "early_stopping", "monitor"], "regression metric"),
    ("regression", "line", {"early_stopping": {"monitor": "lossy"}},
     ["body", "early_stopping", "monitor"], "val_loss"),
    ("regression", "line", {"validation": {"dataset_id": "@wide"}},
     ["body", "validation", "dataset_id"], "2 feature(s) but the model has 1"),
    ("binary", "named", {"validation": {"dataset_id": "@three"}},
     ["body", "validation", "dataset_id"], "[0, 2)"),
    ("regression", "line", {"huber_delta": 0}, ["body", "huber_delta"], "greater than 0"),
    ("regression", "line", {"regularization": {"l1": -1}}, ["body", "regularization", "l1"],
     "greater than or equal to 0"),
    ("regression", "line", {"shuffle": "no"}, ["body", "shuffle"], "boolean"),
]


@pytest.mark.parametrize(("model", "dataset", "body", "loc", "words"), BAD_RUNS,
                         ids=[str(i) for i in range(len(BAD_RUNS))])
def test_bad_runs(app_client: TestClient, nothing_stored: None, ids: dict[str, str],
                  model: str, dataset: str, body: dict[str, Any], loc: list[str | int],
                  words: str) -> None:
    validation = body.get("validation", {})
    if str(validation.get("dataset_id", "")).startswith("@"):
        body = {**body, "validation": {"dataset_id": ids[validation["dataset_id"][1:]]}}
    answer = app_client.post(f"/v1/models/{ids[model]}/runs",
                             json={"dataset_id": ids[dataset], **body})
    assert_names(answer, loc, words)


def test_early_stopping_monitors_val_loss_by_default_with_validation(
        app_client: TestClient, ids: dict[str, str]) -> None:
    """The good body beside the bad ones: with validation rows, early stopping watches
    ``val_loss`` unless told otherwise (and ``loss`` without them)."""
    for body, monitor in (({"validation": {"fraction": 0.5}}, "val_loss"), ({}, "loss")):
        answer = app_client.post(f"/v1/models/{ids['regression']}/runs",
                                 headers={"prefer": "wait=60"},
                                 json={"dataset_id": ids["line"], "epochs": 2,
                                       "early_stopping": {}, **body})
        assert answer.status_code == 200, answer.text
        run = answer.json()
        assert run["status"] == "succeeded", run
        assert run["early_stopping"] == {"monitor": monitor, "patience": 5, "min_delta": 0.0,
                                         "restore_best": True}


def test_a_classifier_must_keep_its_class_names(app_client: TestClient,
                                                ids: dict[str, str]) -> None:
    first = app_client.post(f"/v1/models/{ids['binary']}/runs", headers={"prefer": "wait=60"},
                            json={"dataset_id": ids["named"], "epochs": 1})
    assert first.json()["status"] == "succeeded"
    other = app_client.post("/v1/datasets", json={"x": [1, 2], "y": ["b", "c"]}).json()
    before = stored(app_client)
    answer = app_client.post(f"/v1/models/{ids['binary']}/runs",
                             json={"dataset_id": other["id"]})
    assert_names(answer, ["body", "dataset_id"], "differ from those the model was trained on")
    assert stored(app_client) == before


BAD_DATA: list[tuple[str, dict[str, Any], list[str | int], str]] = [
    ("/v1/datasets", {"x": [1, 2], "y": ["a", 1]}, ["body", "y", 1], "string"),
    ("/v1/datasets", {"x": [1, 2], "y": ["a", ""]}, ["body", "y", 1], "at least 1"),
    ("/v1/datasets/synthetic", {"kind": "blobs", "classes": 1}, ["body", "classes"], "to 2"),
    ("/v1/datasets/synthetic", {"kind": "blobs", "features": 0}, ["body", "features"], "to 1"),
    ("/v1/datasets/synthetic", {"kind": "moons", "noise": -1}, ["body", "noise"], "or equal to 0"),
    ("/v1/datasets/synthetic", {"kind": "circles", "true_W": [1]}, ["body", "true_W"],
     'unknown field "true_W"'),
    ("/v1/datasets/synthetic", {"kind": "spiral"}, ["body", "kind"],
     '"spiral" is not one of the allowed values "linear", "blobs", "moons", "circles"'),
]


@pytest.mark.parametrize(("path", "body", "loc", "words"), BAD_DATA,
                         ids=[str(i) for i in range(len(BAD_DATA))])
def test_bad_classification_data(app_client: TestClient, nothing_stored: None, path: str,
                                 body: dict[str, Any], loc: list[str | int], words: str) -> None:
    assert_names(app_client.post(path, json=body), loc, words)


def test_too_many_classes_and_empty_csv_labels(app_client: TestClient,
                                               nothing_stored: None) -> None:
    many = [f"c{i}" for i in range(1001)]
    answer = app_client.post("/v1/datasets", json={"x": list(range(1001)), "y": many})
    assert_names(answer, ["body", "y"], "TAPELINE_MAX_CLASSES")
    csv = b"x,y\n1,cat\n2,\n3,dog\n"
    upload = app_client.post("/v1/datasets/upload", files={"file": ("a.csv", csv, "text/csv")})
    assert_names(upload, ["file", "line 3", "y"], "is empty")
