"""The byte quota counts everything a tenant stores, on SQLite and PostgreSQL: datasets,
models' params, runs' histories and checkpoints, as `usage.stored` shows; a model or dataset
past it is a 429, and a run whose history would pass it stops as failed (reason `quota`) with
its history up to there kept. (A 3,000-epoch run stored 106 MB under a 5 MB quota while
`usage.stored_bytes` said 0.)"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.conftest import POSTGRES_PARAM
from tests.support.servers import sqlite_url
from tests.support.stores import store_url

ADMIN = "tl_" + "B" * 43
WAIT = {"prefer": "wait=120"}
MLP = {"kind": "mlp", "features": 2, "hidden": [1023], "initial": {"random_seed": 1}}


@pytest.fixture(scope="module", params=["sqlite", pytest.param(POSTGRES_PARAM,
                                                               marks=pytest.mark.postgres)])
def keyed(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app with keys required and a 5 MB default byte quota, on each store."""
    with ExitStack() as stack:
        url = store_url(request, tmp_path_factory.mktemp("quota"), stack)
        settings = Settings(database_url=url, workers=1, auth="required",
                            bootstrap_admin_key=ADMIN, tenant_rate_limit="10000/second",
                            tenant_max_stored_bytes=5_000_000)
        yield stack.enter_context(TestClient(create_app(settings), base_url="http://localhost",
                                             raise_server_exceptions=False))


def tenant(client: TestClient, name: str) -> dict[str, str]:
    answer = client.post("/v1/keys", headers={"Authorization": f"Bearer {ADMIN}"},
                         json={"tenant": name, "scopes": ["read", "write"]})
    assert answer.status_code == 201, answer.text
    return {"Authorization": f"Bearer {answer.json()['key']}"}


