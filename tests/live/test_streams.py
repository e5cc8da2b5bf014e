"""Live streams against a real uvicorn server on a loopback port."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import LiveServer, sqlite_url, start_server

# Mini-batches of 4 over 40,000 points: a fraction of a second an epoch, so streams see
# progress arrive over time.
SLOW = {"epochs": 30, "batch_size": 4, "shuffle_seed": 0}


@dataclass
class Event:
    """One SSE event (or a comment line, kept for keep-alive checks)."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    comments: list[str] = field(default_factory=list)
    received: float = 0.0

    def json(self) -> Any:
        return json.loads(self.data)


def sse(response: httpx.Response) -> Iterator[Event]:
    """Parse a text/event-stream body as it arrives."""
    current = Event()
    for line in response.iter_lines():
        if line == "":
            if current.data or current.comments or current.id is not None:
                current.received = time.monotonic()
                yield current
            current = Event()
        elif line.startswith(":"):
            current.comments.append(line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                current.data = f"{current.data}\n{value}" if current.data else value
            elif name in ("event", "id"):
                setattr(current, name, value)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("streams")
    live = start_server(sqlite_url(folder), folder / "server.log",
                        TAPELINE_SSE_PING_SECONDS="0.3")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def api(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def slow_dataset(api: httpx.Client) -> str:
    return str(api.post("/v1/datasets/synthetic", json={"num_examples": 40000,
                                                        "seed": 1}).json()["id"])


def start_slow(api: httpx.Client, dataset_id: str, **overrides: Any) -> str:
    model = api.post("/v1/models").json()
    answer = api.post(f"/v1/models/{model['id']}/runs",
                      json={"dataset_id": dataset_id, **SLOW, **overrides})
    assert answer.status_code == 202
    return str(answer.json()["id"])


def finished_run(api: httpx.Client, epochs: int = 10) -> dict[str, Any]:
    dataset = api.post("/v1/datasets/synthetic", json={"seed": 5}).json()
    model = api.post("/v1/models").json()
    run = api.post(f"/v1/models/{model['id']}/runs", headers={"prefer": "wait=60"},
                   json={"dataset_id": dataset["id"], "epochs": epochs}).json()
    assert run["status"] == "succeeded"
    return dict(run)


def cancel_and_wait(api: httpx.Client, run_id: str) -> None:
    api.post(f"/v1/runs/{run_id}/cancel")
    deadline = time.monotonic() + 30
    while api.get(f"/v1/runs/{run_id}").json()["status"] not in ("cancelled", "succeeded"):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_sse_streams_epochs_while_the_run_trains(api: httpx.Client, slow_dataset: str) -> None:
    run_id = start_slow(api, slow_dataset, epochs=4)
    events: list[Event] = []
    status_at_first_epoch = None
    with api.stream("GET", f"/v1/runs/{run_id}/events",
                    headers={"accept": "text/event-stream"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in sse(response):
            if event.event == "epoch" and status_at_first_epoch is None:
                status_at_first_epoch = api.get(f"/v1/runs/{run_id}").json()["status"]
            if event.data:
                events.append(event)
    assert status_at_first_epoch == "running"  # it arrived before training ended
    epochs = [e for e in events if e.event == "epoch"]
    assert [e.id for e in epochs] == ["0", "1", "2", "3"]
    assert [e.json()["epoch"] for e in epochs] == [0, 1, 2, 3]
    assert all(e.json()["type"] == "epoch" for e in epochs)
    assert epochs[-1].received - epochs[0].received > 0.3  # spread out, not one burst
    assert events[-1].event == "end" and events[-1].json()["status"] == "succeeded"
    assert events[-1].json()["type"] == "end" and events[-1].json()["id"] == run_id
    history = api.get(f"/v1/runs/{run_id}/history").json()["items"]
    assert [{k: v for k, v in e.json().items() if k != "type"} for e in epochs] == history


def test_a_classifier_streams_its_metrics_while_it_trains(api: httpx.Client) -> None:
    moons = api.post("/v1/datasets/synthetic", json={
        "kind": "moons", "num_examples": 20000, "noise": 0.2, "seed": 1}).json()
    model = api.post("/v1/models", json={"kind": "mlp", "features": 2, "hidden": [16, 16],
                                         "task": "classification"}).json()
    run = api.post(f"/v1/models/{model['id']}/runs", json={
        "dataset_id": moons["id"], "epochs": 5, "batch_size": 16, "shuffle_seed": 0,
        "optimizer": {"kind": "adam", "learning_rate": 0.01},
        "validation": {"fraction": 0.2}}).json()
    epochs, statuses, end = [], [], None
    with api.stream("GET", f"/v1/runs/{run['id']}/events") as response:
        for event in sse(response):
            if event.event == "epoch":
                epochs.append(event.json())
                statuses.append(api.get(f"/v1/runs/{run['id']}").json()["status"])
            elif event.event == "end":
                end = event.json()
    assert statuses[0] == "running"  # the first epoch arrived while it trained
    assert [e["epoch"] for e in epochs] == [0, 1, 2, 3, 4]
    for row in epochs:
        assert set(row["metrics"]) == {"accuracy", "log_loss", "val_loss", "val_accuracy",
                                       "val_log_loss"}
        assert set(row["params"]) == {"W1", "b1", "W2", "b2", "W3", "b3"}
        assert row["W"] is None
        assert row["loss"] == pytest.approx(row["metrics"]["log_loss"], rel=1e-5)
    assert epochs[-1]["metrics"]["val_accuracy"] > epochs[0]["metrics"]["val_accuracy"]
    assert end is not None and end["status"] == "succeeded"
    assert set(end["final"]["metrics"]) == set(epochs[0]["metrics"])


def test_keep_alive_comments_while_idle(api: httpx.Client, slow_dataset: str) -> None:
    # Both workers busy, so a third run waits queued and its stream is idle for sure.
    busy = [start_slow(api, slow_dataset) for _ in range(2)]
    waiting = start_slow(api, slow_dataset)
    comments, events = 0, []
    try:
        with api.stream("GET", f"/v1/runs/{waiting}/events") as response:
            for event in sse(response):
                comments += len(event.comments)
                if event.data:
                    events.append(event)
                elif comments >= 2 and not events:
                    api.post(f"/v1/runs/{waiting}/cancel")
    finally:
        for run_id in [*busy, waiting]:
            cancel_and_wait(api, run_id)
    assert comments >= 2  # one each 0.3 s (TAPELINE_SSE_PING_SECONDS) while nothing happened
    assert [e.event for e in events] == ["end"]
    assert events[0].json()["status"] == "cancelled"


def test_jsonl_stream(api: httpx.Client, slow_dataset: str) -> None:
    run_id = start_slow(api, slow_dataset, epochs=3)
    with api.stream("GET", f"/v1/runs/{run_id}/events",
                    headers={"accept": "application/jsonl"}) as response:
        assert response.headers["content-type"].startswith("application/jsonl")
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert [line["type"] for line in lines] == ["epoch"] * 3 + ["end"]
    assert [line["epoch"] for line in lines[:3]] == [0, 1, 2]
    assert lines[-1]["status"] == "succeeded" and lines[-1]["epochs_completed"] == 3


def test_finished_run_replays_and_ends(api: httpx.Client) -> None:
    run = finished_run(api)
    start = time.monotonic()
    with api.stream("GET", f"/v1/runs/{run['id']}/events") as response:
        events = [e for e in sse(response) if e.data]
    assert time.monotonic() - start < 5
    assert [e.event for e in events] == ["epoch"] * 10 + ["end"]
    assert events[-1].json()["final"] == run["final"]
    with api.stream("GET", f"/v1/runs/{run['id']}/events",
                    headers={"accept": "application/x-ndjson"}) as response:
        assert len([line for line in response.iter_lines() if line]) == 11


def test_resume_after_last_event_id_or_after(api: httpx.Client) -> None:
    run = finished_run(api)
    with api.stream("GET", f"/v1/runs/{run['id']}/events",
                    headers={"last-event-id": "6"}) as response:
        ids = [e.id for e in sse(response) if e.event == "epoch"]
    assert ids == ["7", "8", "9"]
    with api.stream("GET", f"/v1/runs/{run['id']}/events", params={"after": 8},
                    headers={"accept": "application/jsonl"}) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert [line.get("epoch") for line in lines] == [9, None]
    bad = api.get(f"/v1/runs/{run['id']}/events", headers={"last-event-id": "seven"})
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    refused = api.get(f"/v1/runs/{run['id']}/events", headers={"accept": "image/png"})
    assert refused.status_code == 406


def test_three_readers_see_the_same_stream(api: httpx.Client, slow_dataset: str,
                                           server: LiveServer) -> None:
    run_id = start_slow(api, slow_dataset, epochs=3)
    results: list[list[tuple[str | None, str]]] = [[] for _ in range(3)]

    def read(index: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client, client.stream(
                "GET", f"/v1/runs/{run_id}/events") as response:
            results[index] = [(e.id, e.event) for e in sse(response) if e.data]

    readers = [threading.Thread(target=read, args=(i,)) for i in range(3)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(60)
    expected = [("0", "epoch"), ("1", "epoch"), ("2", "epoch"), (None, "end")]
    assert results == [expected] * 3


def test_cancel_mid_stream_ends_the_stream(api: httpx.Client, slow_dataset: str) -> None:
    run_id = start_slow(api, slow_dataset)
    seen: list[Event] = []
    with api.stream("GET", f"/v1/runs/{run_id}/events") as response:
        for event in sse(response):
            if not event.data:
                continue
            seen.append(event)
            if event.event == "epoch" and event.id == "0":
                api.post(f"/v1/runs/{run_id}/cancel")
    assert seen[-1].event == "end"
    end = seen[-1].json()
    assert end["status"] == "cancelled" and end["epochs_completed"] < SLOW["epochs"]
    assert len([e for e in seen if e.event == "epoch"]) == end["epochs_completed"]


def test_a_reader_that_disconnects_costs_nothing(api: httpx.Client, slow_dataset: str) -> None:
    run_id = start_slow(api, slow_dataset, epochs=3)
    for _ in range(5):
        with api.stream("GET", f"/v1/runs/{run_id}/events") as response:
            next(iter(response.iter_lines()))
    assert api.get("/healthz").status_code == 200
    deadline = time.monotonic() + 60
    while api.get(f"/v1/runs/{run_id}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_restart_keeps_everything_byte_for_byte(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    first = start_server(url, tmp_path / "first.log")
    paths: list[str] = []
    try:
        with httpx.Client(base_url=first.url, timeout=60) as api:
            dataset = api.post("/v1/datasets/synthetic", json={"seed": 8}).json()
            inline = api.post("/v1/datasets", json={"x": [[1, 2], [3, 4]], "y": [1, 2]}).json()
            model = api.post("/v1/models", json={"name": "kept"}).json()
            run = api.post(f"/v1/models/{model['id']}/runs", headers={"prefer": "wait=60"},
                           json={"dataset_id": dataset["id"]}).json()
            slow = api.post("/v1/datasets/synthetic", json={"num_examples": 20000,
                                                            "seed": 1}).json()
            busy = start_slow(api, slow["id"])
            paths = [f"/v1/datasets/{dataset['id']}", f"/v1/datasets/{inline['id']}",
                     f"/v1/datasets/{dataset['id']}/data", f"/v1/models/{model['id']}",
                     f"/v1/runs/{run['id']}", f"/v1/runs/{run['id']}/history",
                     f"/v1/runs/{run['id']}/history?format=columns",
                     f"/v1/models/{model['id']}/history", f"/v1/models/{model['id']}/runs",
                     "/v1/datasets", "/v1/models?limit=1"]
            before = {path: api.get(path).content for path in paths}
            deadline = time.monotonic() + 30
            while api.get(f"/v1/runs/{busy}").json()["epochs_completed"] < 1:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        assert first.stop() == 0  # SIGTERM mid-run still exits cleanly
    second = start_server(url, tmp_path / "second.log")
    try:
        with httpx.Client(base_url=second.url, timeout=60) as api:
            assert {path: api.get(path).content for path in paths} == before
            interrupted = api.get(f"/v1/runs/{busy}").json()
            assert interrupted["status"] == "failed"
            assert interrupted["error"]["reason"] == "interrupted"
            assert interrupted["epochs_completed"] >= 1
            assert len(api.get(f"/v1/runs/{busy}/history").json()["items"]) == \
                interrupted["epochs_completed"]
    finally:
        second.stop()

