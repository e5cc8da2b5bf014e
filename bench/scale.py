"""Scale-out figures, all measured in one run against baselines of the same run.

    .venv/bin/python bench/scale.py                  # the issue's sizes (long on 2 cores)
    .venv/bin/python bench/scale.py --quick          # smaller, for a loaded machine

On a fresh PostgreSQL schema (TAPELINE_BENCH_POSTGRES_URL, default the local server's `test`
database) with real processes on loopback:

* throughput: R runs of E epochs on N examples trained by 1 worker, then by 2 (each
  `tapeline worker --concurrency 1`); the ratio of epochs per second (target >= 1.8), in
  batches of 32 (Keras' default: training-bound), then in full batches (the tutorial's: an
  epoch is ~40 us of arithmetic and a commit, so that figure is PostgreSQL's);
* dispatch: queue -> running latency (the run's stored created_at -> started_at) for runs
  submitted to idle workers, p50 / p99 (target p50 <= 50 ms);
* commit -> stream: this process claims a run as a worker would and commits its epochs one
  at a time; L readers (half on each of two API replicas, none on the one it was created
  on... the store is the only link) receive each over JSON Lines; p50 / p99 of commit to
  receipt over all readers (target p50 <= 50 ms), and the same with 1 reader;
* tutorial: the tutorial workflow (synthesize, model, run with Prefer: wait, history) on
  `queue` (one API, one worker) vs `local` (one server), medians and ratio (target <= 1.5);
* store: epoch rows committed per second with 1, 2, 4, 8 writers (one run each, one row a
  commit, as a worker flushing every epoch does), and checkpoint bytes per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.store import lifecycle  # noqa: E402
from service.store.db import make_engine, make_sessionmaker, migrate  # noqa: E402
from service.training.records import EpochRecord  # noqa: E402
from tests.support.servers import LiveServer, LiveWorker, start_server, start_worker  # noqa: E402

BASE = os.environ.get("TAPELINE_BENCH_POSTGRES_URL",
                      "postgresql+psycopg://postgres@127.0.0.1:5432/test")
LOGS = Path(os.environ.get("TAPELINE_BENCH_LOGS", "/tmp/tapeline-bench-scale"))
QUIET = {"TAPELINE_LOG_LEVEL": "warning", "TAPELINE_WORKER_TIMEOUT": "10"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@contextmanager
def schema() -> Iterator[str]:
    """A URL whose connections use a fresh schema, dropped afterwards."""
    name = f"bench_{secrets.token_hex(5)}"
    plain = BASE.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {name}")
    try:
        yield f"{BASE}{'&' if '?' in BASE else '?'}options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(plain, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {name} CASCADE")


@contextmanager
def topology(url: str, apis: int, workers: int, executor: str = "queue"
             ) -> Iterator[tuple[list[LiveServer], list[LiveWorker]]]:
    LOGS.mkdir(parents=True, exist_ok=True)
    env = {**QUIET, "TAPELINE_EXECUTOR": executor}
    servers = [start_server(url, LOGS / f"api{i}.log", **env) for i in range(apis)]
    started = [start_worker(url, LOGS / f"worker{i}.log", **env) for i in range(workers)]
    if workers:
        plain = url.replace("postgresql+psycopg://", "postgresql://")
        deadline = time.monotonic() + 60
        while True:
            with psycopg.connect(plain) as connection:
                alive = connection.execute("SELECT count(*) FROM procrastinate_workers"
                                           ).fetchone()
            if alive and alive[0] >= workers:
                break
            assert time.monotonic() < deadline, "workers did not register"
            time.sleep(0.2)
    try:
        yield servers, started
    finally:
        for worker in started:
            worker.stop()
        for server in servers:
            server.stop()


def wait_all(api: httpx.Client, run_ids: list[str], timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    for run_id in run_ids:
        while api.get(f"/v1/runs/{run_id}").json()["status"] not in (
                "succeeded", "failed", "cancelled", "diverged"):
            assert time.monotonic() < deadline
            time.sleep(0.2)


def throughput(runs: int, epochs: int, examples: int, workers: int,
               batch_size: int | None = None) -> float:
    """Epochs per second of ``runs`` runs trained by ``workers`` workers."""
    with schema() as url, topology(url, 1, workers) as (servers, _), \
            httpx.Client(base_url=servers[0].url, timeout=120) as api:
        dataset = api.post("/v1/datasets/synthetic",
                           json={"num_examples": examples, "seed": 1}).json()["id"]
        models = [api.post("/v1/models").json()["id"] for _ in range(runs)]
        start = time.perf_counter()
        ids = [api.post(f"/v1/models/{m}/runs",
                        json={"dataset_id": dataset, "epochs": epochs,
                              "batch_size": batch_size}).json()["id"]
               for m in models]
        wait_all(api, ids)
        return runs * epochs / (time.perf_counter() - start)


def dispatch(samples: int) -> list[float]:
    """Milliseconds from a run's creation to its start, workers idle."""
    with schema() as url, topology(url, 1, 1) as (servers, _), \
            httpx.Client(base_url=servers[0].url, timeout=120) as api:
        dataset = api.post("/v1/datasets/synthetic", json={"seed": 1}).json()["id"]
        found = []
        for _ in range(samples):
            model = api.post("/v1/models").json()["id"]
            run = api.post(f"/v1/models/{model}/runs", headers={"prefer": "wait=60"},
                           json={"dataset_id": dataset, "epochs": 1}).json()
            found.append(run["id"])
        plain = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain) as connection:
            rows = connection.execute(
                "SELECT extract(epoch FROM started_at - created_at) * 1000 FROM runs "
                "WHERE id = ANY(%s)", (found,)).fetchall()
        return [float(r[0]) for r in rows]


