"""Pause and resume over HTTP against real servers: a run paused and resumed (twice, once
while running and once while queued) streams every epoch once with a `paused` event per pause
and ends bit for bit as an uninterrupted run; a paused run keeps its model; what cannot be
paused or resumed is a 409; a paused run is cancelled at once; and a server killed with
SIGKILL while a run is paused finds it paused after the restart, whatever
TAPELINE_ON_INTERRUPTED says, and resumes it to the same result."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.postgres import fresh_schema
from tests.support.servers import LiveServer, sqlite_url, start_server

pytestmark = pytest.mark.slow

SPEC = {"epochs": 27, "batch_size": 8, "shuffle_seed": 2,
        "optimizer": {"kind": "adam", "learning_rate": 0.01}}
FINAL = ("succeeded", "failed", "cancelled", "diverged")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres",
                                                               marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server with the local executor on SQLite, and one with the queue executor (and a
    worker) on PostgreSQL."""
    folder = tmp_path_factory.mktemp("pause")
    if request.param == "sqlite":
        live = start_server(sqlite_url(folder), folder / "server.log")
        yield live
        live.stop()
        return
    from tests.support.servers import start_worker

    with fresh_schema(request.getfixturevalue("postgres_base")) as url:
        live = start_server(url, folder / "server.log", TAPELINE_EXECUTOR="queue")
        worker = start_worker(url, folder / "worker.log")
        try:
            yield live
        finally:
            worker.stop()
            live.stop()


def trace(api: httpx.Client, run_id: str) -> dict[str, Any]:
    """What a run computed: its history rows but their wall times, and its final state."""
    rows = api.get(f"/v1/runs/{run_id}/history", params={"limit": 1000}).json()["items"]
    run = api.get(f"/v1/runs/{run_id}").json()
    return {"rows": [{k: v for k, v in row.items() if k not in ("elapsed_ms", "run_id", "step")}
                     for row in rows], "final": run["final"], "status": run["status"]}


def start(api: httpx.Client, dataset: str, **headers: str) -> dict[str, Any]:
    model = api.post("/v1/models").json()
    answer = api.post(f"/v1/models/{model['id']}/runs", json={"dataset_id": dataset, **SPEC},
                      headers=headers)
    assert answer.status_code in (200, 202), answer.text
    return dict(answer.json())


