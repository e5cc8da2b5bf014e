"""Keras 3's own runs (tests/fixtures/keras_reference_runs.json, six cases, and
keras_reference_runs_v3.json, three more: L1 + L2 on a linear model, a sigmoid MLP classifier
under Nesterov momentum, softmax in unshuffled mini-batches with L2 and validation),
reproduced through the HTTP API: upload the data, create the model with ``initial.params``,
run, read the history. Every row's params, loss and metrics, and the final ones, agree within
the case's tolerance: the norm of the difference over the norm of Keras' array; accuracy
within one example.

Any case of the same shape runs the same way (the comparison reads everything from the case).
Every case runs with the training step compiled (the default) and eager (TAPELINE_COMPILE=false,
read by the worker processes); every case takes at least 20 steps of one batch shape, so the
compiled runs replay plans from their 17th call of each batch shape on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.support.servers import sqlite_url

FIXTURES = Path(__file__).parents[1] / "fixtures"
CASES: dict[str, dict[str, Any]] = {
    name: case
    for fixture in ("keras_reference_runs.json", "keras_reference_runs_v3.json")
    for name, case in json.loads((FIXTURES / fixture).read_text())["cases"].items()
}
WAIT = {"prefer": "wait=120"}


@pytest.fixture(scope="module", params=["compiled", "eager"])
def app_client(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The in-process app, its workers training with the step compiled, then eager."""
    folder = tmp_path_factory.mktemp("keras")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TAPELINE_COMPILE", str(request.param == "compiled").lower())
        settings = Settings(database_url=sqlite_url(folder), workers=2)
        with TestClient(create_app(settings), base_url="http://localhost",
                        raise_server_exceptions=False) as client:
            yield client


def relative_error(ours: Any, theirs: Any) -> float:
    """Norm of the difference over the norm of the reference (the difference's norm when the
    reference is all zeros)."""
    a, b = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = float(np.linalg.norm(b))
    difference = float(np.linalg.norm(a - b))
    return difference / scale if scale else difference


def dataset(client: TestClient, data: dict[str, Any]) -> str:
    answer = client.post("/v1/datasets", json={"x": data["x"], "y": data["y"]})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def rows_counted(case: dict[str, Any], key: str) -> int:
    """How many examples a metric counts: the training rows, or the validation rows."""
    n = len(case["data"]["y"])
    validation = case["run"].get("validation") or {}
    if "fraction" in validation:
        train = math.ceil(n * (1 - validation["fraction"]))
        return n - train if key.startswith("val_") else train
    if key.startswith("val_") and "validation_data" in case:
        return len(case["validation_data"]["y"])
    return n


def compare(case: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any],
            where: str) -> None:
    """Params, loss and every metric Keras reports, within the tolerance."""
    tolerance = case["tolerance"]
    for name, value in theirs["params"].items():
        error = relative_error(ours["params"][name], value)
        assert error <= tolerance, f"{where} {name}: relative error {error:.2e}"
    for key, value in theirs.items():
        if key in ("epoch", "params"):
            continue
        found = ours["loss"] if key == "loss" else ours["metrics"][key]
        if key.endswith("accuracy"):
            assert abs(found - value) <= 1 / rows_counted(case, key) + 1e-12, (where, key)
        else:
            error = relative_error(found, value)
            assert error <= tolerance, f"{where} {key}: relative error {error:.2e}"


@pytest.mark.parametrize("name", list(CASES))
def test_keras_reference_run(app_client: TestClient, name: str) -> None:
    case = CASES[name]
    run_body = dict(case["run"])
    if "validation_data" in case:
        run_body["validation"] = {"dataset_id": dataset(app_client, case["validation_data"])}
    model = app_client.post("/v1/models", json={**case["model"],
                                                "initial": {"params": case["initial"]}})
    assert model.status_code == 201, model.text
    answer = app_client.post(f"/v1/models/{model.json()['id']}/runs", headers=WAIT, json={
        **run_body, "dataset_id": dataset(app_client, case["data"])})
    assert answer.status_code == 200, answer.text
    run = answer.json()
    assert run["status"] == "succeeded", run["error"]

    rows = app_client.get(f"/v1/runs/{run['id']}/history").json()["items"]
    assert [r["epoch"] for r in rows] == [r["epoch"] for r in case["history"]]
    for ours, theirs in zip(rows, case["history"], strict=True):
        compare(case, ours, theirs, f"epoch {theirs['epoch']}")
    compare(case, run["final"], case["final"], "final")
    trained = app_client.get(f"/v1/models/{run['model_id']}").json()
    assert trained["params"] == run["final"]["params"]
