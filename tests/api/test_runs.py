"""Runs over HTTP: the tutorial to TensorFlow's numbers, optimizers, history, cancel, limits."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

WAIT = {"prefer": "wait=60"}


def wait_final(client: TestClient, run_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/v1/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "cancelled", "diverged"):
            return run
        time.sleep(0.02)
    raise AssertionError(f"run {run_id} did not finish")


def wait_status(client: TestClient, run_id: str, status: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while client.get(f"/v1/runs/{run_id}").json()["status"] != status:
        assert time.monotonic() < deadline, f"run {run_id} never became {status}"
        time.sleep(0.01)


def slow_setup(client: TestClient) -> tuple[str, str]:
    """A dataset and model whose mini-batch runs take about a second per epoch."""
    dataset = client.post("/v1/datasets/synthetic", json={"num_examples": 20000, "seed": 1})
    model = client.post("/v1/models")
    return dataset.json()["id"], model.json()["id"]


SLOW = {"epochs": 50, "batch_size": 4, "shuffle_seed": 0}


@pytest.mark.parametrize("case", ["seed_defaults", "small_lr_long"])
def test_tutorial_over_http_matches_tensorflow(app_client: TestClient, tf_cases: dict[str, Any],
                                               case: str) -> None:
    ref = tf_cases[case]
    dataset = app_client.post("/v1/datasets", json={"x": ref["x"], "y": ref["y"]}).json()
    model = app_client.post("/v1/models", json={"initial": {"W": [ref["initial"]["W"]],
                                                            "b": ref["initial"]["b"]}}).json()
    answer = app_client.post(f"/v1/models/{model['id']}/runs", headers=WAIT, json={
        "dataset_id": dataset["id"], "epochs": ref["epochs"],
        "optimizer": {"kind": "sgd", "learning_rate": ref["learning_rate"]}})
    assert answer.status_code == 200, answer.text
    run = answer.json()
    assert run["status"] == "succeeded" and run["epochs_completed"] == ref["epochs"]
    assert answer.headers["location"] == f"/v1/runs/{run['id']}"

    columns = app_client.get(f"/v1/runs/{run['id']}/history", params={"format": "columns"})
    history = columns.json()
    assert history["epoch"] == ref["history"]["epoch"]
    np.testing.assert_allclose([w[0] for w in history["W"]], ref["history"]["W"], rtol=1e-5)
    np.testing.assert_allclose(history["b"], ref["history"]["b"], rtol=1e-5)
    np.testing.assert_allclose(history["loss"], ref["history"]["loss"], rtol=1e-5)
    np.testing.assert_allclose([run["final"]["W"][0], run["final"]["b"]],
                               [ref["final"]["W"], ref["final"]["b"]], rtol=1e-5)

    rows = app_client.get(f"/v1/runs/{run['id']}/history").json()
    assert rows["next_cursor"] is None
    assert [r["loss"] for r in rows["items"]] == history["loss"]
    assert all(r["run_id"] == run["id"] for r in rows["items"])

    trained = app_client.get(f"/v1/models/{model['id']}").json()
    assert (trained["W"], trained["b"]) == (run["final"]["W"], run["final"]["b"])
    assert trained["epochs_trained"] == ref["epochs"] and trained["status"] == "idle"
    assert trained["last_loss"] == run["final"]["loss"]


def test_defaults_are_ten_epochs_of_full_batch_sgd(app_client: TestClient) -> None:
    dataset = app_client.post("/v1/datasets/synthetic", json={"seed": 3}).json()
    model = app_client.post("/v1/models").json()
    answer = app_client.post(f"/v1/models/{model['id']}/runs", headers=WAIT,
                             json={"dataset_id": dataset["id"]})
    run = answer.json()
    assert (run["epochs"], run["optimizer"], run["batch_size"], run["dtype"]) == (
        10, {"kind": "sgd", "learning_rate": 0.1}, None, "float32")
    assert run["initial"] == {"W": [5.0], "b": 0.0, "params": {"W": [5.0], "b": 0.0}}
    assert run["started_at"] <= run["finished_at"] and run["created_at"] <= run["started_at"]
    losses = [r["loss"] for r in app_client.get(f"/v1/runs/{run['id']}/history").json()["items"]]
    assert len(losses) == 10 and losses == sorted(losses, reverse=True)
    assert abs(run["final"]["W"][0] - 3.0) < 0.5 and abs(run["final"]["b"] - 2.0) < 0.5


def test_multi_feature_models_learn_each_weight(app_client: TestClient) -> None:
    dataset = app_client.post("/v1/datasets/synthetic", json={
        "true_W": [1.0, -2.0, 0.5], "true_b": -1.0, "noise_stddev": 0.1, "seed": 9}).json()
    model = app_client.post("/v1/models", json={"features": 3}).json()
    run = app_client.post(f"/v1/models/{model['id']}/runs", headers=WAIT, json={
        "dataset_id": dataset["id"], "epochs": 100}).json()
    assert run["status"] == "succeeded"
    np.testing.assert_allclose(run["final"]["W"], [1.0, -2.0, 0.5], atol=0.05)
    assert run["final"]["b"] == pytest.approx(-1.0, abs=0.05)


@pytest.mark.parametrize("optimizer", [
    {"kind": "sgd", "learning_rate": 0.05},
    {"kind": "momentum", "learning_rate": 0.02, "momentum": 0.9},
    {"kind": "momentum", "learning_rate": 0.02, "momentum": 0.9, "nesterov": True},
    {"kind": "adam", "learning_rate": 0.05},
])
def test_optimizers_and_minibatches_are_deterministic(app_client: TestClient,
                                                      optimizer: dict[str, Any]) -> None:
    dataset = app_client.post("/v1/datasets/synthetic", json={"num_examples": 500,
                                                              "seed": 2}).json()
    histories = []
    for _ in range(2):
        model = app_client.post("/v1/models").json()
        run = app_client.post(f"/v1/models/{model['id']}/runs", headers=WAIT, json={
            "dataset_id": dataset["id"], "epochs": 20, "optimizer": optimizer,
            "batch_size": 32, "shuffle_seed": 4}).json()
        assert run["status"] == "succeeded", run
        history = app_client.get(f"/v1/runs/{run['id']}/history", params={
            "format": "columns"}).json()
        histories.append((history["W"], history["b"], history["loss"]))
        assert run["optimizer"]["kind"] == optimizer["kind"]
    assert histories[0] == histories[1]
    assert histories[0][2][-1] < 1.3  # near the noise floor of 1.0


def test_float64_runs(app_client: TestClient) -> None:
    dataset = app_client.post("/v1/datasets/synthetic", json={"seed": 3}).json()
    runs = {}
    for dtype in ("float32", "float64"):
        model = app_client.post("/v1/models").json()
        runs[dtype] = app_client.post(f"/v1/models/{model['id']}/runs", headers=WAIT, json={
            "dataset_id": dataset["id"], "dtype": dtype}).json()
    assert runs["float64"]["dtype"] == "float64"
    assert runs["float32"]["final"]["W"] != runs["float64"]["final"]["W"]
    assert runs["float32"]["final"]["W"][0] == pytest.approx(runs["float64"]["final"]["W"][0],
                                                             rel=1e-5)


def test_divergence_ends_the_run_with_its_epoch(app_client: TestClient) -> None:
    dataset = app_client.post("/v1/datasets/synthetic", json={"seed": 3}).json()
    model = app_client.post("/v1/models").json()
    answer = app_client.post(f"/v1/models/{model['id']}/runs", headers=WAIT, json={
        "dataset_id": dataset["id"], "epochs": 1000,
        "optimizer": {"kind": "sgd", "learning_rate": 50}})
    run = answer.json()
    assert run["status"] == "diverged" and run["final"] is None
    assert run["error"]["reason"] == "diverged" and 0 < run["error"]["epoch"] < 1000
    history = app_client.get(f"/v1/runs/{run['id']}/history").json()["items"]
    assert len(history) == run["error"]["epoch"] == run["epochs_completed"]
    for text in (answer.text, app_client.get(f"/v1/runs/{run['id']}/history").text,
                 app_client.get(f"/v1/models/{model['id']}").text):
        assert "NaN" not in text and "Infinity" not in text
    assert app_client.get(f"/v1/models/{model['id']}").json()["W"] == [5.0]


def test_history_pages(app_client: TestClient) -> None:
    dataset = app_client.post("/v1/datasets/synthetic", json={"seed": 3}).json()
    model = app_client.post("/v1/models").json()
    first = app_client.post(f"/v1/models/{model['id']}/runs", headers=WAIT, json={
        "dataset_id": dataset["id"], "epochs": 7}).json()
    second = app_client.post(f"/v1/models/{model['id']}/runs", headers=WAIT, json={
        "dataset_id": dataset["id"], "epochs": 5}).json()
    assert second["initial"] == {key: first["final"][key] for key in ("W", "b", "params")}
    epochs, after = [], None
    while True:
        params = {"limit": 3} | ({"after": after} if after is not None else {})
        page = app_client.get(f"/v1/runs/{first['id']}/history", params=params).json()
        epochs += [r["epoch"] for r in page["items"]]
        after = page["next_cursor"]
        if after is None:
            break
    assert epochs == list(range(7))
    whole = app_client.get(f"/v1/models/{model['id']}/history", params={"format": "columns"})
    columns = whole.json()
    assert columns["step"] == list(range(12))
    assert columns["epoch"] == list(range(7)) + list(range(5))
    assert columns["run_id"] == [first["id"]] * 7 + [second["id"]] * 5
    tail = app_client.get(f"/v1/models/{model['id']}/history", params={"after": 9}).json()
    assert [r["step"] for r in tail["items"]] == [10, 11]
    runs = app_client.get(f"/v1/models/{model['id']}/runs").json()["items"]
    assert [r["id"] for r in runs] == [first["id"], second["id"]]
    assert app_client.get(f"/v1/models/{model['id']}").json()["epochs_trained"] == 12


def test_cancel_keeps_history_and_leaves_the_model_alone(app_client: TestClient) -> None:
    dataset_id, model_id = slow_setup(app_client)
    started = app_client.post(f"/v1/models/{model_id}/runs", json={"dataset_id": dataset_id,
                                                                  **SLOW})
    assert started.status_code == 202 and started.json()["status"] in ("queued", "running")
    run_id = started.json()["id"]
    deadline = time.monotonic() + 30
    while app_client.get(f"/v1/runs/{run_id}").json()["epochs_completed"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert app_client.get(f"/v1/models/{model_id}").json()["status"] == "training"
    cancelled = app_client.post(f"/v1/runs/{run_id}/cancel")
    assert cancelled.status_code == 202
    assert cancelled.json()["status"] in ("cancelling", "cancelled")
    run = wait_final(app_client, run_id)
    assert run["status"] == "cancelled" and run["error"]["reason"] == "cancelled"
    assert 1 <= run["epochs_completed"] < 50
    history = app_client.get(f"/v1/runs/{run_id}/history").json()["items"]
    assert len(history) == run["epochs_completed"]
    model = app_client.get(f"/v1/models/{model_id}").json()
    assert (model["W"], model["b"], model["status"]) == ([5.0], 0.0, "idle")
    again = app_client.post(f"/v1/runs/{run_id}/cancel")
    assert again.status_code == 202 and again.json()["status"] == "cancelled"


def test_conflicts_while_training(app_client: TestClient) -> None:
    dataset_id, model_id = slow_setup(app_client)
    run_id = app_client.post(f"/v1/models/{model_id}/runs", json={"dataset_id": dataset_id,
                                                                 **SLOW}).json()["id"]
    second = app_client.post(f"/v1/models/{model_id}/runs", json={"dataset_id": dataset_id})
    assert second.status_code == 409 and "active run" in second.json()["detail"]
    assert app_client.delete(f"/v1/models/{model_id}").status_code == 409
    assert app_client.delete(f"/v1/datasets/{dataset_id}").status_code == 409
    app_client.post(f"/v1/runs/{run_id}/cancel")
    wait_final(app_client, run_id)
    assert app_client.delete(f"/v1/datasets/{dataset_id}").status_code == 204
    assert app_client.get(f"/v1/runs/{run_id}").json()["dataset_id"] == dataset_id
    assert app_client.delete(f"/v1/models/{model_id}").status_code == 204
    assert app_client.get(f"/v1/runs/{run_id}").status_code == 404


def test_runs_beyond_the_workers_wait_queued_in_order(app_client: TestClient) -> None:
    dataset_id = app_client.post("/v1/datasets/synthetic", json={"num_examples": 20000,
                                                                 "seed": 1}).json()["id"]
    models = [app_client.post("/v1/models").json()["id"] for _ in range(4)]
    runs = [app_client.post(f"/v1/models/{m}/runs", json={"dataset_id": dataset_id, **SLOW})
            .json()["id"] for m in models]
    wait_status(app_client, runs[0], "running")
    wait_status(app_client, runs[1], "running")
    statuses = [app_client.get(f"/v1/runs/{r}").json()["status"] for r in runs]
    assert statuses[2:] == ["queued", "queued"]  # two workers in this app
    # Cancelling a queued run is immediate; the next one in line takes the free worker.
    assert app_client.post(f"/v1/runs/{runs[2]}/cancel").json()["status"] == "cancelled"
    app_client.post(f"/v1/runs/{runs[0]}/cancel")
    wait_status(app_client, runs[3], "running")
    for run_id in runs:
        app_client.post(f"/v1/runs/{run_id}/cancel")
    assert [wait_final(app_client, r)["status"] for r in runs] == ["cancelled"] * 4
    assert app_client.get(f"/v1/runs/{runs[2]}").json()["started_at"] is None


def test_prefer_wait_times_out_to_202(app_client: TestClient) -> None:
    dataset_id, model_id = slow_setup(app_client)
    start = time.monotonic()
    answer = app_client.post(f"/v1/models/{model_id}/runs", headers={"prefer": "wait=1"},
                             json={"dataset_id": dataset_id, **SLOW})
    assert 0.9 < time.monotonic() - start < 5
    assert answer.status_code == 202 and answer.json()["status"] == "running"
    app_client.post(f"/v1/runs/{answer.json()['id']}/cancel")
    wait_final(app_client, answer.json()["id"])


def test_metrics_count_runs_and_epochs(app_client: TestClient) -> None:
    text = app_client.get("/metrics").text
    assert 'tapeline_runs{status="succeeded"}' in text
    assert "tapeline_epochs_trained_total" in text
    assert 'tapeline_http_requests_total{method="POST",route="/v1/models/{model_id}/runs"' in text
    assert "tapeline_http_request_duration_seconds_bucket" in text
    succeeded = [line for line in text.splitlines()
                 if line.startswith('tapeline_runs{status="succeeded"}')]
    assert float(succeeded[0].split()[-1]) >= 1
    epochs = [line for line in text.splitlines()
              if line.startswith("tapeline_epochs_trained_total ")]
    runs = app_client.get("/v1/runs", params={"limit": 1000}).json()["items"]
    # Every run's epochs, summed when scraped (a run still training has only added more since).
    assert 10 <= float(epochs[0].split()[-1]) <= sum(r["epochs_completed"] for r in runs)
    assert app_client.get("/healthz").json() == {"status": "ok"}
    assert app_client.get("/readyz").json() == {"status": "ok"}
    answer = app_client.get("/healthz", headers={"x-request-id": "abc-123"})
    assert answer.headers["x-request-id"] == "abc-123"


def test_a_stream_of_a_deleted_run_just_ends(app_client: TestClient) -> None:
    from service.api.routes.history import follow

    dataset = app_client.post("/v1/datasets/synthetic", json={"seed": 3}).json()
    model = app_client.post("/v1/models").json()
    run = app_client.post(f"/v1/models/{model['id']}/runs", headers=WAIT,
                          json={"dataset_id": dataset["id"]}).json()
    runtime = app_client.app.state.runtime  # type: ignore[attr-defined]

    async def items() -> list[Any]:
        return [item async for batch in follow(runtime, run["id"], -1, ping=60)
                for item in batch or []]

    assert len(asyncio.run(items())) == 11  # ten epochs and the end
    assert app_client.delete(f"/v1/models/{model['id']}").status_code == 204
    assert asyncio.run(items()) == []  # ends, rather than failing mid-response
