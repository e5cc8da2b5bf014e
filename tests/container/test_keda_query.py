"""The KEDA ScaledObject's two PostgreSQL queries (deploy/kubernetes/components/keda/), run as
KEDA runs them, on a real PostgreSQL migrated by Tapeline and filled through the store's own
API: ``queued`` counts the runs waiting in the queue (0, 5 and 50 as it fills), ``training``
the runs a worker holds, and both follow the queue as workers claim and finish the runs; a run
in any other status (every value of RunStatus, `paused` among them once it exists) counts in
neither."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from service.store import lifecycle
from service.store.db import make_engine, make_sessionmaker, migrate
from service.store.tables import RunStatus
from tests.store.rows import dataset, outcome, own, queued_run

SCALED_OBJECT = (Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "components"
                 / "keda" / "scaledobject.yaml")
# What each trigger counts: runs that want a worker, and runs a worker holds.
COUNTED = {"queued": {RunStatus.QUEUED}, "training": {RunStatus.RUNNING, RunStatus.CANCELLING}}


def queries() -> dict[str, str]:
    """Each trigger's name and query, as the manifest has them."""
    scaled = next(d for d in yaml.safe_load_all(SCALED_OBJECT.read_text())
                  if d["kind"] == "ScaledObject")
    return {t["name"]: t["metadata"]["query"] for t in scaled["spec"]["triggers"]
            if t["type"] == "postgresql"}


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    migrate(engine)
    yield engine
    engine.dispose()


def counts(engine: Engine) -> dict[str, int]:
    """What KEDA reads now: each query's one number."""
    with engine.connect() as connection:
        return {name: connection.execute(text(query)).scalar_one()
                for name, query in queries().items()}


def fill(sessions: sessionmaker[Session], dataset_id: str, count: int) -> list[str]:
    """``count`` more queued runs, each of a new model (one active run per model)."""
    return [queued_run(sessions, dataset_id=dataset_id)[0] for _ in range(count)]


def test_the_manifest_has_the_two_queries() -> None:
    assert set(queries()) == {"queued", "training"}


@pytest.mark.postgres
def test_the_queries_follow_the_queue_as_it_fills_and_drains(engine: Engine) -> None:
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        dataset_id = dataset(session).id
    assert counts(engine) == {"queued": 0, "training": 0}
    runs = fill(sessions, dataset_id, 5)
    assert counts(engine) == {"queued": 5, "training": 0}
    runs += fill(sessions, dataset_id, 45)
    assert counts(engine) == {"queued": 50, "training": 0}

    # Workers claim 20 of them: they leave the queue and are in training.
    for run_id in runs[:20]:
        with sessions.begin() as session:
            assert lifecycle.claim_run(session, run_id, "w", timeout=30, max_attempts=3)
    assert counts(engine) == {"queued": 30, "training": 20}
    # A cancel asked of a run in training keeps it in training until its worker stops.
    with sessions.begin() as session:
        own(session).request_cancel(runs[0])
    assert counts(engine) == {"queued": 30, "training": 20}
    # They finish; one queued run is cancelled before anyone took it.
    for run_id in runs[:20]:
        with sessions.begin() as session:
            lifecycle.finish_run(session, run_id, RunStatus.SUCCEEDED,
                                 final=outcome([1.0, 1.0], 0.5, 0.1), completed=0, attempt=1)
    with sessions.begin() as session:
        own(session).request_cancel(runs[20])
    assert counts(engine) == {"queued": 29, "training": 0}
    # The rest are claimed and finished: the queue is empty again.
    for run_id in runs[21:]:
        with sessions.begin() as session:
            lifecycle.claim_run(session, run_id, "w", timeout=30, max_attempts=3)
            lifecycle.finish_run(session, run_id, RunStatus.SUCCEEDED,
                                 final=outcome([1.0, 1.0], 0.5, 0.1), completed=0, attempt=1)
    assert counts(engine) == {"queued": 0, "training": 0}


@pytest.mark.postgres
def test_each_query_counts_its_statuses_and_no_other(engine: Engine) -> None:
    """One run in each status RunStatus has: ``queued`` counts the queued one only, not a
    paused one (a status of its own, which holds no worker, when pausing exists) nor any
    other; ``training`` the running and cancelling ones."""
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        dataset_id = dataset(session).id
    runs = dict(zip(RunStatus, fill(sessions, dataset_id, len(RunStatus)), strict=True))
    with sessions.begin() as session:  # each run of a model of its own: no active-run clash
        for status, run_id in runs.items():
            session.execute(text("UPDATE runs SET status = :status WHERE id = :id"),
                            {"status": status.value, "id": run_id})
    assert counts(engine) == {name: len(statuses) for name, statuses in COUNTED.items()}
    for status in RunStatus:
        with sessions.begin() as session:
            session.execute(text("UPDATE runs SET status = 'succeeded' WHERE id <> :id"),
                            {"id": runs[status]})
            session.execute(text("UPDATE runs SET status = :status WHERE id = :id"),
                            {"status": status.value, "id": runs[status]})
        assert counts(engine) == {name: int(status in statuses)
                                  for name, statuses in COUNTED.items()}, status
