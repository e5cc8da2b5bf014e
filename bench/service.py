"""Benchmark the service: the tutorial's workflow over loopback HTTP against a real server.

    .venv/bin/python bench/service.py [--workflows 200] [--seconds 10] [--only-workflow]

Measures, in one run and against baselines measured in the same run:
  * one client: median and p99 latency of the whole workflow (synthesize 1000 points, create
    a model, run 10 epochs with ``Prefer: wait``, fetch the history), against four bare
    ``/healthz`` round trips (the HTTP floor of four requests);
  * 16 concurrent clients: workflows per second, against bare ``/healthz`` requests per second
    from 16 clients divided by 4 (the HTTP floor of a four-request workflow);
  * per request of the workflow, one client: medians;
  * ``/healthz`` p99 while both workers train long runs, against ``/healthz`` p99 when idle;
  * ``/healthz`` p99 while a 64 MiB CSV uploads (posted from another process), against idle;
  * N SSE readers of one run (500 by default; from another process, pinned with ``--pin``,
    the default, to the last CPU while the service runs on the others): how long after the
    run ended the last one got its end event, and the run's duration, against one reader's,
    in alternating runs (medians).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.clients import (  # noqa: E402
    HealthSampler,
    big_csv,
    in_process,
    post_file,
    raise_open_files,
    sse_crowd,
)
from tests.support.servers import sqlite_url, start_server  # noqa: E402

STEPS = ("synthesize", "create model", "run (Prefer: wait)", "history")


def workflow(client: httpx.Client, steps: dict[str, list[float]] | None = None) -> None:
    """The tutorial over HTTP: four requests (``steps`` collects each one's milliseconds)."""
    marks = [time.perf_counter()]
    dataset = client.post("/v1/datasets/synthetic", json={"seed": 1})
    marks.append(time.perf_counter())
    model = client.post("/v1/models")
    marks.append(time.perf_counter())
    run = client.post(f"/v1/models/{model.json()['id']}/runs", headers={"prefer": "wait=30"},
                      json={"dataset_id": dataset.json()["id"]})
    marks.append(time.perf_counter())
    assert run.status_code == 200 and run.json()["status"] == "succeeded", run.text
    history = client.get(f"/v1/runs/{run.json()['id']}/history")
    marks.append(time.perf_counter())
    assert len(history.json()["items"]) == 10
    if steps is not None:
        for name, start, end in zip(STEPS, marks, marks[1:], strict=False):
            steps.setdefault(name, []).append((end - start) * 1000)


def seconds(timestamp: str) -> float:
    """An RFC 3339 timestamp as POSIX seconds."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


# Runs of the shape: 16 epochs of 12,500 mini-batches (~0.7 s each compiled), so the
# readers' arrival (one burst of requests) is paid once and each epoch is fanned out to all.
CROWD_EPOCHS = 16
CROWD_EXAMPLES = 100_000


def watched(client: httpx.Client, url: str, dataset: str, readers: int,
            cpus: set[int] | None) -> tuple[float, float]:
    """A run of mini-batch epochs read by ``readers`` SSE clients (on ``cpus``): how long it
    trained, and how long after it ended the last reader had its end event."""
    model = client.post("/v1/models").json()["id"]
    run = client.post(f"/v1/models/{model}/runs", json={
        "dataset_id": dataset, "epochs": CROWD_EPOCHS, "batch_size": 8}).json()["id"]
    readings = in_process(sse_crowd, url, f"/v1/runs/{run}/events", readers, cpus).result()
    assert all(r.epochs == list(range(CROWD_EPOCHS)) and r.ended_at for r in readings), \
        readings[:3]
    ended = client.get(f"/v1/runs/{run}").json()
    finished = seconds(ended["finished_at"])
    return finished - seconds(ended["started_at"]), max(r.ended_at or 0.0 for r in readings) \
        - finished


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


def concurrent(url: str, clients: int, seconds: float,
               work: object = workflow) -> float:
    """Calls of ``work(client)`` per second from ``clients`` threads, each its own client."""
    done = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def loop() -> None:
        nonlocal done
        with httpx.Client(base_url=url, timeout=60) as client:
            while time.monotonic() < stop:
                work(client)  # type: ignore[operator]
                with lock:
                    done += 1

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done / (time.monotonic() - start)


def report_workflow(args: argparse.Namespace, latencies: list[float], floor: list[float],
                    steps: dict[str, list[float]], rate: float, health_rate: float) -> None:
    median, p99 = statistics.median(latencies), percentile(latencies, 99)
    floor_median = statistics.median(floor)
    print(f"cpu cores: {os.cpu_count()}; workers: 2; database: SQLite (WAL)")
    print(f"one client, tutorial workflow (4 requests, {args.workflows} runs):")
    print(f"  median {median:.2f} ms, p99 {p99:.2f} ms")
    print(f"  baseline, 4 bare /healthz round trips: median {floor_median:.2f} ms; "
          f"ratio {median / floor_median:.2f}x (target <= 3.0)")
    print("  per request, medians: " + ", ".join(
        f"{name} {statistics.median(values):.2f} ms" for name, values in steps.items()))
    print(f"16 concurrent clients: {rate:.1f} workflows/s over {args.seconds:.0f} s; "
          f"/healthz from 16 clients {health_rate:.0f} req/s, / 4 = {health_rate / 4:.1f}; "
          f"ratio {rate / (health_rate / 4):.3f} (target >= 0.35)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--readers", type=int, default=500)
    parser.add_argument("--crowd-runs", type=int, default=3, help="runs of each kind")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                        help="readers on the last CPU, the service on the others")
    parser.add_argument("--only-workflow", action="store_true",
                        help="measure the workflow (one client and 16) and stop there; the "
                        "service runs on every CPU")
    args = parser.parse_args()
    raise_open_files()

    folder = Path(tempfile.mkdtemp(prefix="tapeline-bench-"))
    # With --pin, the SSE readers run on the last CPU and the service on the others, as when
    # readers are on other machines: the run's slowdown is then the service's own work for them.
    cpus = sorted(os.sched_getaffinity(0))
    pin = args.pin and len(cpus) > 1 and not args.only_workflow
    service_cpus, crowd_cpus = (set(cpus[:-1]), {cpus[-1]}) if pin else (None, None)
    server = start_server(sqlite_url(folder), folder / "server.log", cpus=service_cpus,
                          TAPELINE_LOG_LEVEL="warning", TAPELINE_WORKERS="2")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for _ in range(10):
                workflow(client)
            steps: dict[str, list[float]] = {}
            floor, latencies = [], []
            for _ in range(args.workflows):  # interleaved, so both see the same machine
                floor += timed(lambda: [client.get("/healthz") for _ in range(4)], 1)
                latencies += timed(lambda: workflow(client, steps), 1)
            idle_health = timed(lambda: client.get("/healthz"), 500)

            health_rate = concurrent(server.url, 16, args.seconds / 2,
                                     lambda c: c.get("/healthz"))
            rate = concurrent(server.url, 16, args.seconds)
            if args.only_workflow:
                report_workflow(args, latencies, floor, steps, rate, health_rate)
                return

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

            (folder / "big.csv").write_bytes(big_csv())
            with HealthSampler(server.url) as idle_sampler:
                time.sleep(3)
            with HealthSampler(server.url) as upload_sampler:
                status, _ = in_process(post_file, f"{server.url}/v1/datasets/upload",
                                       str(folder / "big.csv"), "big.csv", "text/csv").result()
            assert status == 201

            slow = client.post("/v1/datasets/synthetic", json={"num_examples": CROWD_EXAMPLES,
                                                               "seed": 1}).json()["id"]
            alone, crowd = [], []
            for _ in range(args.crowd_runs):
                alone.append(watched(client, server.url, slow, 1, crowd_cpus))
                crowd.append(watched(client, server.url, slow, args.readers, crowd_cpus))
    finally:
        server.stop()

    report_workflow(args, latencies, floor, steps, rate, health_rate)
    idle_p99, loaded_p99 = percentile(idle_health, 99), percentile(loaded_health, 99)
    print(f"/healthz p99: idle {idle_p99:.2f} ms, both workers training {loaded_p99:.2f} ms "
          f"(target <= 50 ms); ratio {loaded_p99 / idle_p99:.1f}x")
    upload_p99, quiet_p99 = upload_sampler.p99_ms(), idle_sampler.p99_ms()
    print(f"/healthz p99 while a 64 MiB CSV uploads: {upload_p99:.1f} ms (target < 100 ms); "
          f"idle in the same run {quiet_p99:.1f} ms")
    alone_took, alone_lag = (statistics.median(v) for v in zip(*alone, strict=True))
    crowd_took, crowd_lag = (statistics.median(v) for v in zip(*crowd, strict=True))
    placement = (f"service on CPUs {sorted(service_cpus)}, readers on {sorted(crowd_cpus)}"
                 if service_cpus and crowd_cpus else "unpinned")
    print(f"{args.readers} SSE readers of one run of {CROWD_EPOCHS} epochs (medians of "
          f"{args.crowd_runs} runs each, alternating; {placement}):")
    print(f"  last end event {crowd_lag * 1000:.0f} ms after the run ended (target < 1 s); "
          f"one reader: {alone_lag * 1000:.0f} ms")
    print(f"  run {crowd_took:.2f} s, one reader {alone_took:.2f} s: "
          f"ratio {crowd_took / alone_took:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
