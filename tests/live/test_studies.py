"""Studies against live servers: a small grid study and a small ASHA study on moons, on
SQLite and PostgreSQL; the same study with concurrency 1 and 4 gives the same trial table and
best trial, bit for bit; a promoted trial ends with the params of one uninterrupted run."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.servers import LiveServer, sqlite_url, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres",
                                                               marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("studies")
    if request.param == "sqlite":
        url = sqlite_url(folder)
        live = start_server(url, folder / "server.log", TAPELINE_WORKERS="2")
        yield live
        live.stop()
    else:
        from tests.support.postgres import fresh_schema

        with fresh_schema(request.getfixturevalue("postgres_base")) as url:
            live = start_server(url, folder / "server.log", TAPELINE_WORKERS="2")
            yield live
            live.stop()


def moons(client: httpx.Client) -> str:
    answer = client.post("/v1/datasets/synthetic", json={"kind": "moons", "num_examples": 120,
                                                         "noise": 0.2, "seed": 3})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def spec(dataset_id: str, **changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "name": "moons-grid", "dataset_id": dataset_id,
        "model": {"kind": "mlp", "features": 2, "task": "classification", "classes": 2,
                  "hidden": [4]},
        "run": {"epochs": 3, "optimizer": {"kind": "adam", "learning_rate": 0.01},
                "batch_size": 32, "validation": {"fraction": 0.25}},
        "space": {"run.optimizer.learning_rate": {"type": "choice", "values": [0.01, 0.1]},
                  "model.hidden": {"type": "choice", "values": [[4], [8]]}},
        "objective": {"metric": "val_loss", "goal": "minimize"},
        "sampler": {"kind": "grid", "seed": 7},
        "concurrency": 2,
    }
    return body | changes


def finish(client: httpx.Client, study_id: str, seconds: float = 240) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        study = client.get(f"/v1/studies/{study_id}").json()
        if study["status"] != "running":
            return dict(study)
        time.sleep(0.3)
    raise AssertionError(f"study {study_id} still running: {study}")


def table(client: httpx.Client, study_id: str) -> list[dict]:
    """The trial table without the ids of the models and runs (new ones each study), with
    each trial's final params."""
    items = client.get(f"/v1/studies/{study_id}/trials").json()["items"]
    rows = []
    for item in items:
        run = client.get(f"/v1/runs/{item['run_id']}").json()
        rows.append({key: item[key] for key in ("number", "params", "status", "epochs",
                                                "rungs", "objective")}
                    | {"final": run["final"]["params"] if run["final"] else None})
    return rows


def test_grid_study_tries_every_combination_once(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        dataset_id = moons(client)
        answer = client.post("/v1/studies", json=spec(dataset_id))
        assert answer.status_code == 201, answer.text
        study = answer.json()
        assert study["max_trials"] == 4 and study["trials_per_batch"] == 8
        done = finish(client, study["id"])
        assert done["status"] == "completed", done
        assert done["counts"]["completed"] == 4
        assert done["epochs_trained"] == 12
        trials = client.get(f"/v1/studies/{study['id']}/trials").json()["items"]
        points = [t["params"] for t in trials]
        assert points == [
            {"run.optimizer.learning_rate": lr, "model.hidden": hidden}
            for lr in (0.01, 0.1) for hidden in ([4], [8])]
        best = min(trials, key=lambda t: (t["objective"], t["number"]))
        assert done["best"]["number"] == best["number"]
        assert done["best"]["objective"] == best["objective"]
        runs = client.get("/v1/runs", params={"filter": f'tags.study = "{study["id"]}"'})
        assert runs.status_code == 200, runs.text
        assert sorted(r["id"] for r in runs.json()["items"]) == sorted(
            t["run_id"] for t in trials)
        for trial in trials:
            run = client.get(f"/v1/runs/{trial['run_id']}").json()
            assert run["tags"]["study"] == study["id"]
            assert run["tags"]["trial"] == str(trial["number"])
            assert run["final"]["metrics"]["val_loss"] == trial["objective"]
        lines = client.get(f"/v1/studies/{study['id']}/events",
                           headers={"Accept": "application/jsonl"})
        events = [json.loads(line) for line in lines.text.splitlines()]
        kinds = [e["type"] for e in events]
        assert kinds[0] == "study.created" and kinds[-1] == "end"
        assert kinds.count("trial.created") == 4 and kinds.count("trial.completed") == 4
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        resumed = client.get(f"/v1/studies/{study['id']}/events",
                             params={"after": events[-3]["seq"]},
                             headers={"Accept": "application/jsonl"})
        assert [json.loads(line) for line in resumed.text.splitlines()] == events[-2:]
        with client.stream("GET", f"/v1/studies/{study['id']}/events",
                           headers={"Accept": "text/event-stream"}) as sse:
            text = "".join(sse.iter_text())
        assert text.count("event: trial.created") == 4 and "event: end" in text
        metrics = client.get("/metrics").text
        assert 'tapeline_study_trials_total{status="completed"}' in metrics
        assert client.delete(f"/v1/studies/{study['id']}").status_code == 204
        assert client.get(f"/v1/studies/{study['id']}").status_code == 404
        assert client.get(f"/v1/runs/{trials[0]['run_id']}").status_code == 404
        assert client.get(f"/v1/models/{trials[0]['model_id']}").status_code == 404


def test_concurrency_changes_nothing_but_time(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        dataset_id = moons(client)
        space = {"run.optimizer.learning_rate": {"type": "float", "low": 0.001, "high": 0.3,
                                                 "log": True},
                 "model.hidden": {"type": "choice", "values": [[4], [8], [4, 4]]}}
        tables, bests = [], []
        for concurrency in (1, 4):
            body = spec(dataset_id, space=space, sampler={"kind": "tpe", "seed": 11},
                        max_trials=6, trials_per_batch=3, concurrency=concurrency)
            study = client.post("/v1/studies", json=body).json()
            done = finish(client, study["id"])
            assert done["status"] == "completed", done
            tables.append(table(client, study["id"]))
            bests.append({k: v for k, v in done["best"].items()
                          if k not in ("run_id", "model_id")})
        assert tables[0] == tables[1]
        assert bests[0] == bests[1]
        assert len(tables[0]) == 6
