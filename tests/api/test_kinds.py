"""Model kinds over HTTP: creating each kind, classification datasets, predictions with
probabilities and labels, validation, early stopping, history rows and columns."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.support.servers import sqlite_url

WAIT = {"prefer": "wait=120"}


def created(answer: Any, status: int = 201) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    return dict(answer.json())


def run(client: TestClient, model_id: str, **body: Any) -> dict[str, Any]:
    answer = client.post(f"/v1/models/{model_id}/runs", headers=WAIT, json=body)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_each_kind_has_its_params_and_config(app_client: TestClient) -> None:
    linear = created(app_client.post("/v1/models", json={"features": 2}))
    assert linear["params"] == {"W": [5.0, 5.0], "b": 0.0} and linear["param_count"] == 3
    binary = created(app_client.post("/v1/models", json={"kind": "logistic", "features": 3}))
    assert (binary["W"], binary["b"], binary["classes"]) == ([0.0] * 3, 0.0, 2)
    softmax = created(app_client.post("/v1/models", json={"kind": "logistic", "features": 3,
                                                          "classes": 4}))
    assert softmax["W"] is None and softmax["b"] is None
    assert np.shape(softmax["params"]["W"]) == (3, 4) and softmax["params"]["b"] == [0.0] * 4
    mlp = created(app_client.post("/v1/models", json={
        "kind": "mlp", "features": 2, "hidden": [8, 4], "activation": "tanh",
        "task": "classification", "classes": 3}))
    assert {k: mlp[k] for k in ("hidden", "activation", "task", "classes", "param_count")} == {
        "hidden": [8, 4], "activation": "tanh", "task": "classification", "classes": 3,
        "param_count": 2 * 8 + 8 + 8 * 4 + 4 + 4 * 3 + 3}
    assert [np.shape(mlp["params"][n]) for n in ("W1", "b1", "W2", "b2", "W3", "b3")] == [
        (2, 8), (8,), (8, 4), (4,), (4, 3), (3,)]
    assert mlp["W"] is None and isinstance(mlp["random_seed"], int)
    assert app_client.get(f"/v1/models/{mlp['id']}").json() == mlp
    regression = created(app_client.post("/v1/models", json={"kind": "mlp"}))
    assert regression["task"] == "regression" and regression["classes"] is None
    assert np.shape(regression["params"]["W2"]) == (16, 1)


def test_seeds_and_named_initial_params(app_client: TestClient) -> None:
    body = {"kind": "mlp", "features": 2, "hidden": [3], "initial": {"random_seed": 11}}
    first, again = (created(app_client.post("/v1/models", json=body)) for _ in range(2))
    assert first["params"] == again["params"] and first["random_seed"] == 11
    other = created(app_client.post("/v1/models", json={**body, "initial": {"random_seed": 12}}))
    assert other["params"] != first["params"]
    named = created(app_client.post("/v1/models", json={
        "kind": "logistic", "features": 2, "classes": 3,
        "initial": {"params": {"W": [[1, 2, 3], [4, 5, 6]], "b": [0.5, 0, -0.5]}}}))
    assert named["params"] == {"W": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "b": [0.5, 0.0, -0.5]}
    assert named["random_seed"] is None


def test_string_labels_become_classes(app_client: TestClient) -> None:
    data = created(app_client.post("/v1/datasets", json={
        "x": [[0, 0], [1, 1], [0, 1], [5, 5]], "y": ["dog", "cat", "dog", "emu"]}))
    assert data["classes"] == ["cat", "dog", "emu"]
    downloaded = app_client.get(f"/v1/datasets/{data['id']}/data").json()
    assert downloaded["y"] == ["dog", "cat", "dog", "emu"]
    csv = app_client.get(f"/v1/datasets/{data['id']}/data", headers={"accept": "text/csv"})
    assert csv.text.splitlines()[1:3] == ["0.0,0.0,dog", "1.0,1.0,cat"]
    upload = created(app_client.post("/v1/datasets/upload", files={
        "file": ("pets.csv", csv.text.encode(), "text/csv")}))
    assert upload["classes"] == ["cat", "dog", "emu"] and upload["num_examples"] == 4
    numeric = created(app_client.post("/v1/datasets", json={"x": [1, 2], "y": [0, 1]}))
    assert numeric["classes"] is None


def test_synthetic_classification_sets_are_seeded(app_client: TestClient) -> None:
    for body in ({"kind": "blobs", "num_examples": 90, "features": 3, "classes": 3,
                  "spread": 0.5, "seed": 1},
                 {"kind": "moons", "num_examples": 50, "noise": 0.05, "seed": 2},
                 {"kind": "circles", "num_examples": 40, "noise": 0.0, "seed": 3}):
        made = created(app_client.post("/v1/datasets/synthetic", json=body))
        again = created(app_client.post("/v1/datasets/synthetic", json=body))
        assert made["synthetic"] == {**body}
        first = app_client.get(f"/v1/datasets/{made['id']}/data").json()
        assert first == app_client.get(f"/v1/datasets/{again['id']}/data").json()
        labels = np.asarray(first["y"])
        classes = body.get("classes", 2)
        assert set(labels.tolist()) == set(range(classes))
        assert made["features"] == body.get("features", 2)
    ring = np.asarray(app_client.get(f"/v1/datasets/{made['id']}/data").json()["x"])
    radius = np.linalg.norm(ring, axis=1)
    np.testing.assert_allclose(np.sort(radius), [0.5] * 20 + [1.0] * 20, atol=1e-6)
    line = created(app_client.post("/v1/datasets/synthetic", json={"seed": 1}))
    assert line["synthetic"]["kind"] == "linear" and line["features"] == 1


def test_a_classifier_trains_and_predicts_named_classes(app_client: TestClient) -> None:
    x = [[-2, 0], [-1.5, 0.5], [-2, -0.5], [2, 0], [1.5, 0.5], [2, -0.5], [0, 3], [0.5, 2.5]]
    y = ["left", "left", "left", "right", "right", "right", "up", "up"]
    data = created(app_client.post("/v1/datasets", json={"x": x, "y": y}))
    model = created(app_client.post("/v1/models", json={"kind": "logistic", "features": 2,
                                                        "classes": 3}))
    done = run(app_client, model["id"], dataset_id=data["id"], epochs=200,
               optimizer={"kind": "adam", "learning_rate": 0.1})
    assert done["loss"] == "cross_entropy" and done["final"]["metrics"]["accuracy"] == 1.0
    assert set(done["final"]["metrics"]) == {"accuracy", "log_loss"}
    trained = app_client.get(f"/v1/models/{model['id']}").json()
    assert trained["class_names"] == ["left", "right", "up"]
    answer = app_client.post(f"/v1/models/{model['id']}/predict",
                             json={"x": [[-3, 0], [3, 0], [0, 4]]}).json()
    assert answer["y"] == [0, 1, 2] and answer["labels"] == ["left", "right", "up"]
    np.testing.assert_allclose(np.sum(answer["probabilities"], axis=1), 1.0)
    assert all(row[i] > 0.5 for row, i in zip(answer["probabilities"], answer["y"],
                                               strict=True))


def test_binary_logistic_prediction_is_the_sigmoid(app_client: TestClient) -> None:
    model = created(app_client.post("/v1/models", json={
        "kind": "logistic", "features": 1, "initial": {"W": [2.0], "b": -1.0}}))
    answer = app_client.post(f"/v1/models/{model['id']}/predict", json={"x": [0, 0.5, 1]}).json()
    p = 1 / (1 + np.exp(-(2 * np.array([0, 0.5, 1]) - 1)))
    np.testing.assert_allclose(np.asarray(answer["probabilities"])[:, 1], p, rtol=1e-12)
    assert answer["y"] == [0, 0, 1] and answer["labels"] is None  # p = 0.5 is class 0


def test_validation_and_early_stopping_over_http(app_client: TestClient) -> None:
    data = created(app_client.post("/v1/datasets/synthetic", json={
        "kind": "moons", "num_examples": 200, "noise": 0.2, "seed": 5}))
    model = created(app_client.post("/v1/models", json={
        "kind": "mlp", "features": 2, "hidden": [16], "task": "classification",
        "initial": {"random_seed": 1}}))
    done = run(app_client, model["id"], dataset_id=data["id"], epochs=400,
               optimizer={"kind": "adam", "learning_rate": 0.1}, batch_size=32,
               shuffle_seed=0, validation={"fraction": 0.25},
               early_stopping={"patience": 5})
    stopped = done["stopped_early"]
    assert done["status"] == "succeeded" and stopped is not None
    assert done["early_stopping"] == {"monitor": "val_loss", "patience": 5, "min_delta": 0.0,
                                      "restore_best": True}
    assert done["epochs_completed"] == stopped["epoch"] < 400
    rows = app_client.get(f"/v1/runs/{done['id']}/history").json()["items"]
    assert len(rows) == stopped["epoch"]
    best = rows[stopped["best_epoch"]]
    assert done["final"]["params"] == best["params"] and done["final"]["loss"] == best["loss"]
    assert min(r["metrics"]["val_loss"] for r in rows) == best["metrics"]["val_loss"]
    assert all(r["metrics"]["val_loss"] > best["metrics"]["val_loss"]
               for r in rows[stopped["best_epoch"] + 1:])
    assert app_client.get(f"/v1/models/{model['id']}").json()["params"] == best["params"]
    assert set(rows[0]["metrics"]) == {"accuracy", "log_loss", "val_loss", "val_accuracy",
                                       "val_log_loss"}


def test_validation_on_another_dataset(app_client: TestClient) -> None:
    train_set = created(app_client.post("/v1/datasets/synthetic", json={"seed": 1,
                                                                        "num_examples": 50}))
    held = created(app_client.post("/v1/datasets/synthetic", json={"seed": 2,
                                                                   "num_examples": 20}))
    model = created(app_client.post("/v1/models"))
    done = run(app_client, model["id"], dataset_id=train_set["id"], epochs=3,
               validation={"dataset_id": held["id"]}, loss="huber", huber_delta=0.5,
               regularization={"l2": 0.01})
    assert done["validation"] == {"dataset_id": held["id"]}
    assert (done["loss"], done["huber_delta"], done["regularization"]) == (
        "huber", 0.5, {"l1": 0.0, "l2": 0.01})
    row = app_client.get(f"/v1/runs/{done['id']}/history").json()["items"][0]
    x, y = (np.asarray(v) for v in app_client.get(
        f"/v1/datasets/{held['id']}/data").json().values())
    residual = x[:, 0] * 5.0 - y
    assert row["metrics"]["val_mse"] == pytest.approx(np.mean(residual**2), rel=1e-6)
    huber = np.where(np.abs(residual) <= 0.5, 0.5 * residual**2, 0.5 * np.abs(residual) - 0.125)
    assert row["metrics"]["val_loss"] == pytest.approx(np.mean(huber) + 0.01 * 25, rel=1e-6)


def test_history_columns_carry_metrics_and_params(app_client: TestClient) -> None:
    data = created(app_client.post("/v1/datasets/synthetic", json={
        "kind": "blobs", "num_examples": 60, "features": 2, "classes": 2, "seed": 3}))
    model = created(app_client.post("/v1/models", json={"kind": "logistic", "features": 2}))
    done = run(app_client, model["id"], dataset_id=data["id"], epochs=4, shuffle=False,
               batch_size=16, optimizer={"kind": "momentum", "learning_rate": 0.01})
    assert done["shuffle"] is False
    rows = app_client.get(f"/v1/runs/{done['id']}/history").json()["items"]
    columns = app_client.get(f"/v1/runs/{done['id']}/history",
                             params={"format": "columns"}).json()
    assert columns["metrics"]["accuracy"] == [r["metrics"]["accuracy"] for r in rows]
    assert columns["params"]["W"] == [r["params"]["W"] for r in rows] == columns["W"]
    assert columns["b"] == [r["b"] for r in rows] and columns["loss"] == [r["loss"] for r in rows]


def test_large_models_log_no_params_per_row(app_client: TestClient) -> None:
    data = created(app_client.post("/v1/datasets/synthetic", json={"seed": 1,
                                                                   "num_examples": 64}))
    model = created(app_client.post("/v1/models", json={"kind": "mlp", "hidden": [64, 64]}))
    assert model["param_count"] > Settings().history_params_max
    done = run(app_client, model["id"], dataset_id=data["id"], epochs=2)
    rows = app_client.get(f"/v1/runs/{done['id']}/history").json()["items"]
    assert [(r["params"], r["W"]) for r in rows] == [(None, None)] * 2
    assert all(r["metrics"]["rmse"] > 0 for r in rows)
    assert set(done["final"]["params"]) == {"W1", "b1", "W2", "b2", "W3", "b3"}
    columns = app_client.get(f"/v1/runs/{done['id']}/history", params={"format": "columns"})
    assert columns.json()["params"] is None and len(columns.json()["metrics"]["mae"]) == 2
    listed = app_client.get("/v1/models", params={"limit": 1000}).json()["items"]
    in_list = {m["id"]: m for m in listed}
    assert in_list[model["id"]]["params"] is None  # lists leave large params out...
    assert set(app_client.get(f"/v1/models/{model['id']}").json()["params"]) == {
        "W1", "b1", "W2", "b2", "W3", "b3"}  # ...the model itself has them
    assert all(m["params"] is not None for m in listed if m["param_count"] <= 4096)


def test_the_apps_own_settings_govern_validation_and_its_spec(tmp_path: Path) -> None:
    settings = Settings(database_url=sqlite_url(tmp_path), workers=1, max_epochs=5,
                        max_hidden_layers=2, max_page_size=7, history_params_max=1)
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        model = created(client.post("/v1/models"))
        data = created(client.post("/v1/datasets", json={"x": [1, 2], "y": [1, 2]}))
        answer = client.post(f"/v1/models/{model['id']}/runs",
                             json={"dataset_id": data["id"], "epochs": 50})
        assert answer.status_code == 422
        assert answer.json()["errors"][0]["loc"] == ["body", "epochs"]
        assert "TAPELINE_MAX_EPOCHS" in answer.json()["detail"]
        deep = client.post("/v1/models", json={"kind": "mlp", "hidden": [1, 1, 1]})
        assert deep.status_code == 422 and deep.json()["errors"][0]["loc"] == ["body", "hidden"]
        assert client.get("/v1/models", params={"limit": 8}).status_code == 422
        done = run(client, model["id"], dataset_id=data["id"], epochs=5)
        rows = client.get(f"/v1/runs/{done['id']}/history").json()["items"]
        assert rows[0]["params"] is None and rows[0]["W"] is None  # 2 parameters > 1
        spec = client.get("/openapi.json").json()["components"]["schemas"]
        assert spec["RunCreate"]["properties"]["epochs"]["maximum"] == 5
        assert spec["MLPModelCreate"]["properties"]["hidden"]["maxItems"] == 2
    with TestClient(create_app(Settings(database_url=sqlite_url(tmp_path), workers=1)),
                    base_url="http://localhost") as client:
        assert client.post(f"/v1/models/{model['id']}/runs", headers=WAIT, json={
            "dataset_id": data["id"], "epochs": 50}).status_code == 200


def test_a_classifier_run_needs_labels_in_range_of_ints(app_client: TestClient) -> None:
    """Labels 0..K-1 are accepted for K classes, and the class count bounds them."""
    data = created(app_client.post("/v1/datasets", json={"x": [1, 2, 3], "y": [0, 1, 2]}))
    model = created(app_client.post("/v1/models", json={"kind": "logistic", "classes": 3}))
    done = run(app_client, model["id"], dataset_id=data["id"], epochs=1)
    assert done["status"] == "succeeded" and math.isfinite(done["final"]["loss"])
