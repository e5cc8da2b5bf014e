"""The store against both databases: migrations, round trips, constraints, history order."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from service.store import repo
from service.store.codec import pack_array, pack_vector, unpack_array, unpack_vector
from service.store.db import make_engine, make_sessionmaker, migrate
from service.store.tables import Base, EpochRow, RunRow
from service.training.records import EpochRecord
from tests.servers import sqlite_url


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        url = sqlite_url(tmp_path)
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


def _dataset(session: Session, n: int = 5, features: int = 2) -> repo.DatasetRow:
    x = np.arange(n * features, dtype=np.float32).reshape(n, features)
    return repo.create_dataset(session, x=x, y=x.sum(axis=1), source="inline", name="d")


def _queued_run(sessions: sessionmaker[Session], model_id: str | None = None,
                dataset_id: str | None = None, epochs: int = 3) -> tuple[str, str, str]:
    """A queued run (on a new two-feature model and dataset unless given); its three ids."""
    with sessions.begin() as session:
        dataset = repo.get_dataset(session, dataset_id) if dataset_id else _dataset(session)
        model = repo.get_model(session, model_id) if model_id else repo.create_model(
            session, kind="linear", features=2, W=np.zeros(2), b=0.0, name=None)
        run = repo.create_run(session, model=model, dataset=dataset, epochs=epochs,
                              optimizer={"kind": "sgd", "learning_rate": 0.1}, batch_size=None,
                              shuffle_seed=None, dtype="float32")
        return run.id, model.id, dataset.id


def test_codec_round_trips_arrays_and_vectors_exactly() -> None:
    matrix = np.random.default_rng(1).standard_normal((7, 3)).astype(np.float32)
    back = unpack_array(pack_array(matrix))
    assert back.dtype == np.float32 and np.array_equal(back, matrix)
    assert unpack_vector(pack_vector([0.1, -2.5e-300, 3.0])) == [0.1, -2.5e-300, 3.0]


def test_migrations_match_the_tables_and_are_idempotent(engine: Engine) -> None:
    migrate(engine)  # a second upgrade is a no-op
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    assert {"datasets", "models", "runs", "epochs", "alembic_version"} <= set(
        inspect(engine).get_table_names())


def test_arrays_are_stored_as_binary_not_json(sessions: sessionmaker[Session],
                                              engine: Engine) -> None:
    with sessions.begin() as session:
        dataset_id = _dataset(session).id
    with engine.connect() as connection:
        x_blob = connection.exec_driver_sql(
            f"SELECT x FROM datasets WHERE id = '{dataset_id}'").scalar_one()
    assert bytes(x_blob).startswith(b"\x93NUMPY")


def test_dataset_round_trip_and_summary(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        dataset_id = _dataset(session).id
    with sessions() as session:
        row = repo.get_dataset(session, dataset_id)
        x, y = repo.load_arrays(session, dataset_id)
        summary = repo.dataset_summary(row)
    assert x.shape == (5, 2) and x.dtype == np.float32
    assert summary["x_mean"] == pytest.approx([4.0, 5.0])
    assert summary["y_mean"] == pytest.approx(float(y.mean()))


def test_unknown_ids_raise_not_found(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        for getter in (repo.get_dataset, repo.get_model, repo.get_run):
            with pytest.raises(repo.NotFound):
                getter(session, "missing")


def test_one_active_run_per_model_is_enforced_by_the_database(
        sessions: sessionmaker[Session]) -> None:
    _, model_id, dataset_id = _queued_run(sessions)
    with pytest.raises(repo.Conflict):
        _queued_run(sessions, model_id, dataset_id)
    # Bypassing the check, the partial unique index still refuses a second active run.
    with sessions() as session, pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        session.add(RunRow(
            id="run_dup", model_id=model_id, dataset_id=dataset_id, status="queued",
            epochs=1, epochs_completed=0, optimizer={}, dtype="float32", history_base=0,
            initial_W=pack_vector([1, 1]), initial_b=0.0, created_at=repo.now()))
        session.commit()


def test_run_lifecycle_history_and_model_update(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        dataset = _dataset(session)
        model = repo.create_model(session, kind="linear", features=2, W=np.array([5.0, 5.0]),
                                  b=0.0, name="m")
        run_id = repo.create_run(session, model=model, dataset=dataset, epochs=2,
                                 optimizer={"kind": "sgd", "learning_rate": 0.1},
                                 batch_size=None, shuffle_seed=None, dtype="float32").id
        model_id = model.id
    with sessions.begin() as session:
        run = repo.start_run(session, run_id)
        assert run is not None and run.status == "running"
        assert repo.start_run(session, run_id) is None  # only a queued run starts
        repo.append_epochs(session, run, [EpochRecord(0, [5.0, 5.0], 0.0, 9.5, 1.0),
                                          EpochRecord(1, [4.0, 4.5], 0.5, 4.25, 1.0)])
    with sessions.begin() as session:
        repo.finish_run(session, run_id, "succeeded", final=([3.0, 3.5], 1.0, 1.5))
    with sessions() as session:
        run = repo.get_run(session, run_id)
        model = repo.get_model(session, model_id)
        rows, more = repo.run_history(session, run_id, None, 10)
        assert (run.status, run.epochs_completed) == ("succeeded", 2)
        assert unpack_vector(model.W) == [3.0, 3.5] and model.b == 1.0
        assert model.epochs_trained == 2 and model.last_loss == 1.5
        assert [r.epoch for r in rows] == [0, 1] and not more
        assert unpack_vector(rows[1].W) == [4.0, 4.5] and rows[1].loss == 4.25
        after, more = repo.run_history(session, run_id, 0, 10)
        assert [r.epoch for r in after] == [1]
        first, more = repo.run_history(session, run_id, None, 1)
        assert len(first) == 1 and more


def test_model_history_spans_runs_in_order(sessions: sessionmaker[Session]) -> None:
    model_id = dataset_id = None
    for _ in range(2):
        run_id, model_id, dataset_id = _queued_run(sessions, model_id, dataset_id)
        with sessions.begin() as session:
            run = repo.start_run(session, run_id)
            assert run is not None
            repo.append_epochs(session, run, [EpochRecord(e, [0.0, 0.0], 0.0, 1.0, 0.1)
                                              for e in range(3)])
        with sessions.begin() as session:
            repo.finish_run(session, run_id, "succeeded", final=([0.0, 0.0], 0.0, 1.0))
    with sessions() as session:
        rows, _ = repo.model_history(session, model_id, None, 100)
        assert [r.step for r in rows] == list(range(6))
        assert [r.epoch for r in rows] == [0, 1, 2, 0, 1, 2]
        later, _ = repo.model_history(session, model_id, 3, 100)
        assert [r.step for r in later] == [4, 5]


def test_cancel_deletion_conflicts_and_interrupted_runs(sessions: sessionmaker[Session]) -> None:
    run_id, model_id, dataset_id = _queued_run(sessions)
    with sessions.begin() as session:
        with pytest.raises(repo.Conflict):
            repo.delete_dataset(session, dataset_id)
        with pytest.raises(repo.Conflict):
            repo.delete_model(session, model_id)
    with sessions.begin() as session:
        repo.start_run(session, run_id)
    with sessions.begin() as session:
        assert repo.resolve_interrupted(session, "fail") == []
    with sessions() as session:
        run = repo.get_run(session, run_id)
        assert (run.status, run.error_reason) == ("failed", "interrupted")
    with sessions.begin() as session:
        repo.delete_dataset(session, dataset_id)
        repo.delete_model(session, model_id)
    with sessions() as session:
        assert session.scalars(select(EpochRow)).all() == []
        with pytest.raises(repo.NotFound):
            repo.get_run(session, run_id)


def test_requeue_policy_restarts_interrupted_runs(sessions: sessionmaker[Session]) -> None:
    run_id, _, _ = _queued_run(sessions)
    with sessions.begin() as session:
        run = repo.start_run(session, run_id)
        assert run is not None
        repo.append_epochs(session, run, [EpochRecord(0, [0.0, 0.0], 0.0, 1.0, 0.1)])
    with sessions.begin() as session:
        assert repo.resolve_interrupted(session, "requeue") == [run_id]
    with sessions() as session:
        run = repo.get_run(session, run_id)
        assert (run.status, run.epochs_completed) == ("queued", 0)
        assert repo.run_history(session, run_id, None, 10)[0] == []


def test_request_cancel_of_queued_and_running_runs(sessions: sessionmaker[Session]) -> None:
    run_id, model_id, dataset_id = _queued_run(sessions)
    with sessions.begin() as session:
        assert repo.request_cancel(session, run_id).status == "cancelled"
        assert repo.start_run(session, run_id) is None
    second, _, _ = _queued_run(sessions, model_id, dataset_id)
    with sessions.begin() as session:
        repo.start_run(session, second)
        assert repo.request_cancel(session, second).status == "cancelling"
