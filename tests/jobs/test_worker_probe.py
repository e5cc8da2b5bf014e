"""The liveness check of ``tapeline worker`` (/healthz on its metrics port): the age of each
worker process's last sign of life against TAPELINE_WORKER_LIVENESS_SECONDS, from figures in
shared memory; a real worker answers 200, then 503 while one of its processes is frozen
(SIGSTOP: neither its event loop nor its training loop moves), then 200 again."""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.jobs.queue import WorkerState
from service.jobs.worker_probe import BEAT, PROGRESS, STATS, health, heartbeat_age
from tests.live.test_operations import children
from tests.support.servers import LiveWorker, free_port, start_worker


def stats(*processes: tuple[float, float]) -> list[float]:
    """Shared figures of processes given as (beat, progress)."""
    figures = [0.0] * (STATS * len(processes))
    for index, (beat, progress) in enumerate(processes):
        figures[index * STATS + BEAT] = beat
        figures[index * STATS + PROGRESS] = progress
    return figures


def test_the_age_is_the_older_of_the_beat_and_the_training_loops_progress() -> None:
    now = 1000.0
    assert heartbeat_age(stats((998.0, 0.0)), 0, now) == 2.0  # idle: the event loop's beat
    assert heartbeat_age(stats((999.0, 900.0)), 0, now) == 100.0  # training, no epoch since
    assert heartbeat_age(stats((900.0, 999.0)), 0, now) == 100.0  # a frozen event loop
    assert heartbeat_age(stats((0.0, 0.0)), 0, now) == math.inf  # never beat


def test_health_fails_when_one_process_is_stuck() -> None:
    alive, report = health(stats((999.0, 0.0), (999.5, 995.0)), 2, 10.0, now=1000.0)
    assert alive and report["status"] == "ok" and report["liveness_seconds"] == 10.0
    assert [p["heartbeat_age_seconds"] for p in report["processes"]] == [1.0, 5.0]
    assert [p["training"] for p in report["processes"]] == [False, True]
    # The second process's run passed no epoch boundary for 20 s while its loop kept beating.
    alive, report = health(stats((999.0, 0.0), (999.5, 980.0)), 2, 10.0, now=1000.0)
    assert not alive and report["status"] == "stuck"
    assert [p["alive"] for p in report["processes"]] == [True, False]
    alive, report = health(stats((0.0, 0.0)), 1, 10.0, now=1000.0)
    assert not alive and report["processes"][0]["heartbeat_age_seconds"] is None


def test_every_epoch_boundary_shows_progress() -> None:
    told: list[bool] = []
    state = WorkerState(sessions=None, claim=None, on_progress=told.append)  # type: ignore[arg-type]
    assert state.at_boundary() is False and told == [True]
    state.draining.set()
    assert state.at_boundary() is True and told == [True, True]


@pytest.fixture
def worker(postgres_url: str, tmp_path: Path) -> Iterator[tuple[LiveWorker, str]]:
    port = free_port()
    live = start_worker(postgres_url, tmp_path / "worker.log", concurrency=1,
                        TAPELINE_WORKER_METRICS_PORT=str(port),
                        TAPELINE_WORKER_LIVENESS_SECONDS="3")
    yield live, f"http://127.0.0.1:{port}"
    for pid in children(live.process.pid):  # never leave a child stopped
        os.kill(pid, signal.SIGCONT)
    live.stop()


def wait_for(url: str, status: int, log: Path, within: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        try:
            answer = httpx.get(f"{url}/healthz", timeout=2)
            if answer.status_code == status:
                return dict(answer.json())
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"/healthz never answered {status}:\n" + \
            log.read_text()
        time.sleep(0.2)


@pytest.mark.postgres
@pytest.mark.live
@pytest.mark.slow
def test_a_real_workers_liveness_fails_while_its_process_is_frozen(
        worker: tuple[LiveWorker, str]) -> None:
    live, url = worker
    report = wait_for(url, 200, live.log)
    assert report["status"] == "ok" and report["liveness_seconds"] == 3.0
    assert [p["process"] for p in report["processes"]] == [0]
    assert report["processes"][0]["heartbeat_age_seconds"] < 3
    assert "tapeline_worker_heartbeat_age_seconds" in httpx.get(f"{url}/metrics").text
    deadline = time.monotonic() + 30
    while not (pids := children(live.process.pid)):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    process = next(pid for pid in pids
                   if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text())
    os.kill(process, signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        report = wait_for(url, 503, live.log, within=30)
        assert time.monotonic() - stopped > 2  # not before the bound
        assert report["status"] == "stuck" and report["processes"][0]["alive"] is False
        assert report["processes"][0]["heartbeat_age_seconds"] > 3
    finally:
        os.kill(process, signal.SIGCONT)
    assert wait_for(url, 200, live.log, within=30)["processes"][0]["alive"] is True
    assert live.process.poll() is None