async def _read(url: str, run_id: str, stamps: dict[int, list[float]],
                ready: asyncio.Event, count: list[int], total: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=None) as client, \
            client.stream("GET", f"/v1/runs/{run_id}/events",
                          headers={"accept": "application/jsonl"}) as response:
        count[0] += 1
        if count[0] == total:
            ready.set()
        async for line in response.aiter_lines():
            if not line:
                continue
            item = json.loads(line)
            if item["type"] == "end":
                return
            stamps.setdefault(item["epoch"], []).append(time.perf_counter())


def stream_latency(readers: int, epochs: int) -> list[float]:
    """Milliseconds from the commit of an epoch to its receipt by each reader."""
    with schema() as url, topology(url, 3, 0) as (servers, _):
        with httpx.Client(base_url=servers[0].url, timeout=60) as api:
            dataset = api.post("/v1/datasets/synthetic", json={"seed": 1}).json()["id"]
            model = api.post("/v1/models").json()["id"]
            run_id = api.post(f"/v1/models/{model}/runs",
                              json={"dataset_id": dataset, "epochs": epochs}).json()["id"]
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        with sessions.begin() as session:
            started = lifecycle.claim_run(session, run_id, "bench", timeout=60,
                                          max_attempts=3)
        assert started is not None
        stamps: dict[int, list[float]] = {}
        committed: dict[int, float] = {}

        async def main() -> None:
            ready, count = asyncio.Event(), [0]
            tasks = [asyncio.create_task(_read(servers[1 + i % 2].url, run_id, stamps, ready,
                                               count, readers)) for i in range(readers)]
            await asyncio.wait_for(ready.wait(), 120)
            await asyncio.sleep(0.5)

            def write() -> None:
                params = {"W": np.array([5.0]), "b": np.array(0.0)}
                for epoch in range(epochs):
                    with sessions.begin() as session:
                        lifecycle.append_epochs(session, started.run, [
                            EpochRecord(epoch, 1.0, {"mse": 1.0}, params, 0.1)], started.attempt)
                    committed[epoch] = time.perf_counter()
                    time.sleep(0.1)  # 10 epochs a second
                with sessions.begin() as session:
                    lifecycle.finish_run(session, run_id, "cancelled", completed=epochs,
                                         attempt=started.attempt,
                                         error=("cancelled", "bench", epochs))

            await asyncio.to_thread(write)
            await asyncio.wait_for(asyncio.gather(*tasks), 120)

        asyncio.run(main())
        engine.dispose()
        return [(t - committed[e]) * 1000 for e, ts in stamps.items() for t in ts]


