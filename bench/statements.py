"""The store's hot queries: built on every call (as before) vs built once with bound parameters
(``service.store.repo``), CPU per call in one process on SQLite, interleaved batches, medians.

    .venv/bin/python bench/statements.py [--repeats 9]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import exists, literal, select
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.store.db import make_engine, make_sessionmaker, migrate
from service.store.repo import Repository
from service.store.tables import ACTIVE_STATUSES, EpochRow, ModelRow, RunRow

TENANT = "default"


def rebuilt(model_id: str, run_id: str) -> dict[str, Callable[[Session], Any]]:
    """The queries as they were written before: a new statement on every call."""
    return {
        "model by id": lambda s: s.scalar(
            select(ModelRow).where(ModelRow.id == model_id, ModelRow.owner == TENANT)),
        "active run of a model": lambda s: s.scalar(
            select(RunRow.id).where(RunRow.model_id == model_id, RunRow.owner == TENANT,
                                    RunRow.status.in_(ACTIVE_STATUSES))),
        "a page of history": lambda s: s.scalars(
            select(EpochRow).where(
                EpochRow.run_id == run_id,
                exists().where(RunRow.id == run_id, RunRow.owner == TENANT))
            .order_by(EpochRow.epoch).limit(101)).all(),
    }


def prebuilt(model_id: str, run_id: str) -> dict[str, Callable[[Session], Any]]:
    """The same through the repository (statements built once)."""
    return {
        "model by id": lambda s: Repository(s, TENANT).get_model(model_id),
        "active run of a model": lambda s: Repository(s, TENANT).active_run_id(model_id),
        "a page of history": lambda s: Repository(s, TENANT).run_history(run_id, None, 100),
    }


def per_call(sessions: sessionmaker[Session], query: Callable[[Session], Any],
             calls: int) -> float:
    """CPU microseconds per call, a session opened for each as a request does."""
    start = time.process_time()
    for _ in range(calls):
        with sessions() as session:
            query(session)
    return (time.process_time() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="tapeline-bench-")
    engine = make_engine(f"sqlite:///{folder}/bench.db")
    migrate(engine)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        repo = Repository(session, TENANT)
        x = np.linspace(-1, 1, 100, dtype=np.float32)[:, None]
        dataset = repo.create_dataset(x=x, y=x[:, 0] * 3 + 2, source="bench")
        model = repo.create_model(kind="linear", config={"features": 1}, name=None, params={
            "W": np.zeros((1,), np.float32), "b": np.zeros((), np.float32)})
        ids = model.id, dataset.id
    run_id = "run_none"  # an empty page: the statement's cost, not the rows'
    before, after = rebuilt(ids[0], run_id), prebuilt(ids[0], run_id)
    floor: list[float] = []
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in before}
    one = select(literal(1))
    for _ in range(args.repeats):
        floor.append(per_call(sessions, lambda s: s.scalar(one), args.calls))
        for name in before:
            times[name][0].append(per_call(sessions, before[name], args.calls))
            times[name][1].append(per_call(sessions, after[name], args.calls))
    print(f"CPU per call (medians of {args.repeats} interleaved batches of {args.calls}); "
          f"floor, a prebuilt SELECT 1: {statistics.median(floor):.0f} us")
    for name, (old, new) in times.items():
        a, b = statistics.median(old), statistics.median(new)
        print(f"  {name:22s} built each call {a:5.0f} us, built once {b:5.0f} us: {a / b:.2f}x")


if __name__ == "__main__":
    main()
