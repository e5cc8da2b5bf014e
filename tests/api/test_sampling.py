"""Long runs stay light: `max_points` downsampling of histories, `sample` of datasets, and the
list of every run, newest first."""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.support.longrun import store_finished_run, trajectory

EPOCHS = 100_000


@pytest.fixture(scope="module")
def long_run(app_client: TestClient) -> dict[str, Any]:
    """A finished 100,000-epoch run of a fresh model (written straight into the store)."""
    dataset = app_client.post("/v1/datasets/synthetic", json={"seed": 3}).json()
    model = app_client.post("/v1/models").json()
    url = app_client.app.state.runtime.settings.database_url  # type: ignore[attr-defined]
    run_id = store_finished_run(url, model["id"], dataset["id"], EPOCHS)
    return app_client.get(f"/v1/runs/{run_id}").json()


def buckets(n: int, max_points: int) -> list[range]:
    """The documented rule: max_points // 4 equal buckets, bucket k = [k*n//B, (k+1)*n//B)."""
    count = max_points // 4
    return [range(k * n // count, (k + 1) * n // count) for k in range(count)]


@pytest.mark.parametrize("max_points", [4, 1000, 2000])
def test_max_points_keeps_first_last_and_every_buckets_extremes(
        app_client: TestClient, long_run: dict[str, Any], max_points: int) -> None:
    answer = app_client.get(f"/v1/runs/{long_run['id']}/history",
                            params={"format": "columns", "max_points": max_points})
    assert answer.status_code == 200
    columns = answer.json()
    epochs = columns["epoch"]
    assert len(epochs) <= max_points <= 2 * max_points
    assert epochs[0] == 0 and epochs[-1] == EPOCHS - 1
    assert epochs == sorted(set(epochs)) and columns["next_cursor"] is None
    W, b, loss = trajectory(EPOCHS)
    # Every row is the stored row of its epoch.
    assert np.allclose(columns["loss"], loss[epochs])
    assert np.allclose([w[0] for w in columns["W"]], W[epochs])
    assert np.allclose(columns["b"], b[epochs])
    kept = dict(zip(epochs, columns["loss"], strict=True))
    for bucket in buckets(EPOCHS, max_points):
        values = loss[bucket.start:bucket.stop]
        low, high = bucket.start + int(values.argmin()), bucket.start + int(values.argmax())
        assert kept.get(low) == pytest.approx(values.min(), rel=1e-12), bucket
        assert kept.get(high) == pytest.approx(values.max(), rel=1e-12), bucket
        assert bucket.start in kept and bucket.stop - 1 in kept


def test_max_points_rows_after_and_model_history(app_client: TestClient,
                                                 long_run: dict[str, Any]) -> None:
    rows = app_client.get(f"/v1/runs/{long_run['id']}/history",
                          params={"max_points": 400, "after": 89_999}).json()
    epochs = [r["epoch"] for r in rows["items"]]
    assert epochs[0] == 90_000 and epochs[-1] == EPOCHS - 1 and len(epochs) <= 400
    model = app_client.get(f"/v1/models/{long_run['model_id']}/history",
                           params={"format": "columns", "max_points": 1000}).json()
    assert model["step"][0] == 0 and model["step"][-1] == EPOCHS - 1
    assert len(model["step"]) <= 1000 and set(model["run_id"]) == {long_run["id"]}


def test_max_points_above_the_row_count_returns_every_row(app_client: TestClient) -> None:
    dataset = app_client.post("/v1/datasets/synthetic", json={"seed": 1}).json()
    model = app_client.post("/v1/models").json()
    run = app_client.post(f"/v1/models/{model['id']}/runs", headers={"prefer": "wait=30"},
                          json={"dataset_id": dataset["id"], "epochs": 12}).json()
    every = app_client.get(f"/v1/runs/{run['id']}/history", params={"format": "columns"}).json()
    kept = app_client.get(f"/v1/runs/{run['id']}/history",
                          params={"format": "columns", "max_points": 100}).json()
    assert kept == every


@pytest.mark.parametrize("value", ["3", "10001", "x"])
def test_max_points_out_of_range_is_422(app_client: TestClient, long_run: dict[str, Any],
                                        value: str) -> None:
    answer = app_client.get(f"/v1/runs/{long_run['id']}/history", params={"max_points": value})
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["loc"] == ["query", "max_points"]


def test_a_dataset_sample_is_seeded_in_order_and_of_the_data(app_client: TestClient) -> None:
    dataset = app_client.post("/v1/datasets/synthetic",
                              json={"num_examples": 5000, "seed": 9}).json()
    path = f"/v1/datasets/{dataset['id']}/data"
    full = app_client.get(path).json()
    sample = app_client.get(path, params={"sample": 100}).json()
    assert len(sample["x"]) == len(sample["y"]) == 100
    rows = {(x[0], y) for x, y in zip(full["x"], full["y"], strict=True)}
    picked = [(x[0], y) for x, y in zip(sample["x"], sample["y"], strict=True)]
    assert set(picked) <= rows
    order = {row: i for i, row in enumerate(zip((x[0] for x in full["x"]), full["y"], strict=True))}
    assert [order[row] for row in picked] == sorted(order[row] for row in picked)
    assert app_client.get(path, params={"sample": 100}).json() == sample  # the same rows again
    assert app_client.get(path, params={"sample": 100, "seed": 1}).json() != sample
    assert app_client.get(path, params={"sample": 10_000}).json() == full
    csv = app_client.get(path, params={"sample": 7}, headers={"accept": "text/csv"}).text
    assert len(csv.strip().splitlines()) == 8
    npz = np.load(io.BytesIO(app_client.get(path, params={"sample": 7}, headers={
        "accept": "application/octet-stream"}).content))
    assert npz["x"].shape == (7, 1)
    for bad in ("0", "-1", "2.5"):
        answer = app_client.get(path, params={"sample": bad})
        assert answer.status_code == 422
        assert answer.json()["errors"][0]["loc"] == ["query", "sample"]


def test_a_kept_sample_is_the_datasets_and_gone_with_it(app_client: TestClient) -> None:
    from service.api.routes.datasets import samples

    dataset = app_client.post("/v1/datasets/synthetic",
                              json={"num_examples": 3000, "seed": 4}).json()
    path = f"/v1/datasets/{dataset['id']}/data"
    first = app_client.get(path, params={"sample": 50, "seed": 3}).json()
    store = app_client.app.state.runtime.sessions  # type: ignore[attr-defined]
    assert samples.get((id(store), "default", dataset["id"], 50, 3)) is not None
    assert app_client.get(path, params={"sample": 50, "seed": 3}).json() == first
    assert app_client.delete(f"/v1/datasets/{dataset['id']}").status_code == 204
    gone = app_client.get(path, params={"sample": 50, "seed": 3})
    assert gone.status_code == 404


def test_every_run_newest_first_in_pages(app_client: TestClient) -> None:
    dataset = app_client.post("/v1/datasets/synthetic", json={"seed": 2}).json()
    made = []
    for _ in range(3):
        model = app_client.post("/v1/models").json()
        made.append(app_client.post(f"/v1/models/{model['id']}/runs", headers={"prefer": "wait=30"},
                                    json={"dataset_id": dataset["id"]}).json()["id"])
    first = app_client.get("/v1/runs", params={"order": "newest", "limit": 2}).json()
    assert [r["id"] for r in first["items"]] == made[::-1][:2]
    second = app_client.get("/v1/runs", params={"order": "newest", "limit": 2,
                                                "cursor": first["next_cursor"]}).json()
    assert second["items"][0]["id"] == made[0]
    oldest = app_client.get("/v1/runs", params={"limit": 1000}).json()["items"]
    assert [r["id"] for r in oldest][-3:] == made
    models = app_client.get("/v1/models", params={"order": "newest", "limit": 1}).json()
    assert models["items"][0]["id"] == oldest[-1]["model_id"]
    assert app_client.get("/v1/runs", params={"order": "sideways"}).status_code == 422


def test_a_finished_runs_chart_answer_is_reused_and_a_running_runs_is_not(
        app_client: TestClient, long_run: dict[str, Any]) -> None:
    from service.api.routes.history import finished_answers

    params = {"format": "columns", "max_points": 400, "after": 17}
    first = app_client.get(f"/v1/runs/{long_run['id']}/history", params=params)
    assert first.status_code == 200
    store = app_client.app.state.runtime.sessions  # type: ignore[attr-defined]
    key = (id(store), "default", long_run["id"], 17, 400, "columns")
    assert finished_answers.get(key) == first.content  # kept, rendered
    again = app_client.get(f"/v1/runs/{long_run['id']}/history", params=params)
    assert again.content == first.content
    assert again.headers["content-type"] == "application/json"
    assert again.json()["epoch"][0] == 18
    # A run still training is read afresh each time: its history grows.
    dataset = app_client.post("/v1/datasets/synthetic",
                              json={"num_examples": 4000, "seed": 5}).json()
    model = app_client.post("/v1/models").json()
    running = app_client.post(f"/v1/models/{model['id']}/runs", json={
        "dataset_id": dataset["id"], "epochs": 10_000, "batch_size": 1}).json()["id"]
    try:
        seen: list[int] = []
        deadline = time.monotonic() + 60
        while len(seen) < 2 and time.monotonic() < deadline:
            answer = app_client.get(f"/v1/runs/{running}/history", params={"max_points": 400})
            count = len(answer.json()["items"])
            if count and (not seen or count > seen[-1]):
                seen.append(count)
            time.sleep(0.05)
        assert len(seen) == 2, f"the running run's history did not grow: {seen}"
        assert app_client.get(f"/v1/runs/{running}").json()["status"] == "running"
        assert (id(store), "default", running, None, 400, "rows") not in finished_answers.values
    finally:
        app_client.post(f"/v1/runs/{running}/cancel")
