"""The store against both databases: migrations, round trips, constraints, history order."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from service.store import documents, lifecycle, repo
from service.store.codec import (
    pack_array,
    pack_params,
    pack_vector,
    unpack_array,
    unpack_params,
    unpack_vector,
)
from service.store.db import migrate
from service.store.tables import Base, EpochRow, RunRow
from tests.store.rows import V1_OPTIONS, dataset, linear, model, outcome, own, queued_run, record

CLAIM = {"worker": "w", "timeout": 30.0, "max_attempts": 3}


def claim(session: Session, run_id: str) -> lifecycle.Started:
    """The run claimed by a new attempt, as a worker starts it."""
    started = lifecycle.claim_run(session, run_id, **CLAIM)
    assert started is not None
    return started


def test_codec_round_trips_arrays_and_vectors_exactly() -> None:
    matrix = np.random.default_rng(1).standard_normal((7, 3)).astype(np.float32)
    back = unpack_array(pack_array(matrix))
    assert back.dtype == np.float32 and np.array_equal(back, matrix)
    assert unpack_vector(pack_vector([0.1, -2.5e-300, 3.0])) == [0.1, -2.5e-300, 3.0]


def test_params_are_one_safetensors_blob_in_layer_order() -> None:
    params = {"b2": np.array([0.5]), "W2": np.ones((3, 1)), "b1": np.zeros(3),
              "W1": np.arange(6.0).reshape(2, 3) / 7, "scalar": np.array(-2.5e-300)}
    blob = pack_params(params)
    header = int.from_bytes(blob[:8], "little")
    assert blob[8:9] == b"{" and b'"dtype":"F64"' in blob[8:8 + header]  # safetensors
    back = unpack_params(blob)
    assert list(back) == ["scalar", "W1", "b1", "W2", "b2"]
    for name, value in params.items():
        assert back[name].shape == value.shape and np.array_equal(back[name], value)


def _declared(item: Any, name: str | None, kind: str, reflected: bool, other: Any) -> bool:
    """Whether autogenerate compares this object: not the run search's indexes (and the GIN
    indexes of tags), which 0007 writes in each dialect's own SQL on the expressions the
    search queries; tests/store/test_search_indexes.py checks the planner uses them."""
    return not (kind == "index" and name is not None
                and (name.startswith("ix_runs_search_") or name.endswith("_tags")))


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_migrations_match_the_tables_and_are_idempotent(engine: Engine) -> None:
    migrate(engine)  # a second upgrade is a no-op
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": _declared})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []
    assert {"datasets", "models", "runs", "epochs", "alembic_version"} <= set(
        inspect(engine).get_table_names())


def test_arrays_are_stored_as_binary_not_json(sessions: sessionmaker[Session],
                                              engine: Engine) -> None:
    with sessions.begin() as session:
        dataset_id = dataset(session).id
    with engine.connect() as connection:
        x_blob = connection.exec_driver_sql(
            f"SELECT x FROM datasets WHERE id = '{dataset_id}'").scalar_one()
    assert bytes(x_blob).startswith(b"\x93NUMPY")


def test_large_arrays_round_trip_exactly_and_a_failed_insert_stores_nothing(
        sessions: sessionmaker[Session], engine: Engine) -> None:
    """Arrays over blobs.STREAM_BYTES (written in place with incremental blob I/O on SQLite,
    bound as bytes on PostgreSQL) come back bit for bit, in the .npy form of small ones; and
    a transaction that fails after the write leaves no row behind."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300_000, 3))  # 7.2 MB: streamed in two chunks on SQLite
    y = rng.standard_normal(300_000).astype(np.float32)
    with sessions.begin() as session:
        dataset_id = own(session).create_dataset(x=x, y=y, source="inline").id
    with sessions() as session:
        back_x, back_y = repo.load_arrays(session, dataset_id)
    assert back_x.dtype == x.dtype and np.array_equal(back_x, x)
    assert back_y.dtype == y.dtype and np.array_equal(back_y, y)
    with engine.connect() as connection:
        stored = bytes(connection.exec_driver_sql(
            f"SELECT x FROM datasets WHERE id = '{dataset_id}'").scalar_one())
    assert stored == pack_array(x)
    with pytest.raises(RuntimeError), sessions.begin() as session:
        doomed = own(session).create_dataset(x=x, y=y, source="inline").id
        raise RuntimeError("after the write")
    with engine.connect() as connection:
        assert connection.exec_driver_sql(
            f"SELECT count(*) FROM datasets WHERE id = '{doomed}'").scalar_one() == 0


