"""Models over HTTP: create with each kind of initial parameters, read, predict, delete."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient


def test_default_model_is_the_tutorials(app_client: TestClient) -> None:
    answer = app_client.post("/v1/models")
    assert answer.status_code == 201
    model = answer.json()
    assert answer.headers["location"] == f"/v1/models/{model['id']}"
    assert {k: model[k] for k in ("kind", "features", "W", "b", "epochs_trained", "last_loss",
                                  "status")} == {
        "kind": "linear", "features": 1, "W": [5.0], "b": 0.0, "epochs_trained": 0,
        "last_loss": None, "status": "idle"}
    assert model["created_at"].endswith("Z") and model["created_at"] == model["updated_at"]
    assert app_client.get(f"/v1/models/{model['id']}").json() == model


def test_explicit_and_seeded_initial_parameters(app_client: TestClient) -> None:
    explicit = app_client.post("/v1/models", json={"features": 2,
                                                   "initial": {"W": [1.5, -2], "b": 0.25}})
    assert explicit.json()["W"] == [1.5, -2.0] and explicit.json()["b"] == 0.25
    seeded = [app_client.post("/v1/models", json={"features": 3, "initial": {"random_seed": 4}})
              .json() for _ in range(2)]
    assert seeded[0]["W"] == seeded[1]["W"] and len(set(seeded[0]["W"])) == 3
    assert app_client.post("/v1/models", json={
        "features": 3, "initial": {"random_seed": 5}}).json()["W"] != seeded[0]["W"]


def test_wrong_number_of_initial_weights_is_422(app_client: TestClient) -> None:
    answer = app_client.post("/v1/models", json={"features": 2, "initial": {"W": [1.0]}})
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["loc"] == ["body", "initial", "W"]


def test_predict(app_client: TestClient) -> None:
    model = app_client.post("/v1/models", json={"features": 2,
                                                "initial": {"W": [2, -1], "b": 0.5}}).json()
    answer = app_client.post(f"/v1/models/{model['id']}/predict", json={"x": [[1, 1], [3, 0]]})
    assert answer.status_code == 200
    assert answer.json() == {"y": [1.5, 6.5]}
    flat = app_client.post(f"/v1/models/{model['id']}/predict", json={"x": [1, 2]})
    assert flat.status_code == 422 and "2 feature" in flat.json()["detail"]
    one = app_client.post("/v1/models").json()
    y = app_client.post(f"/v1/models/{one['id']}/predict", json={"x": [-1, 0, 2]}).json()["y"]
    assert np.allclose(y, [-5, 0, 10])


def test_prediction_overflow_is_422_not_infinity(app_client: TestClient) -> None:
    model = app_client.post("/v1/models", json={"initial": {"W": [1e300]}}).json()
    answer = app_client.post(f"/v1/models/{model['id']}/predict", json={"x": [1e300]})
    assert answer.status_code == 422
    assert "Infinity" not in answer.text and "NaN" not in answer.text


def test_list_and_delete(app_client: TestClient) -> None:
    created = app_client.post("/v1/models", json={"name": "to-delete"}).json()
    listed = app_client.get("/v1/models", params={"limit": 1000}).json()
    assert created["id"] in [m["id"] for m in listed["items"]]
    assert app_client.delete(f"/v1/models/{created['id']}").status_code == 204
    assert app_client.get(f"/v1/models/{created['id']}").status_code == 404
