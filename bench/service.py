"""Benchmark the service: the tutorial's workflow over loopback HTTP against a real server.

    .venv/bin/python bench/service.py [--workflows 200] [--seconds 10]

Measures, in one run and against baselines measured in the same run:
  * one client: median and p99 latency of the whole workflow (synthesize 1000 points, create
    a model, run 10 epochs with ``Prefer: wait``, fetch the history), against four bare
    ``/healthz`` round trips (the HTTP floor of four requests);
  * 16 concurrent clients: workflows per second;
  * ``/healthz`` p99 while both workers train long runs, against ``/healthz`` p99 when idle.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import sqlite_url, start_server  # noqa: E402


def workflow(client: httpx.Client) -> None:
    """The tutorial over HTTP: four requests."""
    dataset = client.post("/v1/datasets/synthetic", json={"seed": 1})
    model = client.post("/v1/models")
    run = client.post(f"/v1/models/{model.json()['id']}/runs", headers={"prefer": "wait=30"},
                      json={"dataset_id": dataset.json()["id"]})
    assert run.status_code == 200 and run.json()["status"] == "succeeded", run.text
    history = client.get(f"/v1/runs/{run.json()['id']}/history")
    assert len(history.json()["items"]) == 10


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def timed(fn: object, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append((time.perf_counter() - start) * 1000)
    return out


def concurrent(url: str, clients: int, seconds: float) -> float:
    done = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def loop() -> None:
        nonlocal done
        with httpx.Client(base_url=url, timeout=60) as client:
            while time.monotonic() < stop:
                workflow(client)
                with lock:
                    done += 1

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="tapeline-bench-"))
    server = start_server(sqlite_url(folder), folder / "server.log",
                          TAPELINE_LOG_LEVEL="warning", TAPELINE_WORKERS="2")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for _ in range(10):
                workflow(client)
            floor = timed(lambda: [client.get("/healthz") for _ in range(4)], args.workflows)
            latencies = timed(lambda: workflow(client), args.workflows)
            idle_health = timed(lambda: client.get("/healthz"), 500)

            rate = concurrent(server.url, 16, args.seconds)

            big = client.post("/v1/datasets/synthetic", json={"num_examples": 200_000,
                                                              "seed": 2}).json()["id"]
            runs = []
            for _ in range(2):
                model = client.post("/v1/models").json()["id"]
                runs.append(client.post(f"/v1/models/{model}/runs", json={
                    "dataset_id": big, "epochs": 100_000}).json()["id"])
            while any(client.get(f"/v1/runs/{r}").json()["status"] != "running" for r in runs):
                time.sleep(0.05)
            time.sleep(0.5)
            loaded_health = timed(lambda: client.get("/healthz"), 500)
            for run in runs:
                client.post(f"/v1/runs/{run}/cancel")
    finally:
        server.stop()

    median, p99 = statistics.median(latencies), percentile(latencies, 99)
    floor_median = statistics.median(floor)
    print(f"cpu cores: {os.cpu_count()}; workers: 2; database: SQLite (WAL)")
    print(f"one client, tutorial workflow (4 requests, {args.workflows} runs):")
    print(f"  median {median:.2f} ms, p99 {p99:.2f} ms  (target: median <= 15 ms)")
    print(f"  baseline, 4 bare /healthz round trips: median {floor_median:.2f} ms; "
          f"ratio {median / floor_median:.1f}x")
    print(f"16 concurrent clients: {rate:.1f} workflows/s over {args.seconds:.0f} s")
    idle_p99, loaded_p99 = percentile(idle_health, 99), percentile(loaded_health, 99)
    print(f"/healthz p99: idle {idle_p99:.2f} ms, both workers training {loaded_p99:.2f} ms "
          f"(target <= 50 ms); ratio {loaded_p99 / idle_p99:.1f}x")


if __name__ == "__main__":
    main()