def tutorial_ms(url: str, count: int) -> float:
    with httpx.Client(base_url=url, timeout=120) as api:
        times = []
        for _ in range(count):
            start = time.perf_counter()
            dataset = api.post("/v1/datasets/synthetic", json={"seed": 1}).json()["id"]
            model = api.post("/v1/models").json()["id"]
            run = api.post(f"/v1/models/{model}/runs", headers={"prefer": "wait=60"},
                           json={"dataset_id": dataset}).json()
            assert run["status"] == "succeeded"
            api.get(f"/v1/runs/{run['id']}/history")
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)


def tutorial(count: int) -> tuple[float, float]:
    with schema() as url, topology(url, 1, 1) as (servers, _):
        queue = tutorial_ms(servers[0].url, count)
    with schema() as url, topology(url, 1, 0, executor="local") as (servers, _):
        local = tutorial_ms(servers[0].url, count)
    return queue, local


def store_rows(writers: int, seconds: float, batch: int = 1) -> float:
    """Epoch rows committed per second by ``writers`` threads, ``batch`` rows a commit."""
    with schema() as url:
        engine = make_engine(url)
        migrate(engine)
        sessions = make_sessionmaker(engine)
        from service.store import repo

        runs = []
        with sessions.begin() as session:
            own = repo.Repository(session, "default")
            x = np.zeros((4, 1), dtype=np.float32)
            dataset = own.create_dataset(x=x, y=x[:, 0], source="inline", name="d")
            for _ in range(writers):
                model = own.create_model(kind="linear", config={"features": 1},
                                          params={"W": np.array([5.0]), "b": np.array(0.0)},
                                          name=None)
                runs.append(own.create_run(
                    model=model, dataset=dataset, epochs=10**9,
                    optimizer={"kind": "sgd", "learning_rate": 0.1}, batch_size=None,
                    shuffle_seed=None, dtype="float32",
                    options={"loss": "mse", "huber_delta": 1.0,
                             "regularization": {"l1": 0.0, "l2": 0.0}, "validation": None,
                             "early_stopping": None, "shuffle": True}).id)
        claimed = []
        for run_id in runs:
            with sessions.begin() as session:
                claimed.append(lifecycle.claim_run(session, run_id, "bench", timeout=60,
                                                   max_attempts=3))
        done = [0] * writers
        stop = time.perf_counter() + seconds

        def write(i: int) -> None:
            started = claimed[i]
            assert started is not None
            params = {"W": np.array([5.0]), "b": np.array(0.0)}
            epoch = 0
            while time.perf_counter() < stop:
                with sessions.begin() as session:
                    lifecycle.append_epochs(session, started.run, [
                        EpochRecord(e, 1.0, {"mse": 1.0}, params, 0.1)
                        for e in range(epoch, epoch + batch)], started.attempt)
                epoch += batch
            done[i] = epoch

        threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
        begin = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - begin
        engine.dispose()
        return sum(done) / elapsed


