"""Webhooks with the ``queue`` executor: two API replicas and two ``tapeline worker`` processes
on one PostgreSQL deliver as procrastinate jobs. A worker killed with SIGKILL in the middle of
a delivery loses nothing: the event is delivered again, with the same ``webhook-id``, and every
event produced reaches the receiver at least once, each run's in order."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.live.test_webhooks import hook, log, until
from tests.support.postgres import fresh_schema, libpq_url
from tests.support.receiver import Receiver
from tests.support.servers import LiveServer, LiveWorker, start_server, start_worker

pytestmark = pytest.mark.slow

ENV = {"TAPELINE_EXECUTOR": "queue", "TAPELINE_WORKER_TIMEOUT": "3",
       "TAPELINE_WEBHOOK_ALLOW_PRIVATE": "true", "TAPELINE_WEBHOOK_RETRY_SCALE": "0.002",
       "TAPELINE_WEBHOOK_TIMEOUT_SECONDS": "2"}
RUNS = 4


def connection_owner(local_port: int, candidates: list[int]) -> int:
    """The process among ``candidates`` holding the TCP connection whose local port is
    ``local_port`` (read from /proc: the socket's inode, then whose fd it is)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == local_port:
                inodes.add(fields[9])
    for pid in candidates:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return pid
    raise AssertionError(f"no process holds the connection from port {local_port}")


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.fixture
def topology(postgres_base: str, tmp_path: Path) -> Iterator[tuple[str, list[LiveServer],
                                                                   list[LiveWorker]]]:
    with fresh_schema(postgres_base) as url:
        replicas = [start_server(url, tmp_path / f"api{i}.log", **ENV) for i in range(2)]
        workers = [start_worker(url, tmp_path / f"worker{i}.log", **ENV) for i in range(2)]
        try:
            yield url, replicas, workers
        finally:
            for worker in workers:
                worker.stop()
            for replica in replicas:
                replica.stop()


@pytest.mark.postgres
def test_a_worker_killed_mid_delivery_loses_nothing(
        topology: tuple[str, list[LiveServer], list[LiveWorker]]) -> None:
    url, (a, b), workers = topology
    receiver = Receiver(hold=lambda body: body["type"] == "run.succeeded").start()
    try:
        with httpx.Client(base_url=a.url, timeout=60) as api_a, \
                httpx.Client(base_url=b.url, timeout=60) as api_b:
            webhook_id = hook(api_a, receiver, ["*"])
            dataset = api_b.post("/v1/datasets/synthetic", json={"num_examples": 100}).json()
            runs = []
            for index in range(RUNS):
                api = (api_a, api_b)[index % 2]
                model = api.post("/v1/models").json()
                runs.append(api.post(f"/v1/models/{model['id']}/runs", json={
                    "dataset_id": dataset["id"], "epochs": 3}).json()["id"])
            assert receiver.holding.wait(120)  # a run's end is in flight: kill who sends it
            assert receiver.held_peer is not None
            processes = [p for w in workers for p in children(w.process.pid)]
            victim = connection_owner(receiver.held_peer[1], processes)
            os.kill(victim, signal.SIGKILL)
            receiver.release()
            for run_id in runs:
                receiver.wait_for(lambda got, run_id=run_id: any(
                    r.type == "run.succeeded" and r.body["data"]["id"] == run_id for r in got),
                    timeout=120)
            until(lambda: all(d["status"] == "succeeded" for d in log(api_b, webhook_id)),
                  timeout=120)
    finally:
        receiver.release()
        receiver.stop()
    assert receiver.unsigned == 0
    with psycopg.connect(libpq_url(url)) as connection:
        produced = {row[0] for row in connection.execute(
            "SELECT e.id FROM webhook_events e JOIN webhook_deliveries d ON d.event_id = e.id "
            "WHERE d.webhook_id = %s", (webhook_id,))}
    received = [r.id for r in receiver.received]
    assert produced == set(received)  # every event at least once, nothing else
    duplicates = {i for i in received if received.count(i) > 1}
    assert duplicates, "the killed worker's delivery should have been sent again"
    # The held end was sent again (and anything else the killed process had in flight):
    # each time with the same id and the same body.
    again = [r for r in receiver.received if r.id in duplicates]
    assert "run.succeeded" in {r.type for r in again}
    for duplicate in duplicates:
        assert len({json.dumps(r.body) for r in again if r.id == duplicate}) == 1
    for run_id in runs:  # each run's events arrived in order
        first_seen: list[str] = []
        for r in receiver.received:
            if r.body["data"].get("id") == run_id and r.type not in first_seen:
                first_seen.append(r.type)
        assert first_seen == ["run.created", "run.started", "run.succeeded"], first_seen
