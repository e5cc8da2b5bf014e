"""Studies' speed (issue 22, "How fast"): a study through the service against the same trials
run in one process.

    .venv/bin/python bench/study.py [--parts asha,search] [--trials 81] [--rows 10000]
                                    [--max-epochs 27] [--search-trials 500] [--search-rows 200]
                                    [--stores sqlite,postgres]

* ``asha``: an ASHA study (reduction factor 3, 1 to ``--max-epochs`` epochs, ``--trials``
  trials, random sampler, seed 7) of an MLP on ``--rows`` x 20 blobs (3 classes) through a
  real ``tapeline serve`` (SQLite, the local executor) with ``TAPELINE_WORKERS=1``, then with
  ``TAPELINE_WORKERS=2``; against the same study's decisions taken in one process by
  :mod:`service.training.studies` (Optuna's ask and tell, the same sampler and seeds) with the
  same training loop (:class:`service.training.loop.Fit`) holding every trial's loop in
  memory between rungs: no HTTP, no store, no processes. The in-process run's objectives at
  every rung are checked equal, bit for bit, to the service's. Targets: service (one worker)
  / in-process <= 1.3; one worker / two workers >= 1.5.
* ``search``: a random search of ``--search-trials`` trials of 1 epoch on ``--search-rows``
  rows through the service (one worker), time per trial, against Optuna itself running the
  same points (enqueued) in one process with its RDB storage on the same store kind, the
  objective training with the same loop. Target on SQLite: service / Optuna <= 1.5; on
  PostgreSQL reported.

A study's wall time is from its ``POST /v1/studies`` to the first read that says it ended.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from sqlalchemy import select
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.api.study_requests import build, with_point  # noqa: E402
from service.config import get_settings  # noqa: E402
from service.jobs.studies import objective_of  # noqa: E402
from service.store import repo  # noqa: E402
from service.store.db import make_engine, make_sessionmaker  # noqa: E402
from service.store.tables import DatasetRow, StudyRow  # noqa: E402
from service.training import studies as plans  # noqa: E402
from service.training.kinds import Model  # noqa: E402
from service.training.loop import Examples, Fit, validation_split  # noqa: E402
from service.training.records import Outcome  # noqa: E402
from service.training.specs import DatasetMeta, RunSpec, ValidationFraction, stored_kind  # noqa: E402
from tests.support.postgres import POSTGRES_URL, fresh_schema  # noqa: E402
from tests.support.servers import sqlite_url, start_server  # noqa: E402

FEATURES, CLASSES = 20, 3


def asha_spec(dataset_id: str, trials: int, max_epochs: int) -> dict[str, Any]:
    return {
        "name": "bench-asha", "dataset_id": dataset_id,
        "model": {"kind": "mlp", "features": FEATURES, "task": "classification",
                  "classes": CLASSES, "hidden": [32]},
        "run": {"epochs": max_epochs, "optimizer": {"kind": "adam", "learning_rate": 0.01},
                "batch_size": 64, "validation": {"fraction": 0.2}},
        "space": {"run.optimizer.learning_rate": {"type": "float", "low": 0.0001,
                                                  "high": 0.1, "log": True},
                  "model.hidden": {"type": "choice", "values": [[16], [32], [32, 32]]},
                  "run.batch_size": {"type": "choice", "values": [32, 64, 128]}},
        "objective": {"metric": "val_loss", "goal": "minimize"},
        "sampler": {"kind": "random", "seed": 7},
        "scheduler": {"kind": "asha", "min_epochs": 1, "reduction_factor": 3},
        "max_trials": trials, "concurrency": 4,
    }


def search_spec(dataset_id: str, trials: int) -> dict[str, Any]:
    return {
        "name": "bench-search", "dataset_id": dataset_id,
        "model": {"kind": "mlp", "features": FEATURES, "task": "classification",
                  "classes": CLASSES, "hidden": [16]},
        "run": {"epochs": 1, "optimizer": {"kind": "adam", "learning_rate": 0.01},
                "batch_size": 32, "validation": {"fraction": 0.2}},
        "space": {"run.optimizer.learning_rate": {"type": "float", "low": 0.0001,
                                                  "high": 0.1, "log": True},
                  "model.hidden": {"type": "choice", "values": [[8], [16], [32]]}},
        "objective": {"metric": "val_loss", "goal": "minimize"},
        "sampler": {"kind": "random", "seed": 11},
        "max_trials": trials, "concurrency": 8,
    }


def blobs(client: httpx.Client, rows: int) -> str:
    answer = client.post("/v1/datasets/synthetic", json={
        "kind": "blobs", "num_examples": rows, "features": FEATURES, "classes": CLASSES,
        "spread": 6.0, "seed": 3})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def through_service(url: str, spec: dict[str, Any]) -> tuple[float, str]:
    """The study's wall time through the service, and its id."""
    with httpx.Client(base_url=url, timeout=60) as client:
        start = time.perf_counter()
        answer = client.post("/v1/studies", json=spec)
        assert answer.status_code == 201, answer.text
        study_id = answer.json()["id"]
        while True:
            study = client.get(f"/v1/studies/{study_id}").json()
            if study["status"] != "running":
                break
            time.sleep(0.05)
        wall = time.perf_counter() - start
        assert study["status"] == "completed", study
    return wall, study_id