def checkpoint_rate(size: int, seconds: float) -> float:
    """Checkpoint bytes per second written by one writer, blobs of ``size`` bytes."""
    with schema() as url:
        engine = make_engine(url)
        migrate(engine)
        sessions = make_sessionmaker(engine)
        from service.store import repo

        with sessions.begin() as session:
            own = repo.Repository(session, "default")
            x = np.zeros((4, 1), dtype=np.float32)
            dataset = own.create_dataset(x=x, y=x[:, 0], source="inline", name="d")
            model = own.create_model(kind="linear", config={"features": 1},
                                      params={"W": np.array([5.0]), "b": np.array(0.0)},
                                          name=None)
            run_id = own.create_run(
                model=model, dataset=dataset, epochs=10**9,
                optimizer={"kind": "sgd", "learning_rate": 0.1}, batch_size=None,
                shuffle_seed=None, dtype="float32",
                options={"loss": "mse", "huber_delta": 1.0,
                         "regularization": {"l1": 0.0, "l2": 0.0}, "validation": None,
                         "early_stopping": None, "shuffle": True}).id
        with sessions.begin() as session:
            started = lifecycle.claim_run(session, run_id, "bench", timeout=60, max_attempts=3)
        assert started is not None
        blob = os.urandom(size)
        written, begin = 0, time.perf_counter()
        while time.perf_counter() - begin < seconds:
            with sessions.begin() as session:
                lifecycle.heartbeat(session, run_id, started.attempt)
                lifecycle.save_checkpoint(session, run_id, started.attempt, written, blob)
            written += 1
        engine.dispose()
        return written * size / (time.perf_counter() - begin)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--only", nargs="*", default=None,
                        choices=["throughput", "dispatch", "stream", "tutorial", "store"])
    args = parser.parse_args()
    runs, epochs, examples = (8, 20, 2000) if args.quick else (40, 200, 10_000)
    want = set(args.only or ["throughput", "dispatch", "stream", "tutorial", "store"])
    results: dict[str, Any] = {}
    if "throughput" in want:
        # Keras' `fit` trains in batches of 32 unless told otherwise: 313 steps an epoch here,
        # so the figure is training. The tutorial's full batch makes an epoch ~40 us of
        # arithmetic, and the figure then measures PostgreSQL's commits on the same two cores
        # (one epoch row and checkpoint a commit); both are printed, the target is read on
        # the first.
        for label, batch_size in (("batch 32 (Keras' default)", 32),
                                  ("full batch (the tutorial's)", None)):
            one = throughput(runs, epochs, examples, 1, batch_size)
            two = throughput(runs, epochs, examples, 2, batch_size)
            results[f"throughput, {label}"] = {
                "runs": runs, "epochs": epochs, "examples": examples,
                "1 worker epochs/s": round(one, 1), "2 workers epochs/s": round(two, 1),
                "ratio": round(two / one, 2)}
    if "dispatch" in want:
        found = dispatch(10 if args.quick else 40)
        results["dispatch queue->running ms"] = {"p50": round(pct(found, 50), 1),
                                                 "p99": round(pct(found, 99), 1)}
    if "stream" in want:
        for readers in (1, 100 if args.quick else 500):
            found = stream_latency(readers, 20 if args.quick else 50)
            results[f"commit->stream ms, {readers} readers on 2 other replicas"] = {
                "p50": round(pct(found, 50), 1), "p99": round(pct(found, 99), 1),
                "received": len(found)}
    if "tutorial" in want:
        queue, local = tutorial(5 if args.quick else 20)
        results["tutorial ms"] = {"queue": round(queue, 1), "local": round(local, 1),
                                  "ratio": round(queue / local, 2)}
    if "store" in want:
        seconds = 3.0 if args.quick else 10.0
        results["epoch rows/s by writers, 1 row a commit"] = {
            n: round(store_rows(n, seconds)) for n in (1, 2, 4, 8)}
        results["epoch rows/s by writers, 10 rows a commit"] = {
            n: round(store_rows(n, seconds, 10)) for n in (1, 4)}
        results["checkpoint MB/s (1 MB blobs, one writer)"] = round(
            checkpoint_rate(1 << 20, seconds) / 1e6, 1)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
