"""The queue topology with real processes on loopback: two `tapeline serve` replicas and two
`tapeline worker` processes on one PostgreSQL. A run started on one replica streams live on
the other, a cancel sent to the other stops it, `Prefer: wait` works on either; a worker
killed with SIGKILL, drained with SIGTERM or paused past its timeout (a zombie) loses
nothing: the run finishes with a history and final params bit-identical to a control run of
the same spec never interrupted, and the zombie writes no row. Also the `local` executor
with `requeue`: a server killed mid-run resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.live.test_operations import children, wait_for
from tests.support.postgres import fresh_schema, libpq_url
from tests.support.servers import (
    LiveServer,
    LiveWorker,
    free_port,
    sqlite_url,
    start_server,
    start_worker,
)

pytestmark = pytest.mark.slow

TIMEOUT = "3"  # TAPELINE_WORKER_TIMEOUT: takeovers within seconds
ENV = {"TAPELINE_EXECUTOR": "queue", "TAPELINE_WORKER_TIMEOUT": TIMEOUT,
       "TAPELINE_LOG_LEVEL": "info"}
SPEC = {"epochs": 12, "batch_size": 4, "shuffle_seed": 0,
        "optimizer": {"kind": "adam", "learning_rate": 0.01}}


@dataclass
class Topology:
    url: str
    plain: str
    a: LiveServer
    b: LiveServer
    workers: list[LiveWorker]
    ports: list[int]
    folder: Path
    dataset: str
    control: dict[str, Any]

    def worker(self, index: int) -> LiveWorker:
        self.workers[index], self.ports[index] = spawn(self.url,
                                                       self.folder / f"w{index}-{time.time()}.log")
        return self.workers[index]

    def sql(self, query: str, *args: Any) -> Any:
        with psycopg.connect(self.plain) as connection:
            return connection.execute(query, args).fetchone()


def spawn(url: str, log: Path) -> tuple[LiveWorker, int]:
    """A worker serving its metrics on a port of its own."""
    port = free_port()
    return start_worker(url, log, TAPELINE_WORKER_METRICS_PORT=str(port), **ENV), port


def trace(api: httpx.Client, run_id: str) -> dict[str, Any]:
    """Everything a run computed: each history row but its wall time, its final params and
    loss, and the model's params after it."""
    rows = api.get(f"/v1/runs/{run_id}/history", params={"limit": 1000}).json()["items"]
    run = api.get(f"/v1/runs/{run_id}").json()
    model = api.get(f"/v1/models/{run['model_id']}").json()
    return {"rows": [{k: v for k, v in row.items() if k not in ("elapsed_ms", "run_id")}
                     for row in rows],
            "final": run["final"], "status": run["status"], "params": model["params"]}


def start(api: httpx.Client, dataset: str, h: dict[str, str] | None = None,
          **extra: Any) -> str:
    model = api.post("/v1/models").json()
    answer = api.post(f"/v1/models/{model['id']}/runs",
                      json={"dataset_id": dataset, **SPEC, **extra}, headers=h or {})
    assert answer.status_code in (200, 202), answer.text
    return str(answer.json()["id"])