def test_dataset_round_trip_and_summary(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        dataset_id = dataset(session).id
    with sessions() as session:
        row = own(session).get_dataset(dataset_id)
        x, y = repo.load_arrays(session, dataset_id)
        summary = documents.dataset_summary(row)
    assert x.shape == (5, 2) and x.dtype == np.float32
    assert summary["x_mean"] == pytest.approx([4.0, 5.0])
    assert summary["y_mean"] == pytest.approx(float(y.mean()))


def test_unknown_ids_raise_not_found(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        found = repo.Repository(session, "default")
        for getter in (found.get_dataset, found.get_model, found.get_run):
            with pytest.raises(repo.NotFound):
                getter("missing")


def test_a_repository_sees_only_its_own_tenant(sessions: sessionmaker[Session]) -> None:
    """Another tenant's ids are unknown ids, and its rows never appear in a page."""
    run_id, model_id, dataset_id = queued_run(sessions)
    with sessions() as session:
        other = repo.Repository(session, "other")
        for getter, resource_id in ((other.get_dataset, dataset_id), (other.get_model, model_id),
                                    (other.get_run, run_id), (other.load_arrays, dataset_id)):
            with pytest.raises(repo.NotFound):
                getter(resource_id)
        assert other.run_history(run_id, None, 10) == ([], False)
        assert other.model_history(model_id, None, 10) == ([], False)
        assert other.run_history_sample(run_id, None, 10) == []
        for table in (repo.DatasetRow, repo.ModelRow, RunRow):
            assert other.page(table, 10, None) == ([], None)
        assert other.usage() == {"active_runs": 0, "stored_bytes": 0, "datasets": 0,
                                 "models": 0, "stored": dict.fromkeys(
                                     ("datasets", "models", "runs", "checkpoints"), 0)}
        owner = own(session).usage()
        assert owner["active_runs"] == owner["datasets"] == owner["models"] == 1
        assert owner["stored_bytes"] > 0
    with sessions.begin() as session, pytest.raises(repo.NotFound):
        repo.Repository(session, "other").request_cancel(run_id)
    with sessions.begin() as session, pytest.raises(repo.NotFound):
        repo.Repository(session, "other").delete_model(model_id)


def test_one_active_run_per_model_is_enforced_by_the_database(
        sessions: sessionmaker[Session]) -> None:
    _, model_id, dataset_id = queued_run(sessions)
    with pytest.raises(repo.Conflict):
        queued_run(sessions, model_id, dataset_id)
    # Bypassing the check, the partial unique index still refuses a second active run.
    with sessions() as session, pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        session.add(RunRow(
            id="run_dup", model_id=model_id, dataset_id=dataset_id, status="queued",
            epochs=1, epochs_completed=0, optimizer={}, dtype="float32", history_base=0,
            options=V1_OPTIONS, record_params=True, initial_params=pack_params(linear([1, 1], 0)),
            created_at=repo.now()))
        session.commit()


def test_run_lifecycle_history_and_model_update(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        data = dataset(session)
        trained = model(session, [5.0, 5.0], 0.0, name="m")
        run_id = own(session).create_run(model=trained, dataset=data, epochs=2,
                                         optimizer={"kind": "sgd", "learning_rate": 0.1},
                                         batch_size=None, shuffle_seed=None, dtype="float32",
                                         options=V1_OPTIONS).id
        model_id = trained.id
    with sessions.begin() as session:
        started = claim(session, run_id)
        assert started.run.status == "running" and started.attempt == 1
        assert (started.kind, started.config) == ("linear", {"features": 2})
        # A live attempt holds it: nobody else starts it.
        assert lifecycle.claim_run(session, run_id, **{**CLAIM, "worker": "other"}) is None
        lifecycle.append_epochs(session, started.run, [record(0, [5.0, 5.0], 0.0, 9.5),
                                                       record(1, [4.0, 4.5], 0.5, 4.25)],
                                started.attempt)
    with sessions.begin() as session:  # the history rows are counted
        lifecycle.finish_run(session, run_id, "succeeded", final=outcome([3.0, 3.5], 1.0, 1.5),
                             attempt=started.attempt)
    with sessions() as session:
        run = own(session).get_run(run_id)
        trained = own(session).get_model(model_id)
        rows, more = own(session).run_history(run_id, None, 10)
        assert (run.status, run.epochs_completed) == ("succeeded", 2)
        params = unpack_params(trained.params)
        assert params["W"].tolist() == [3.0, 3.5] and params["b"] == 1.0
        assert trained.epochs_trained == 2 and trained.last_loss == 1.5
        assert run.final_metrics == {"mse": 1.5}
        assert [r.epoch for r in rows] == [0, 1] and not more
        assert rows[1].params is not None
        assert unpack_params(rows[1].params)["W"].tolist() == [4.0, 4.5]
        assert rows[1].loss == 4.25 and rows[1].metrics == {"mse": 4.25}
        after, more = own(session).run_history(run_id, 0, 10)
        assert [r.epoch for r in after] == [1]
        first, more = own(session).run_history(run_id, None, 1)
        assert len(first) == 1 and more


def test_model_history_spans_runs_in_order(sessions: sessionmaker[Session]) -> None:
    model_id = dataset_id = None
    for _ in range(2):
        run_id, model_id, dataset_id = queued_run(sessions, model_id, dataset_id)
        with sessions.begin() as session:
            started = claim(session, run_id)
            lifecycle.append_epochs(session, started.run, [record(e, [0.0, 0.0], 0.0, 1.0)
                                                           for e in range(3)], started.attempt)
        with sessions.begin() as session:
            lifecycle.finish_run(session, run_id, "succeeded", final=outcome([0.0, 0.0], 0.0, 1.0),
                                 attempt=started.attempt)
    with sessions() as session:
        rows, _ = own(session).model_history(model_id, None, 100)
        assert [r.step for r in rows] == list(range(6))
        assert [r.epoch for r in rows] == [0, 1, 2, 0, 1, 2]
        later, _ = own(session).model_history(model_id, 3, 100)
        assert [r.step for r in later] == [4, 5]


def test_cancel_deletion_conflicts_and_interrupted_runs(sessions: sessionmaker[Session]) -> None:
    run_id, model_id, dataset_id = queued_run(sessions)
    with sessions.begin() as session:
        with pytest.raises(repo.Conflict):
            own(session).delete_dataset(dataset_id)
        with pytest.raises(repo.Conflict):
            own(session).delete_model(model_id)
    with sessions.begin() as session:
        claim(session, run_id)
    with sessions.begin() as session:
        assert lifecycle.resolve_interrupted(session, "fail") == []
    with sessions() as session:
        run = own(session).get_run(run_id)
        assert (run.status, run.error_reason) == ("failed", "interrupted")
    with sessions.begin() as session:
        own(session).delete_dataset(dataset_id)
        own(session).delete_model(model_id)
    with sessions() as session:
        assert session.scalars(select(EpochRow)).all() == []
        with pytest.raises(repo.NotFound):
            own(session).get_run(run_id)


def test_requeue_policy_restarts_interrupted_runs(sessions: sessionmaker[Session]) -> None:
    run_id, _, _ = queued_run(sessions)
    with sessions.begin() as session:
        started = claim(session, run_id)
        lifecycle.append_epochs(session, started.run, [record(0, [0.0, 0.0], 0.0, 1.0)],
                                started.attempt)
    with sessions.begin() as session:
        assert lifecycle.resolve_interrupted(session, "requeue") == [run_id]
    with sessions() as session:
        run = own(session).get_run(run_id)
        assert (run.status, run.epochs_completed) == ("queued", 0)
        assert own(session).run_history(run_id, None, 10)[0] == []


def test_request_cancel_of_queued_and_running_runs(sessions: sessionmaker[Session]) -> None:
    run_id, model_id, dataset_id = queued_run(sessions)
    with sessions.begin() as session:
        assert own(session).request_cancel(run_id).status == "cancelled"
        assert lifecycle.claim_run(session, run_id, **CLAIM) is None  # nothing to start
    second, _, _ = queued_run(sessions, model_id, dataset_id)
    with sessions.begin() as session:
        claim(session, second)
        assert own(session).request_cancel(second).status == "cancelling"
