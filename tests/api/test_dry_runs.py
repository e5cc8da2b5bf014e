"""``?dry_run=true``, on SQLite and PostgreSQL: the same checks and answers as the real request,
200 with the resource as it would be created (id null), and not a row stored nor a run
queued."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.store.tables import DatasetRow, EpochRow, ModelRow, RunRow

DRY = {"dry_run": "true"}


def counts(client: TestClient) -> dict[str, int]:
    """Rows of every table, counted in the store itself."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.sessions() as session:
        return {table.__name__: session.scalar(select(func.count()).select_from(table))
                for table in (DatasetRow, ModelRow, RunRow, EpochRow)}


def same_but_id(dry: dict[str, Any], real: dict[str, Any], *moving: str) -> None:
    assert dry["id"] is None and isinstance(real["id"], str)
    ignore = {"id", "created_at", "updated_at", *moving}
    assert {k: v for k, v in dry.items() if k not in ignore} == \
        {k: v for k, v in real.items() if k not in ignore}


def both(client: TestClient, path: str, **kwargs: Any) -> tuple[Any, Any]:
    """The dry run's answer (with nothing stored) and the real request's."""
    before = counts(client)
    dry = client.post(path, params=DRY, **kwargs)
    assert counts(client) == before, dry.text
    return dry, client.post(path, **kwargs)


def test_datasets(each_store: TestClient) -> None:
    body = {"x": [[1, 2], [3, 4], [5, 6]], "y": ["b", "a", "b"], "name": "pets"}
    dry, real = both(each_store, "/v1/datasets", json=body)
    assert (dry.status_code, real.status_code) == (200, 201)
    assert "location" not in dry.headers
    same_but_id(dry.json(), real.json())
    assert dry.json()["classes"] == ["a", "b"]
    dry, real = both(each_store, "/v1/datasets/synthetic", json={"seed": 3})
    assert (dry.status_code, real.status_code) == (200, 201)
    same_but_id(dry.json(), real.json())
    assert dry.json()["synthetic"]["num_examples"] == 1000  # defaults resolved
    files = {"file": ("d.csv", b"a,y\n1,2\n3,4\n")}
    dry, real = both(each_store, "/v1/datasets/upload", files=files)
    assert (dry.status_code, real.status_code) == (200, 201)
    same_but_id(dry.json(), real.json())


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/datasets", {"x": [1, 2, 3], "y": [1, 2]}),
    ("/v1/datasets", {"x": [[1, 2], [3]], "y": [1, 2]}),
    ("/v1/datasets/synthetic", {"num_examples": 10**7, "true_W": [1, 2, 3]}),
    ("/v1/models", {"kind": "mlp", "features": 1000, "hidden": [1000, 1000]}),
    ("/v1/models", {"kind": "linear", "features": 2, "initial": {"W": [1.0]}}),
    ("/v1/models", {"kind": "logistic", "classes": 1}),
])
def test_bad_bodies_answer_as_the_real_request(each_store: TestClient, path: str,
                                               body: dict[str, Any]) -> None:
    before = counts(each_store)
    content = each_store.post(path, params=DRY, json=body).json()
    real = each_store.post(path, json=body).json()
    assert content["status"] in (400, 422) and content == real
    assert counts(each_store) == before


def test_models(each_store: TestClient) -> None:
    dry, real = both(each_store, "/v1/models", json={"features": 2})
    assert (dry.status_code, real.status_code) == (200, 201)
    same_but_id(dry.json(), real.json())
    assert dry.json()["params"] == {"W": [5.0, 5.0], "b": 0.0}
    body = {"kind": "mlp", "features": 2, "task": "classification"}
    dry, real = both(each_store, "/v1/models", json=body)
    assert dry.json()["classes"] == 2 and dry.json()["hidden"] == [16]
    assert isinstance(dry.json()["random_seed"], int)  # drawn, as a real request would
    same_but_id(dry.json(), real.json(), "params", "random_seed")


def test_runs(each_store: TestClient) -> None:
    data = each_store.post("/v1/datasets", json={"x": [[0, 1], [1, 0], [2, 2]],
                                                 "y": [0, 1, 2]}).json()
    model = each_store.post("/v1/models", json={"features": 2}).json()
    body = {"dataset_id": data["id"], "epochs": 3}
    path = f"/v1/models/{model['id']}/runs"
    before = counts(each_store)
    dry = each_store.post(path, params=DRY, json=body, headers={"prefer": "wait=5"})
    assert dry.status_code == 200, dry.text
    run = dry.json()
    assert run["id"] is None and run["status"] == "queued" and run["epochs_completed"] == 0
    assert run["loss"] == "mse" and run["optimizer"] == {"kind": "sgd", "learning_rate": 0.1}
    assert run["initial"]["W"] == [5.0, 5.0]
    assert counts(each_store) == before
    assert each_store.get(path).json()["items"] == []
    assert each_store.get(f"/v1/models/{model['id']}").json()["status"] == "idle"
    real = each_store.post(path, json=body, headers={"prefer": "wait=60"})
    assert real.status_code == 200 and real.json()["status"] == "succeeded"
    same_but_id(run, real.json(), "status", "epochs_completed", "started_at", "finished_at",
                "duration_ms", "final")


def test_runs_refused_as_the_real_request(each_store: TestClient) -> None:
    classes = each_store.post("/v1/datasets", json={"x": [[0], [1], [2]],
                                                    "y": [0, 1, 5]}).json()
    wide = each_store.post("/v1/datasets", json={"x": [[0, 1, 2]], "y": [1]}).json()
    logistic = each_store.post("/v1/models", json={"kind": "logistic", "classes": 3}).json()
    linear = each_store.post("/v1/models", json={}).json()
    cases = [
        (logistic["id"], {"dataset_id": classes["id"]}, 422, "class indices"),
        (linear["id"], {"dataset_id": wide["id"]}, 422, "feature(s)"),
        (linear["id"], {"dataset_id": "ds_missing"}, 404, "ds_missing"),
        ("mdl_missing", {"dataset_id": wide["id"]}, 404, "mdl_missing"),
        (linear["id"], {"dataset_id": classes["id"], "loss": "cross_entropy"}, 422, "loss"),
    ]
    before = counts(each_store)
    for model_id, body, status, words in cases:
        path = f"/v1/models/{model_id}/runs"
        dry = each_store.post(path, params=DRY, json=body)
        assert dry.status_code == status and words in dry.json()["detail"], dry.text
        assert each_store.post(path, json=body).json() == dry.json()
    assert counts(each_store) == before