@pytest.fixture(scope="module")
def topology(postgres_base: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """Two replicas and two workers on a fresh schema, with the dataset and the control run."""
    folder = tmp_path_factory.mktemp("scale")
    with fresh_schema(postgres_base) as url:
        a = start_server(url, folder / "a.log", **ENV)
        b = start_server(url, folder / "b.log", **ENV)
        spawned = [spawn(url, folder / f"w{i}.log") for i in range(2)]
        workers, ports = [w for w, _ in spawned], [p for _, p in spawned]
        topology = Topology(url, libpq_url(url), a, b, workers, ports, folder, "", {})
        try:
            with httpx.Client(base_url=a.url, timeout=120) as api:
                topology.dataset = api.post("/v1/datasets/synthetic",
                                            json={"num_examples": 40000, "seed": 1}).json()["id"]
                topology.control = trace(api, start(api, topology.dataset,
                                                    h={"prefer": "wait=120"}))
            assert topology.control["status"] == "succeeded"
            assert len(topology.control["rows"]) == 12
            yield topology
        finally:
            for worker in topology.workers:
                worker.stop()
            topology.a.stop()
            topology.b.stop()


def holder(topology: Topology, run_id: str) -> int:
    """The index of the worker process group training the run."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = topology.sql("SELECT worker FROM runs WHERE id = %s", run_id)
        if found and found[0]:
            pid = int(found[0].split(":")[1])
            for index, worker in enumerate(topology.workers):
                if worker.process.pid == pid:
                    return index
        time.sleep(0.05)
    raise AssertionError("no worker holds the run")


@pytest.mark.postgres
def test_a_run_streams_and_cancels_across_replicas(topology: Topology) -> None:
    with httpx.Client(base_url=topology.a.url, timeout=60) as a, \
            httpx.Client(base_url=topology.b.url, timeout=60) as b:
        # Prefer: wait on B, for a run a worker trains.
        waited = start(b, topology.dataset, epochs=2, h={"prefer": "wait=60"})
        assert b.get(f"/v1/runs/{waited}").json()["status"] == "succeeded"
        run_id = start(a, topology.dataset, epochs=200)
        lines: list[dict[str, Any]] = []
        with b.stream("GET", f"/v1/runs/{run_id}/events",
                      headers={"accept": "application/jsonl"}) as response:
            for line in response.iter_lines():
                if not line:
                    continue
                lines.append(json.loads(line))
                if len(lines) == 2:  # live on B while the worker trains it: cancel on B
                    cancelled_at = time.monotonic()
                    assert b.post(f"/v1/runs/{run_id}/cancel").status_code == 202
        ended_after = time.monotonic() - cancelled_at
        assert lines[-1]["type"] == "end" and lines[-1]["status"] == "cancelled"
        assert 2 <= len(lines) - 1 < 200
        assert ended_after < 5, ended_after  # within an epoch or a second (and a slow box)
        epochs = [line["epoch"] for line in lines if line["type"] == "epoch"]
        assert epochs == list(range(len(epochs)))
    for replica in (topology.a, topology.b):  # the replicas trained nothing
        assert "attempt" not in replica.log.read_text()
    # Metrics: the API's from the database, each worker's from its own port.
    text = httpx.get(f"{topology.b.url}/metrics").text
    values = dict(line.rsplit(" ", 1) for line in text.splitlines()
                  if line and not line.startswith("#"))
    # Both workers, unless a heartbeat is late on a loaded box (the timeout is 3 s here).
    assert 1 <= float(values["tapeline_workers"]) <= 2
    assert float(values["tapeline_queue_depth"]) == 0
    assert 'tapeline_runs{status="cancelled"} 1.0' in text
    assert "tapeline_run_attempts_total" in text
    trained = 0.0
    for port in topology.ports:
        found = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert "tapeline_worker_heartbeat_age_seconds" in found
        trained += sum(float(line.rsplit(" ", 1)[1]) for line in found.splitlines()
                       if line.startswith("tapeline_worker_epochs_total"))
    assert trained >= 2 + 12 + 2  # the control run, the waited one, the cancelled one


@pytest.mark.postgres
def test_a_worker_killed_mid_run_loses_nothing(topology: Topology) -> None:
    with httpx.Client(base_url=topology.a.url, timeout=60) as api:
        run_id = start(api, topology.dataset)
        index = holder(topology, run_id)
        wait_for(api, run_id, lambda r: r["epochs_completed"] >= 3)
        victim = topology.workers[index]
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait()
        killed_at = time.monotonic()
        topology.worker(index)  # a replacement, as an orchestrator would start
        run = wait_for(api, run_id, lambda r: r["status"] not in ("queued", "running"),
                       timeout=120)
        assert run["status"] == "succeeded", run
        assert time.monotonic() - killed_at < 60
        assert trace(api, run_id) == topology.control
        assert topology.sql("SELECT attempt FROM runs WHERE id = %s", run_id)[0] == 2


@pytest.mark.postgres
def test_a_drained_worker_hands_its_run_over(topology: Topology) -> None:
    with httpx.Client(base_url=topology.a.url, timeout=60) as api:
        run_id = start(api, topology.dataset)
        index = holder(topology, run_id)
        wait_for(api, run_id, lambda r: r["epochs_completed"] >= 3)
        before = api.get(f"/v1/runs/{run_id}/history").json()["items"]
        drained = topology.workers[index]
        assert drained.stop() == 0  # SIGTERM: checkpoint, hand back, exit
        handed = api.get(f"/v1/runs/{run_id}").json()
        assert handed["status"] in ("queued", "running")
        topology.worker(index)
        run = wait_for(api, run_id, lambda r: r["status"] == "succeeded", timeout=120)
        assert run["epochs_completed"] == 12
        assert trace(api, run_id) == topology.control
        after = api.get(f"/v1/runs/{run_id}/history").json()["items"]
        # Not one epoch lost: every row stored before the handover is kept as it was.
        assert after[:len(before)] == before
    assert "handed back" in drained.log.read_text()


@pytest.mark.postgres
def test_a_zombie_worker_cannot_write_a_row(topology: Topology) -> None:
    with httpx.Client(base_url=topology.a.url, timeout=60) as api:
        run_id = start(api, topology.dataset)
        index = holder(topology, run_id)
        wait_for(api, run_id, lambda r: r["epochs_completed"] >= 2)
        zombie = topology.workers[index]
        group = [zombie.process.pid, *children(zombie.process.pid)]
        for pid in group:
            os.kill(pid, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 60
            while topology.sql("SELECT attempt FROM runs WHERE id = %s", run_id)[0] < 2:
                assert time.monotonic() < deadline, "nobody took the run over"
                time.sleep(0.1)
        finally:
            for pid in group:
                os.kill(pid, signal.SIGCONT)
        run = wait_for(api, run_id, lambda r: r["status"] == "succeeded", timeout=120)
        assert run["epochs_completed"] == 12
        assert trace(api, run_id) == topology.control
    deadline = time.monotonic() + 10
    while "lost the run" not in zombie.log.read_text():
        assert time.monotonic() < deadline, "the zombie did not notice it lost the run"
        time.sleep(0.1)


def test_local_requeue_resumes_from_the_checkpoint_after_a_kill(tmp_path: Path) -> None:
    """The `local` executor: a server killed with SIGKILL mid-run and started again resumes
    the run from its checkpoint (the rows before it are the very rows first written) and
    ends bit-identical to a control run."""
    url = sqlite_url(tmp_path)
    env = {"TAPELINE_ON_INTERRUPTED": "requeue", "TAPELINE_WORKERS": "1"}
    first = start_server(url, tmp_path / "a.log", **env)
    with httpx.Client(base_url=first.url, timeout=120) as api:
        dataset = api.post("/v1/datasets/synthetic",
                           json={"num_examples": 40000, "seed": 1}).json()["id"]
        control = trace(api, start(api, dataset, h={"prefer": "wait=120"}))
        run_id = start(api, dataset)
        wait_for(api, run_id, lambda r: r["epochs_completed"] >= 3)
        before = api.get(f"/v1/runs/{run_id}/history").json()["items"]
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait()
    second = start_server(url, tmp_path / "b.log", **env)
    try:
        with httpx.Client(base_url=second.url, timeout=120) as api:
            wait_for(api, run_id, lambda r: r["status"] == "succeeded", timeout=120)
            assert trace(api, run_id) == control
            after = api.get(f"/v1/runs/{run_id}/history").json()["items"]
            assert after[:len(before)] == before  # resumed, not trained again
    finally:
        second.stop()
    assert "attempt 2 started at epoch" in (tmp_path / "b.log").read_text()


@pytest.mark.postgres
def test_a_replica_restarts_while_the_other_keeps_streaming(topology: Topology) -> None:
    with httpx.Client(base_url=topology.a.url, timeout=60) as a:
        run_id = start(a, topology.dataset)
    lines: list[dict[str, Any]] = []
    with httpx.Client(base_url=topology.b.url, timeout=60) as b, \
            b.stream("GET", f"/v1/runs/{run_id}/events",
                     headers={"accept": "application/jsonl"}) as response:
        for line in response.iter_lines():
            if not line:
                continue
            lines.append(json.loads(line))
            if len(lines) == 2:
                assert topology.a.stop() == 0
                topology.a = start_server(topology.url, topology.folder / "a2.log", **ENV)
    assert lines[-1]["type"] == "end" and lines[-1]["status"] == "succeeded"
    assert [line["epoch"] for line in lines[:-1]] == list(range(12))
    with httpx.Client(base_url=topology.a.url, timeout=60) as a:
        assert trace(a, run_id) == topology.control


def test_local_requeue_resumes_a_run_whose_worker_process_died(tmp_path: Path) -> None:
    """The `local` executor with `requeue`: a training process killed with SIGKILL is
    replaced and its run resumes from the checkpoint in the new one, bit-identical."""
    env = {"TAPELINE_ON_INTERRUPTED": "requeue", "TAPELINE_WORKERS": "1"}
    server = start_server(sqlite_url(tmp_path), tmp_path / "server.log", **env)
    try:
        with httpx.Client(base_url=server.url, timeout=120) as api:
            dataset = api.post("/v1/datasets/synthetic",
                               json={"num_examples": 40000, "seed": 1}).json()["id"]
            control = trace(api, start(api, dataset, h={"prefer": "wait=120"}))
            run_id = start(api, dataset)
            wait_for(api, run_id, lambda r: r["epochs_completed"] >= 3)
            before = api.get(f"/v1/runs/{run_id}/history").json()["items"]
            for pid in children(server.process.pid):
                os.kill(pid, signal.SIGKILL)
            wait_for(api, run_id, lambda r: r["status"] == "succeeded", timeout=120)
            assert trace(api, run_id) == control
            after = api.get(f"/v1/runs/{run_id}/history").json()["items"]
            assert after[:len(before)] == before
    finally:
        server.stop()
    assert "resuming it from its checkpoint" in (tmp_path / "server.log").read_text()
