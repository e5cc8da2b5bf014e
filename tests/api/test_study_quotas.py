"""A study's trials live within its tenant's quotas, as the tenant's own runs do, on SQLite and
PostgreSQL: they count toward the active-run quota (a trial waits for room rather than fail,
and the tenant's own runs keep theirs), and their models, runs and histories count toward the
byte quota (trials wait while it is full and go on once there is room). A keyless study has
no quota."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.conftest import POSTGRES_PARAM
from tests.support.servers import sqlite_url
from tests.support.stores import store_url

pytestmark = pytest.mark.slow

ADMIN = "tl_" + "S" * 43


@pytest.fixture(scope="module", params=["sqlite", pytest.param(POSTGRES_PARAM,
                                                               marks=pytest.mark.postgres)])
def keyed(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app with keys required and two training processes, on each store."""
    with ExitStack() as stack:
        url = store_url(request, tmp_path_factory.mktemp("study-quotas"), stack)
        settings = Settings(database_url=url, workers=2, auth="required",
                            bootstrap_admin_key=ADMIN, tenant_rate_limit="10000/second")
        yield stack.enter_context(TestClient(create_app(settings), base_url="http://localhost",
                                             raise_server_exceptions=False))


def tenant(client: TestClient, name: str, **quotas: int) -> dict[str, str]:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    answer = client.post("/v1/keys", headers=admin,
                         json={"tenant": name, "scopes": ["read", "write"]})
    assert answer.status_code == 201, answer.text
    if quotas:
        put = client.put(f"/v1/tenants/{name}/quotas", headers=admin, json=quotas)
        assert put.status_code == 200, put.text
    return {"Authorization": f"Bearer {answer.json()['key']}"}


def created(answer: Any) -> dict[str, Any]:
    assert answer.status_code in (201, 202), answer.text
    return dict(answer.json())


def study(dataset_id: str, concurrency: int) -> dict[str, Any]:
    return {
        "dataset_id": dataset_id,
        "model": {"kind": "mlp", "features": 2, "task": "classification", "classes": 2,
                  "hidden": [4]},
        "run": {"epochs": 3, "optimizer": {"kind": "adam", "learning_rate": 0.01},
                "batch_size": 32, "validation": {"fraction": 0.25}},
        "space": {"run.optimizer.learning_rate": {"type": "float", "low": 0.001,
                                                  "high": 0.1, "log": True}},
        "objective": {"metric": "val_loss", "goal": "minimize"},
        "sampler": {"kind": "random", "seed": 3},
        "scheduler": {"kind": "asha", "min_epochs": 1, "reduction_factor": 3},
        "max_trials": 3, "concurrency": concurrency,
    }


def until(check: Callable[[], Any], seconds: float = 120, every: float = 0.05) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(every)
    return found


def moons(client: TestClient, headers: dict[str, str]) -> str:
    return str(created(client.post("/v1/datasets/synthetic", headers=headers, json={
        "kind": "moons", "num_examples": 120, "seed": 3}))["id"])


def test_trials_wait_for_room_under_the_active_run_quota(keyed: TestClient) -> None:
    headers = tenant(keyed, "team-busy", max_active_runs=2)
    dataset_id = moons(keyed, headers)
    # The tenant's own long run holds one of its two active runs.
    model = created(keyed.post("/v1/models", headers=headers, json={"features": 1}))
    line = created(keyed.post("/v1/datasets/synthetic", headers=headers,
                              json={"num_examples": 5000, "seed": 1}))
    long = created(keyed.post(f"/v1/models/{model['id']}/runs", headers=headers,
                              json={"dataset_id": line["id"], "epochs": 100_000,
                                    "batch_size": 1}))
    until(lambda: keyed.get(f"/v1/runs/{long['id']}", headers=headers
                            ).json()["status"] == "running")
    answer = created(keyed.post("/v1/studies", headers=headers, json=study(dataset_id, 4)))
    assert answer["concurrency"] == {"requested": 4, "effective": 2, "capped_by_quota": True}
    path = f"/v1/studies/{answer['id']}"
    # One slot is left: trials take it one at a time, and never the long run's.
    seen = set()
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        usage = keyed.get("/v1/me", headers=headers).json()["usage"]
        assert usage["active_runs"] <= 2, usage
        counts = keyed.get(path, headers=headers).json()["counts"]
        assert counts["queued"] + counts["running"] <= 1, counts
        assert counts["failed"] == 0, counts
        seen.add(counts["pruned"] + counts["paused"] + counts["completed"])
        time.sleep(0.05)
    assert max(seen) >= 1  # trials went on meanwhile, one at a time
    refused = keyed.post(f"/v1/models/{model['id']}/runs", headers=headers,
                         json={"dataset_id": line["id"]})
    assert refused.status_code in (409, 429)
    assert keyed.post(f"/v1/runs/{long['id']}/cancel", headers=headers).status_code == 202
    done = until(lambda: (s := keyed.get(path, headers=headers).json())["status"] != "running"
                 and s)
    assert done["status"] == "completed", done
    assert done["counts"]["failed"] == 0 and done["counts"]["completed"] == 1


def test_trials_wait_while_the_byte_quota_is_full(keyed: TestClient) -> None:
    headers = tenant(keyed, "team-full")
    dataset_id = moons(keyed, headers)
    used = keyed.get("/v1/me", headers=headers).json()["usage"]["stored_bytes"]
    admin = {"Authorization": f"Bearer {ADMIN}"}
    assert keyed.put("/v1/tenants/team-full/quotas", headers=admin,
                     json={"max_stored_bytes": used}).status_code == 200
    answer = created(keyed.post("/v1/studies", headers=headers, json=study(dataset_id, 2)))
    path = f"/v1/studies/{answer['id']}"
    time.sleep(3)  # three of the driver's rounds at least
    waiting = keyed.get(path, headers=headers).json()
    assert waiting["status"] == "running"
    assert sum(waiting["counts"].values()) == 0  # no trial made: nothing stored
    assert keyed.get("/v1/me", headers=headers).json()["usage"]["stored_bytes"] == used
    assert keyed.put("/v1/tenants/team-full/quotas", headers=admin,
                     json={"max_stored_bytes": 10_000_000}).status_code == 200
    done = until(lambda: (s := keyed.get(path, headers=headers).json())["status"] != "running"
                 and s)
    assert done["status"] == "completed", done
    runs = keyed.get("/v1/runs", headers=headers,
                     params={"filter": f'tags.study = "{answer["id"]}"'}).json()["items"]
    assert len(runs) == 3
    stored = keyed.get("/v1/me", headers=headers).json()["usage"]["stored_bytes"]
    assert stored > used  # the trials' models, runs and histories count


def test_a_keyless_study_has_no_quota(tmp_path: Any) -> None:
    settings = Settings(database_url=sqlite_url(tmp_path), workers=1,
                        tenant_max_stored_bytes=1000, tenant_max_active_runs=1)
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        dataset_id = moons(client, {})
        answer = created(client.post("/v1/studies", json=study(dataset_id, 2)))
        assert answer["concurrency"]["effective"] == 2
        done = until(lambda: (s := client.get(f"/v1/studies/{answer['id']}").json())[
            "status"] != "running" and s)
        assert done["status"] == "completed", done