def usage(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    return dict(client.get("/v1/me", headers=headers).json()["usage"])


def created(answer: Any, status: int = 201) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    return dict(answer.json())


def test_usage_counts_models_runs_and_histories(keyed: TestClient) -> None:
    headers = tenant(keyed, "team-usage")
    assert usage(keyed, headers)["stored"] == {"datasets": 0, "models": 0, "runs": 0,
                                               "checkpoints": 0}
    model = created(keyed.post("/v1/models", headers=headers, json=MLP))
    models = usage(keyed, headers)["stored"]["models"]
    assert models > 4093 * 8  # the params' blob: was not counted
    data = created(keyed.post("/v1/datasets", headers=headers,
                              json={"x": [[0, 1], [1, 0]], "y": [0.0, 1.0]}))
    run = created(keyed.post(f"/v1/models/{model['id']}/runs", headers={**headers, **WAIT}, json={
        "dataset_id": data["id"], "epochs": 16, "record_params": 4}), 200)
    assert run["status"] == "succeeded"
    found = usage(keyed, headers)
    # initial and final params, 4 rows of params and 16 rows of 128 bytes
    assert found["stored"]["runs"] > 6 * 4093 * 8 + 16 * 128
    assert found["stored"]["checkpoints"] == 0  # a finished run keeps none
    assert found["stored_bytes"] == sum(found["stored"].values())
    keyed.delete(f"/v1/models/{model['id']}", headers=headers)
    assert usage(keyed, headers)["stored"]["runs"] == usage(keyed, headers)["stored"]["models"] \
        == 0


def test_a_run_past_the_quota_fails_and_keeps_its_history(keyed: TestClient) -> None:
    headers = tenant(keyed, "team-full")
    model = created(keyed.post("/v1/models", headers=headers, json=MLP))
    data = created(keyed.post("/v1/datasets", headers=headers,
                              json={"x": [[0, 1], [1, 0]], "y": [0.0, 1.0]}))
    run = created(keyed.post(f"/v1/models/{model['id']}/runs", headers={**headers, **WAIT}, json={
        "dataset_id": data["id"], "epochs": 3000, "record_params": 1,
        "optimizer": {"kind": "sgd", "learning_rate": 0.001}}), 200)
    assert run["status"] == "failed", run  # was: succeeded, 106 MB stored
    assert run["error"]["reason"] == "quota" and run["error"]["epoch"] == run["epochs_completed"]
    assert "quota of 5000000 stored bytes" in run["error"]["detail"]
    assert 0 < run["epochs_completed"] < 3000
    history = keyed.get(f"/v1/runs/{run['id']}/history", headers=headers).json()
    assert [row["epoch"] for row in history["items"]] == list(range(run["epochs_completed"]))
    used = usage(keyed, headers)["stored_bytes"]
    # Up to a row and a checkpoint (dropped at the end) below the quota, or the final params
    # above it.
    assert 4_800_000 < used <= 5_000_000 + 4093 * 8
    keyed.put("/v1/tenants/team-full/quotas", headers={"Authorization": f"Bearer {ADMIN}"},
              json={"max_stored_bytes": used})
    again = keyed.post("/v1/models", headers=headers, json=MLP)
    assert again.status_code == 429 and f"quota of {used} bytes" in again.json()["detail"]
    assert again.headers["RateLimit-Limit"] == str(used)
    refused = keyed.post(f"/v1/models/{model['id']}/runs", headers=headers,
                         json={"dataset_id": data["id"]})
    assert refused.status_code == 429  # its copy of the params would pass the quota


def test_models_and_datasets_past_the_quota_are_not_stored(keyed: TestClient) -> None:
    headers = tenant(keyed, "team-models")
    big = {"kind": "mlp", "features": 100, "hidden": [3000]}  # 2.4 MB of params
    created(keyed.post("/v1/models", headers=headers, json=big))
    created(keyed.post("/v1/models", headers=headers, json=big))
    refused = keyed.post("/v1/models", headers=headers, json=big)
    assert refused.status_code == 429, refused.text
    assert "models' params" in refused.json()["detail"]
    dataset = keyed.post("/v1/datasets/synthetic", headers=headers,
                         json={"num_examples": 20_000})
    assert dataset.status_code == 429
    found = usage(keyed, headers)
    assert found["models"] == 2 and found["datasets"] == 0
    assert found["stored_bytes"] <= 5_000_000


def test_an_import_past_the_quota_is_not_stored(keyed: TestClient) -> None:
    """An imported model's params count as a created one's: past the quota, a 429 and no
    model."""
    headers = tenant(keyed, "team-imports")
    big = created(keyed.post("/v1/models", headers=headers, json={
        "kind": "mlp", "features": 100, "hidden": [3000]}))  # 2.4 MB of params
    content = keyed.get(f"/v1/models/{big['id']}/export", headers=headers,
                        params={"format": "safetensors"}).content
    created(keyed.post("/v1/models/import", headers=headers,
                       files={"file": ("m.safetensors", content)}))
    refused = keyed.post("/v1/models/import", headers=headers,
                         files={"file": ("m.safetensors", content)})
    assert refused.status_code == 429, refused.text
    assert "this model (" in refused.json()["detail"] and "quota of 5000000" in \
        refused.json()["detail"]
    found = usage(keyed, headers)
    assert found["models"] == 2 and found["stored_bytes"] <= 5_000_000


def test_keyless_callers_have_no_quota(tmp_path: Any) -> None:
    settings = Settings(database_url=sqlite_url(tmp_path), workers=1,
                        tenant_max_stored_bytes=1000)
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        model = created(client.post("/v1/models", json=MLP))
        data = created(client.post("/v1/datasets", json={"x": [[0, 1]], "y": [1.0]}))
        run = created(client.post(f"/v1/models/{model['id']}/runs", headers=WAIT, json={
            "dataset_id": data["id"], "epochs": 20, "record_params": 1}), 200)
        assert run["status"] == "succeeded"
        assert client.get("/v1/me").json()["usage"]["stored_bytes"] > 20 * 4093 * 8