def trials_of(url: str, study_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        cursor = None
        while True:
            page = client.get(f"/v1/studies/{study_id}/trials",
                              params={"limit": 100, **({"cursor": cursor} if cursor else {})}
                              ).json()
            items += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return sorted(items, key=lambda t: t["number"])


class Stored:
    """What the in-process runs take from the store, read once before they are timed: the
    study's spec as the service resolved it and its dataset (metadata and arrays)."""

    def __init__(self, database_url: str, study_id: str) -> None:
        engine = make_engine(database_url)
        with make_sessionmaker(engine)() as session:
            study = session.scalar(select(StudyRow).where(StudyRow.id == study_id))
            assert study is not None
            self.spec = dict(study.spec)
            dataset = session.scalar(select(DatasetRow).where(DatasetRow.id == study.dataset_id))
            assert dataset is not None
            self.meta = DatasetMeta.of(dataset)
            self.dataset_row = dataset
            self.x, self.y = repo.load_arrays(session, dataset.id)
            session.expunge(dataset)
        engine.dispose()


class Trainer:
    """One trial's model and loop, kept in memory across its rungs."""

    def __init__(self, stored: Stored, number: int, point: dict[str, Any]) -> None:
        spec = stored.spec
        seed = plans.trial_seed(int(spec["sampler"]["seed"]), number)
        built = build(get_settings(), with_point(spec, point), stored.dataset_row,
                      lambda _: stored.meta, seed)
        kind = stored_kind(SimpleNamespace(kind=built.kind, config=built.config))  # type: ignore[arg-type]
        run = RunSpec.from_columns(SimpleNamespace(**built.run))  # type: ignore[arg-type]
        model = Model(kind, built.params, dtype=built.run["dtype"])
        train, validation = Examples(stored.x, stored.y), None
        if isinstance(run.validation, ValidationFraction):
            train, validation = validation_split(train, run.validation.fraction)
        self.fit = Fit(model, train, run.fit(), validation)
        self.steps = self.fit.run()
        self.metric = spec["objective"]["metric"]

    def train_to(self, epochs: int | None) -> float | None:
        """Train to ``epochs`` (None: the end) and the objective there."""
        if epochs is None:
            for item in self.steps:
                if isinstance(item, Outcome):
                    return objective_of(self.metric, item.loss, item.metrics)
            raise AssertionError("no outcome")
        while self.fit.epoch < epochs:
            next(self.steps)
        _, loss, metrics = self.fit.measured()
        return objective_of(self.metric, loss, metrics)


def in_process(stored: Stored) -> tuple[float, list[plans.Trial]]:
    """The study's decisions and trials in one process: its wall time and its trials."""
    start = time.perf_counter()
    plan = plans.plan_of(stored.spec)
    views: dict[int, plans.Trial] = {}
    loops: dict[int, Trainer] = {}
    while True:
        decided = plans.decide(plan, list(views.values()), capacity=plan.concurrency)
        if decided.end is not None:
            break
        history = list(views.values())
        for number in decided.create:
            point = plans.sample(plan, number, history)
            loops[number] = Trainer(stored, number, point)
            views[number] = plans.Trial(number, "queued", (), point)
        for number in decided.prune:
            views[number] = plans.Trial(number, "pruned", views[number].rungs,
                                        views[number].params)
            del loops[number]
        targets = [(n, plans.pause_at(plan, 0)) for n in decided.create]
        targets += [(p.number, p.pause_at) for p in decided.promote]
        for number, pause_at in targets:
            value = loops[number].train_to(pause_at)
            assert value is not None
            old = views[number]
            status = "paused" if pause_at is not None else "completed"
            views[number] = plans.Trial(number, status, (*old.rungs, value), old.params)
            if pause_at is None:
                del loops[number]
    return time.perf_counter() - start, [views[n] for n in sorted(views)]


def check_same(service: list[dict[str, Any]], local: list[plans.Trial]) -> list[str]:
    """The trials' points, statuses and objectives at every rung compared with the service's:
    the points and statuses must be equal; the objectives that differ are listed."""
    assert len(service) == len(local), (len(service), len(local))
    differ = []
    for s, t in zip(service, local, strict=True):
        assert s["number"] == t.number and s["status"] == t.status, (s, t)
        assert s["params"] == dict(t.params), (s, t)
        assert len(s["rungs"]) == len(t.rungs), (s, t)
        for k, (a, b) in enumerate(zip(s["rungs"], t.rungs, strict=True)):
            if a != b:
                differ.append(f"trial {t.number} rung {k}: service {a!r}, in process {b!r}")
    return differ


def asha_part(args: argparse.Namespace, folder: Path) -> list[str]:
    lines = []
    walls: dict[int, float] = {}
    stored = None
    service_trials: list[dict[str, Any]] = []
    for workers in (1, 2):
        sub = folder / f"asha-{workers}"
        sub.mkdir()
        url = sqlite_url(sub)
        server = start_server(url, sub / "server.log", TAPELINE_WORKERS=str(workers))
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                dataset_id = blobs(client, args.rows)
            spec = asha_spec(dataset_id, args.trials, args.max_epochs)
            walls[workers], study_id = through_service(server.url, spec)
            print(f"asha: service, {workers} worker(s): {walls[workers]:.2f} s", flush=True)
            if workers == 1:
                service_trials = trials_of(server.url, study_id)
                stored = Stored(url, study_id)
        finally:
            server.stop()
    assert stored is not None
    with threadpool_limits(limits=1, user_api="blas"):  # as a worker trains: one BLAS thread
        local, trials = in_process(stored)
    differ = check_same(service_trials, trials)
    epochs = sum(stored.spec["rungs"][len(t.rungs) - 1] for t in trials)
    print(f"asha: in process: {local:.2f} s ({epochs} epochs; the same points, statuses and "
          f"decisions; objectives that differ: {differ or 'none'})")
    lines.append(f"asha {args.trials} trials, {args.rows} rows, 1-{args.max_epochs} epochs: "
                 f"service 1 worker {walls[1]:.2f} s / in process {local:.2f} s = "
                 f"{walls[1] / local:.2f}x (target <= 1.3); 1 worker / 2 workers = "
                 f"{walls[1]:.2f} / {walls[2]:.2f} = {walls[1] / walls[2]:.2f}x (target >= 1.5)")
    return lines


def optuna_run(storage: str, stored: Stored, points: list[dict[str, Any]]) -> float:
    """Optuna running the same points (enqueued) in one process on ``storage``; its wall time."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    plan = plans.plan_of(stored.spec)
    distributions = plans._distributions(plan)
    start = time.perf_counter()
    study = optuna.create_study(storage=storage, study_name="bench",
                                sampler=optuna.samplers.RandomSampler(seed=plan.seed))
    for point in points:
        study.enqueue_trial(plans._internal(plan, point))

    def objective(trial: Any) -> float:
        internal = {path: trial._suggest(path, d) for path, d in distributions.items()}
        value = Trainer(stored, trial.number, plans._external(plan, internal)).train_to(None)
        assert value is not None
        return value

    study.optimize(objective, n_trials=len(points))
    return time.perf_counter() - start


def search_part(args: argparse.Namespace, folder: Path, store: str) -> list[str]:
    with ExitStack() as stack:
        sub = folder / f"search-{store}"
        sub.mkdir()
        if store == "sqlite":
            url = sqlite_url(sub)
            optuna_url = f"sqlite:///{sub / 'optuna.db'}"
        else:
            url = stack.enter_context(fresh_schema(POSTGRES_URL))
            optuna_url = stack.enter_context(fresh_schema(POSTGRES_URL))
        server = start_server(url, sub / "server.log", TAPELINE_WORKERS="1")
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                dataset_id = blobs(client, args.search_rows)
            wall, study_id = through_service(server.url, search_spec(dataset_id,
                                                                     args.search_trials))
            trials = trials_of(server.url, study_id)
        finally:
            server.stop()
        stored = Stored(url, study_id)
        points = [t["params"] for t in trials]
        theirs = optuna_run(optuna_url, stored, points)
    n = args.search_trials
    line = (f"search {n} trials of 1 epoch, {args.search_rows} rows, {store}: service "
            f"{wall / n * 1000:.1f} ms/trial / Optuna RDB {theirs / n * 1000:.1f} ms/trial = "
            f"{wall / theirs:.2f}x" + (" (target <= 1.5)" if store == "sqlite" else ""))
    print(line, flush=True)
    return [line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="asha,search")
    parser.add_argument("--trials", type=int, default=81)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--max-epochs", type=int, default=27)
    parser.add_argument("--search-trials", type=int, default=500)
    parser.add_argument("--search-rows", type=int, default=200)
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()
    parts = args.parts.split(",")
    lines = [f"load average at start: {os.getloadavg()}"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if "asha" in parts:
            lines += asha_part(args, folder)
        if "search" in parts:
            for store in args.stores.split(","):
                lines += search_part(args, folder, store)
    lines.append(f"load average at end: {os.getloadavg()}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
