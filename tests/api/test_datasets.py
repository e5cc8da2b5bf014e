"""Datasets over HTTP: inline, synthetic, upload, read, list, download, delete."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient


def test_synthetic_defaults_are_the_tutorials(app_client: TestClient) -> None:
    answer = app_client.post("/v1/datasets/synthetic")
    assert answer.status_code == 201
    dataset = answer.json()
    assert answer.headers["location"] == f"/v1/datasets/{dataset['id']}"
    assert (dataset["num_examples"], dataset["features"], dataset["dtype"]) == (1000, 1, "float32")
    assert dataset["source"] == "synthetic"
    params = dataset["synthetic"]
    assert {k: params[k] for k in ("num_examples", "true_W", "true_b", "noise_stddev")} == {
        "num_examples": 1000, "true_W": [3.0], "true_b": 2.0, "noise_stddev": 1.0}
    assert isinstance(params["seed"], int)
    # y ~ 3x + 2 + N(0,1): mean near 2, std near sqrt(10)
    assert dataset["summary"]["y_mean"] == pytest.approx(2.0, abs=0.35)
    assert dataset["summary"]["y_std"] == pytest.approx(10**0.5, abs=0.3)


def test_synthetic_is_deterministic_for_a_seed(app_client: TestClient) -> None:
    body = {"num_examples": 50, "true_W": [1.0, -2.0], "true_b": 0.5, "seed": 7}
    first = app_client.post("/v1/datasets/synthetic", json=body).json()
    second = app_client.post("/v1/datasets/synthetic", json=body).json()
    assert first["id"] != second["id"] and first["features"] == 2
    data = [app_client.get(f"/v1/datasets/{d['id']}/data").json() for d in (first, second)]
    assert data[0] == data[1]
    x, y = np.array(data[0]["x"]), np.array(data[0]["y"])
    assert x.shape == (50, 2)
    residual = y - (x @ [1.0, -2.0] + 0.5)
    assert abs(residual.mean()) < 0.5 and 0.6 < residual.std() < 1.4


def test_inline_flat_and_row_inputs(app_client: TestClient) -> None:
    flat = app_client.post("/v1/datasets", json={"x": [1, 2, 3], "y": [2, 4, 6], "name": "f"})
    rows = app_client.post("/v1/datasets", json={"x": [[1, 0], [0, 1], [1, 1]], "y": [1, 2, 3]})
    assert flat.status_code == rows.status_code == 201
    assert (flat.json()["features"], rows.json()["features"]) == (1, 2)
    assert flat.json()["name"] == "f" and flat.json()["source"] == "inline"
    assert flat.json()["summary"] == {"x_mean": [2.0], "x_std": [pytest.approx(0.8164965809)],
                                      "y_mean": 4.0, "y_std": pytest.approx(1.6329931618)}
    got = app_client.get(f"/v1/datasets/{rows.json()['id']}/data").json()
    assert got == {"x": [[1, 0], [0, 1], [1, 1]], "y": [1, 2, 3]}


def test_download_formats(app_client: TestClient) -> None:
    dataset_id = app_client.post("/v1/datasets", json={"x": [0.5, 1.5], "y": [1, 2]}).json()["id"]
    csv = app_client.get(f"/v1/datasets/{dataset_id}/data", headers={"accept": "text/csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.text == "x,y\n0.5,1.0\n1.5,2.0\n"
    npz = app_client.get(f"/v1/datasets/{dataset_id}/data",
                         headers={"accept": "application/octet-stream"})
    archive = np.load(io.BytesIO(npz.content))
    assert archive["x"].tolist() == [[0.5], [1.5]] and archive["y"].tolist() == [1, 2]
    refused = app_client.get(f"/v1/datasets/{dataset_id}/data",
                             headers={"accept": "application/xml"})
    assert refused.status_code == 406
    assert refused.headers["content-type"] == "application/problem+json"


def test_upload_csv_npy_npz(app_client: TestClient) -> None:
    csv = b"a,b,target\n1,2,3\n4,5,9\n7,8,15\n"
    up = app_client.post("/v1/datasets/upload", files={"file": ("d.csv", csv, "text/csv")},
                         data={"target": "target"})
    assert up.status_code == 201, up.text
    assert (up.json()["features"], up.json()["num_examples"], up.json()["source"]) == (2, 3,
                                                                                      "upload")
    assert app_client.get(f"/v1/datasets/{up.json()['id']}/data").json() == {
        "x": [[1, 2], [4, 5], [7, 8]], "y": [3, 9, 15]}

    buffer = io.BytesIO()
    np.save(buffer, np.array([[1.0, 10.0], [2.0, 20.0]], dtype=np.float32))
    npy = app_client.post("/v1/datasets/upload",
                          files={"file": ("d.npy", buffer.getvalue(), "application/octet-stream")})
    assert npy.status_code == 201 and npy.json()["dtype"] == "float32"
    assert app_client.get(f"/v1/datasets/{npy.json()['id']}/data").json() == {
        "x": [[1.0], [2.0]], "y": [10.0, 20.0]}

    buffer = io.BytesIO()
    np.savez(buffer, x=np.arange(4.0), label=np.arange(4.0) * 2)
    npz = app_client.post("/v1/datasets/upload", data={"target": "label"},
                          files={"file": ("d.npz", buffer.getvalue(), "application/zip")})
    assert npz.status_code == 201 and npz.json()["features"] == 1


def test_list_pages_with_cursor(app_client: TestClient) -> None:
    for i in range(3):
        app_client.post("/v1/datasets", json={"x": [i], "y": [i], "name": f"page-{i}"})
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = app_client.get("/v1/datasets", params=params).json()
        seen += [d["id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) >= 3
    everything = app_client.get("/v1/datasets", params={"limit": 1000}).json()["items"]
    assert seen == [d["id"] for d in everything]


def test_delete_then_404(app_client: TestClient) -> None:
    dataset_id = app_client.post("/v1/datasets", json={"x": [1], "y": [1]}).json()["id"]
    assert app_client.delete(f"/v1/datasets/{dataset_id}").status_code == 204
    assert app_client.get(f"/v1/datasets/{dataset_id}").status_code == 404
    assert app_client.delete(f"/v1/datasets/{dataset_id}").status_code == 404
