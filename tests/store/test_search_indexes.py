"""The run search's indexes (migration 0007) are on the very expressions the search writes:
for each indexed field, the first page sorted by it is planned as a walk of its index, on
SQLite and on PostgreSQL (there with sequential scans and sorts discouraged, so the plan shows
whether the index can answer, not whether a tiny table would rather be scanned)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from service.store.search.query import RunQuery, RunSearch
from tests.store import search_runs
from tests.store.search_runs import TENANT

INDEXED = {
    "created_at": "ix_runs_search_created_at",
    "-finished_at": "ix_runs_search_finished_at",
    "duration_ms": "ix_runs_search_duration_ms",
    "name": "ix_runs_search_name",
    "-metrics.loss": "ix_runs_search_final_loss",
    "params.batch_size": "ix_runs_search_batch_size",
    "params.epochs": "ix_runs_search_epochs",
    "params.optimizer.learning_rate": "ix_runs_search_learning_rate",
    "metrics.val_loss": "ix_runs_search_val_loss",
    "-metrics.accuracy": "ix_runs_search_accuracy",
    "-metrics.val_accuracy": "ix_runs_search_val_accuracy",
    "metrics.mse": "ix_runs_search_mse",
    "metrics.rmse": "ix_runs_search_rmse",
    "metrics.mae": "ix_runs_search_mae",
    "-metrics.r2": "ix_runs_search_r2",
    "metrics.log_loss": "ix_runs_search_log_loss",
}


def plan(engine: Engine, sessions: sessionmaker[Session], query: RunQuery,
         *off: str) -> str:
    """The database's plan of the first statement a search runs (on PostgreSQL with
    sequential scans, sorts and the planner methods ``off`` discouraged)."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        with sessions() as session:
            RunSearch(session, TENANT).runs(query)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    statement, parameters = next((s, p) for s, p in seen if "FROM runs" in s)
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            return "\n".join(str(row[-1]) for row in rows)
        for method in ("seqscan", "sort", *off):
            connection.exec_driver_sql(f"SET enable_{method} = off")
        rows = connection.exec_driver_sql("EXPLAIN " + statement, parameters)
        return "\n".join(row[0] for row in rows)


@pytest.fixture
def filled(engine: Engine, sessions: sessionmaker[Session]) -> Iterator[Engine]:
    with sessions.begin() as session:
        search_runs.insert(session, TENANT)
    yield engine


@pytest.mark.parametrize(("sort", "index"), INDEXED.items())
def test_a_sorted_first_page_walks_its_index(filled: Engine, sessions: sessionmaker[Session],
                                             sort: str, index: str) -> None:
    found = plan(filled, sessions, RunQuery(sort=sort, limit=5))
    assert index in found, found


def test_a_name_prefix_is_a_range_of_the_name_index(filled: Engine,
                                                    sessions: sessionmaker[Session]) -> None:
    found = plan(filled, sessions, RunQuery(filter="name LIKE 'sweep-0%'", sort="name"))
    assert "ix_runs_search_name" in found, found


@pytest.mark.postgres
def test_tags_are_found_through_their_gin_index(postgres_url: str) -> None:
    """A tag's equality is written as a containment, the operator the GIN index answers."""
    from service.store.db import make_engine, make_sessionmaker, migrate

    engine = make_engine(postgres_url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        search_runs.insert(session, TENANT)
    found = plan(engine, sessions, RunQuery(filter="tags.team IN ('cv', 'nlp')"))
    assert """tags @> '{"team": "cv"}'::jsonb""" in found, found
    with engine.connect() as connection:
        for method in ("seqscan", "indexscan"):
            connection.exec_driver_sql(f"SET enable_{method} = off")
        answer = connection.exec_driver_sql(
            """EXPLAIN SELECT id FROM runs WHERE tags @> '{"team": "cv"}'::jsonb""")
        assert "ix_runs_tags" in "\n".join(row[0] for row in answer)
    engine.dispose()