def wait_status(api: httpx.Client, run_id: str, *statuses: str,
                timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (run := api.get(f"/v1/runs/{run_id}").json())["status"] not in statuses:
        assert time.monotonic() < deadline, f"run {run_id} is {run['status']}"
        time.sleep(0.02)
    return dict(run)


def wait_epochs(api: httpx.Client, run_id: str, epochs: int) -> None:
    deadline = time.monotonic() + 120
    while api.get(f"/v1/runs/{run_id}").json()["epochs_completed"] < epochs:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def read_stream(url: str, run_id: str, into: list[dict[str, Any]]) -> None:
    """Every JSON Lines item of the run's stream, until its end."""
    with httpx.stream("GET", f"{url}/v1/runs/{run_id}/events",
                      headers={"accept": "application/jsonl"}, timeout=120) as answer:
        for line in answer.iter_lines():
            if line:
                into.append(json.loads(line))


def test_a_run_paused_and_resumed_over_http_ends_as_an_uninterrupted_one(
        server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=120) as api:
        # 16,000 rows: epochs long enough (~0.3 s) that the first pause, asked at epoch 2,
        # lands well before the last epoch however busy the machine is (at 4,000 rows a
        # loaded machine once let the run reach epoch 26 first, and a run paused there has no
        # epoch left to pause again after: it ends).
        dataset = api.post("/v1/datasets/synthetic",
                           json={"num_examples": 16000, "seed": 1}).json()["id"]
        control = start(api, dataset, prefer="wait=120")
        assert control["status"] == "succeeded"
        run = start(api, dataset)
        run_id, model_id = run["id"], run["model_id"]
        items: list[dict[str, Any]] = []
        reader = threading.Thread(target=read_stream, args=(server.url, run_id, items))
        reader.start()

        wait_epochs(api, run_id, 2)
        asked = api.post(f"/v1/runs/{run_id}/pause")
        assert asked.status_code == 202 and asked.json()["status"] in ("running", "paused")
        paused = wait_status(api, run_id, "paused", *FINAL)
        assert paused["status"] == "paused" and 2 <= paused["epochs_completed"] < 26, paused
        again = api.post(f"/v1/runs/{run_id}/pause")  # idempotent
        assert (again.status_code, again.json()["status"]) == (202, "paused")
        assert api.get(f"/v1/models/{model_id}").json()["status"] == "training"
        assert api.delete(f"/v1/models/{model_id}").status_code == 409
        other = api.post(f"/v1/models/{model_id}/runs", json={"dataset_id": dataset})
        assert other.status_code == 409
        assert other.headers["content-type"].startswith("application/problem+json")
        time.sleep(0.5)  # paused: nothing trains
        assert api.get(f"/v1/runs/{run_id}").json()["epochs_completed"] == \
            paused["epochs_completed"]

        resumed = api.post(f"/v1/runs/{run_id}/resume")
        assert (resumed.status_code, resumed.json()["status"]) == (202, "queued")
        # At once: paused while still queued, or at the end of its first epoch back.
        assert api.post(f"/v1/runs/{run_id}/pause").status_code == 202
        second = wait_status(api, run_id, "paused", *FINAL)
        assert second["status"] == "paused"
        assert api.post(f"/v1/runs/{run_id}/resume").status_code == 202
        done = wait_status(api, run_id, *FINAL)
        assert done["status"] == "succeeded"
        reader.join(60)
        assert not reader.is_alive()

        assert trace(api, run_id) == trace(api, control["id"])
        epochs = [item["epoch"] for item in items if item["type"] == "epoch"]
        assert epochs == list(range(27))  # none missing, none twice
        pauses = [(i, item) for i, item in enumerate(items) if item["type"] == "paused"]
        assert 1 <= len(pauses) <= 2 and items[-1]["type"] == "end"
        for index, item in pauses:  # each after the epochs it had completed
            assert item["status"] == "paused"
            assert sum(1 for it in items[:index] if it["type"] == "epoch") == \
                item["epochs_completed"]

        conflict = api.post(f"/v1/runs/{run_id}/pause")
        assert conflict.status_code == 409
        assert conflict.headers["content-type"].startswith("application/problem+json")
        assert api.post(f"/v1/runs/{run_id}/resume").status_code == 409
        assert api.post("/v1/runs/run_unknown/pause").status_code == 404


def test_a_paused_run_streams_its_pause_and_is_cancelled_at_once(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=120) as api:
        dataset = api.post("/v1/datasets/synthetic",
                           json={"num_examples": 4000, "seed": 3}).json()["id"]
        run = start(api, dataset)
        wait_epochs(api, run["id"], 1)
        api.post(f"/v1/runs/{run['id']}/pause")
        paused = wait_status(api, run["id"], "paused", *FINAL)
        assert paused["status"] == "paused"
        with api.stream("GET", f"/v1/runs/{run['id']}/events",
                        headers={"accept": "text/event-stream", "last-event-id": "0"}) as sse:
            text = ""
            for chunk in sse.iter_text():
                text += chunk
                if "event: paused" in text:
                    break
        blocks = [dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
                  for block in text.replace("\r\n", "\n").split("\n\n") if "event:" in block]
        assert [b["id"] for b in blocks[:-1]] == [
            str(e) for e in range(1, paused["epochs_completed"])]
        assert blocks[-1]["event"] == "paused" and "id" not in blocks[-1]
        assert json.loads(blocks[-1]["data"])["status"] == "paused"
        cancelled = api.post(f"/v1/runs/{run['id']}/cancel")
        assert (cancelled.status_code, cancelled.json()["status"]) == (202, "cancelled")
        assert cancelled.json()["epochs_completed"] == paused["epochs_completed"]
        model = api.get(f"/v1/models/{run['model_id']}").json()
        assert model["status"] == "idle"
        assert api.post(f"/v1/runs/{run['id']}/resume").status_code == 409


@pytest.mark.parametrize("policy", ["fail", "requeue"])
def test_a_server_killed_while_a_run_is_paused_finds_it_paused(tmp_path: Path,
                                                                policy: str) -> None:
    database = sqlite_url(tmp_path)
    env = {"TAPELINE_ON_INTERRUPTED": policy}
    first = start_server(database, tmp_path / "first.log", **env)
    try:
        with httpx.Client(base_url=first.url, timeout=120) as api:
            dataset = api.post("/v1/datasets/synthetic",
                               json={"num_examples": 4000, "seed": 1}).json()["id"]
            control = start(api, dataset, prefer="wait=120")
            run = start(api, dataset)
            wait_epochs(api, run["id"], 3)
            api.post(f"/v1/runs/{run['id']}/pause")
            paused = wait_status(api, run["id"], "paused", *FINAL)
            assert paused["status"] == "paused"
            expected = trace(api, control["id"])
    finally:
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(30)
    second = start_server(database, tmp_path / "second.log", **env)
    try:
        with httpx.Client(base_url=second.url, timeout=120) as api:
            after = api.get(f"/v1/runs/{run['id']}").json()
            assert (after["status"], after["epochs_completed"]) == (
                "paused", paused["epochs_completed"])
            assert api.post(f"/v1/runs/{run['id']}/resume").status_code == 202
            assert wait_status(api, run["id"], *FINAL)["status"] == "succeeded"
            assert trace(api, run["id"]) == expected
    finally:
        second.stop()
