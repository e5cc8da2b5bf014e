"""Run search at scale: a filtered and sorted first page against the unfiltered first page
(`GET /v1/runs?limit=50`), both over loopback HTTP from a real server, in the same run.

    .venv/bin/python bench/search.py [--stores sqlite,postgres] [--postgres-runs 100000]
                                     [--sqlite-runs 20000] [--rounds 40]

For each store it makes the runs (written straight through the store's tables in batches,
not over HTTP: 10 runs a model, a learning-rate sweep over optimizers, batch sizes, kinds,
statuses, metrics and tags), starts `tapeline serve` on it, and times interleaved rounds of
the unfiltered page and of each of the ten queries below (written down before any index was
added); it prints each query's p50 / p95 and its p95 over the unfiltered page's p95, and
fails (exit 1) when a ratio passes 3.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.store.codec import pack_params  # noqa: E402
from service.store.db import make_engine, make_sessionmaker, migrate  # noqa: E402
from service.store.tables import DatasetRow, ModelRow, RunRow  # noqa: E402
from tests.support.postgres import POSTGRES_URL, fresh_schema  # noqa: E402
from tests.support.servers import sqlite_url, start_server  # noqa: E402

TARGET = 3.0
PAGE = 50
# The ten queries (filter, sort), written down before any index was added.
QUERIES = [
    ("equality", "params.optimizer.kind = 'adam'", "-created_at"),
    ("range", "params.optimizer.learning_rate >= 0.001 AND "
              "params.optimizer.learning_rate < 0.01", "-created_at"),
    ("IN", "status IN ('failed', 'diverged')", "-created_at"),
    ("OR param / tag", "params.batch_size = 32 OR tags.team = 'speech'", "-created_at"),
    ("sort by a metric", "status = 'succeeded'", "metrics.val_loss"),
    ("LIKE on names", "name LIKE 'sweep-0421%'", "name"),
    ("missing field", "metrics.val_loss IS NULL", "-created_at"),
    ("tag and metric", "tags.team = 'cv' AND metrics.accuracy > 0.9", "-metrics.accuracy"),
    ("model config", "model.kind = 'mlp' AND model.hidden = [64, 64]", "-created_at"),
    ("metric range, param sort", "metrics.val_loss < 0.1", "params.optimizer.learning_rate"),
]
RUNS_PER_MODEL = 10
TEAMS = ("cv", "nlp", "vision", "speech", "audio", "tabular", "rl", "graphs")
LEARNING_RATES = tuple(float(f"{v:.3g}") for v in np.geomspace(1e-4, 0.5, 12))
KINDS = (("linear", {"features": 4}), ("logistic", {"features": 4, "classes": 2}),
         ("mlp", {"features": 4, "hidden": [32], "activation": "relu", "task": "regression"}),
         ("mlp", {"features": 4, "hidden": [64, 64], "activation": "tanh",
                  "task": "classification", "classes": 3}))
STATUSES = ("succeeded",) * 17 + ("failed", "diverged", "cancelled")


def _options(rng: np.random.Generator, classifier: bool) -> dict[str, Any]:
    validated = rng.random() < 0.6
    return {"loss": "cross_entropy" if classifier else "mse", "huber_delta": 1.0,
            "regularization": {"l1": 0.0, "l2": float(rng.choice([0.0, 1e-4, 1e-3, 1e-2]))},
            "validation": {"fraction": 0.2} if validated else None,
            "early_stopping": None, "shuffle": True}


def _optimizer(rng: np.random.Generator) -> dict[str, Any]:
    kind = str(rng.choice(["sgd", "momentum", "adam"]))
    lr = float(rng.choice(LEARNING_RATES))
    if kind == "adam":
        return {"kind": kind, "learning_rate": lr, "beta_1": 0.9, "beta_2": 0.999,
                "epsilon": 1e-7}
    if kind == "momentum":
        return {"kind": kind, "learning_rate": lr, "momentum": 0.9, "nesterov": False}
    return {"kind": kind, "learning_rate": lr}


def rows(count: int, seed: int = 7) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Models and their runs, ``RUNS_PER_MODEL`` a model, ``count`` runs in all."""
    rng = np.random.default_rng(seed)
    blob = pack_params({"W": np.zeros(4), "b": np.zeros(())})
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for m in range(count // RUNS_PER_MODEL):
        kind, config = KINDS[m % len(KINDS)]
        classifier = "classes" in config
        stamp = start + timedelta(minutes=m * RUNS_PER_MODEL)
        model = {"id": f"mdl_bench{m:08d}", "owner": "default", "name": f"model-{m % 500}",
                 "kind": kind, "features": 4, "config": config, "params": blob,
                 "epochs_trained": 0, "history_rows": 0, "created_at": stamp,
                 "updated_at": stamp, "tags": {}}
        runs = []
        for r in range(RUNS_PER_MODEL):
            i = m * RUNS_PER_MODEL + r
            status = str(rng.choice(STATUSES))
            options = _options(rng, classifier)
            created = stamp + timedelta(minutes=r)
            metrics: dict[str, float] | None = None
            loss = None
            if status == "succeeded":
                loss = float(rng.gamma(2.0, 0.2))
                metrics = {"accuracy": float(rng.beta(8, 2)), "log_loss": loss} if classifier \
                    else {"mse": loss, "rmse": loss ** 0.5, "mae": loss * 0.8, "r2": 1 - loss}
                if options["validation"]:
                    metrics["val_loss"] = float(loss * rng.uniform(0.9, 1.4))
            tags = {"sweep": f"sweep-{i // 100:05d}"}
            if rng.random() < 0.7:
                tags["team"] = str(rng.choice(TEAMS))
            runs.append({
                "id": f"run_bench{i:09d}", "owner": "default", "model_id": model["id"],
                "name": f"sweep-{i:06d}", "tags": tags, "dataset_id": f"ds_bench{i % 20:04d}",
                "status": status, "epochs": int(rng.choice([5, 10, 20, 50])),
                "epochs_completed": 10, "optimizer": _optimizer(rng),
                "batch_size": [None, 16, 32, 64, 128][int(rng.integers(5))],
                "shuffle_seed": None, "dtype": "float32", "options": options,
                "record_params": True, "history_base": 0, "initial_params": blob,
                "final_params": blob if loss is not None else None, "final_loss": loss,
                "final_metrics": metrics, "created_at": created, "started_at": created,
                "finished_at": created + timedelta(seconds=30),
                "duration_ms": float(rng.uniform(500, 60_000)), "attempt": 1, "handbacks": 0,
            })
        yield model, runs


def fill(url: str, count: int) -> float:
    """Make the datasets, models and runs; seconds it took."""
    began = time.perf_counter()
    engine = make_engine(url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        session.execute(insert(DatasetRow), [{
            "id": f"ds_bench{d:04d}", "owner": "default", "name": f"data-{d}",
            "source": "inline", "num_examples": 4, "features": 4, "dtype": "float64",
            "x": b"", "y": b"", "summary": b"", "y_min": 0.0,
            "y_max": 1.0, "y_integral": True, "stored_bytes": 0, "tags": {},
            "created_at": datetime(2026, 1, 1, tzinfo=UTC)} for d in range(20)])
    models: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for model, made in rows(count):
        models.append(model)
        runs += made
        if len(runs) >= 10_000:
            _write(sessions, models, runs)
            models, runs = [], []
    if runs:
        _write(sessions, models, runs)
    with engine.connect() as connection:  # fresh statistics for the planner, as a real
        connection.exec_driver_sql("ANALYZE")  # store's autovacuum would have them
        connection.commit()
    engine.dispose()
    return time.perf_counter() - began


def _write(sessions: Any, models: list[dict[str, Any]], runs: list[dict[str, Any]]) -> None:
    with sessions.begin() as session:
        session.execute(insert(ModelRow), models)
        session.execute(insert(RunRow), runs)


def timed(client: httpx.Client, params: dict[str, Any]) -> float:
    """Milliseconds of one `GET /v1/runs`."""
    began = time.perf_counter()
    answer = client.get("/v1/runs", params=params)
    elapsed = (time.perf_counter() - began) * 1000
    assert answer.status_code == 200, answer.text
    return elapsed


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def measure(url: str, folder: Path, rounds: int) -> dict[str, list[float]]:
    """Interleaved rounds of the unfiltered page and each query; milliseconds of each."""
    server = start_server(url, folder / "server.log")
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            plans = {"unfiltered": {"limit": PAGE}}
            plans |= {name: {"filter": f, "sort": s, "limit": PAGE} for name, f, s in QUERIES}
            for params in plans.values():  # warm up (and check each answers)
                found = client.get("/v1/runs", params=params).json()["items"]
                assert found or params.get("filter"), params
                timed(client, params)
            times: dict[str, list[float]] = {name: [] for name in plans}
            for _ in range(rounds):
                for name, params in plans.items():
                    times[name].append(timed(client, params))
            return times
    finally:
        server.stop()


def report(store: str, count: int, seconds: float, times: dict[str, list[float]]) -> bool:
    base = p95(times["unfiltered"])
    print(f"\n{store}: {count:,} runs (made in {seconds:.1f} s); unfiltered first page "
          f"p50 {statistics.median(times['unfiltered']):.1f} ms, p95 {base:.1f} ms")
    middle = statistics.median(times["unfiltered"])
    print(f"{'query':28} {'p50 ms':>8} {'p95 ms':>8} {'p95 / unfiltered':>17} "
          f"{'p50 / unfiltered':>17}")
    worst = 0.0
    for name, _, _ in QUERIES:
        ratio = p95(times[name]) / base
        worst = max(worst, ratio)
        print(f"{name:28} {statistics.median(times[name]):8.1f} {p95(times[name]):8.1f} "
              f"{ratio:16.2f}x {statistics.median(times[name]) / middle:16.2f}x")
    print(f"worst ratio {worst:.2f}x (target <= {TARGET:.0f}x)")
    return worst <= TARGET


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--postgres-runs", type=int, default=100_000)
    parser.add_argument("--sqlite-runs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    passed = True
    for store in args.stores.split(","):
        with ExitStack() as stack:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="search-")))
            if store == "sqlite":
                url, count = sqlite_url(folder), args.sqlite_runs
            else:
                url, count = stack.enter_context(fresh_schema(POSTGRES_URL)), args.postgres_runs
            seconds = fill(url, count)
            passed &= report(store, count, seconds, measure(url, folder, args.rounds))
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
