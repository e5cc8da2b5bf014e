"""The ``queue`` executor on a real PostgreSQL schema, with no server and no worker command:
the API side defers one fair-priority job per run (and a defer that fails is left to the
sweep); the worker side's job trains a run in process, hands it back and defers its next job
when draining; the sweep gives orphaned runs a job and retries the jobs of stalled workers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import procrastinate
import psycopg
import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from service.jobs import queue as queue_module
from service.jobs.attempt import Claim
from service.jobs.queue import (
    QUEUE,
    TASK,
    QueueExecutor,
    WorkerState,
    build_worker_app,
    conninfo,
    ensure_queue_schema,
    sweep,
)
from service.store.db import make_engine, make_sessionmaker, migrate
from service.store.repo import now
from service.store.tables import RunRow
from tests.jobs.stored import a_run, run_row

pytestmark = pytest.mark.postgres


@pytest.fixture
def queue_url(postgres_url: str) -> str:
    """A fresh PostgreSQL schema with the store's tables and procrastinate's."""
    engine = make_engine(postgres_url)
    migrate(engine)
    ensure_queue_schema(engine)
    ensure_queue_schema(engine)  # idempotent: replicas starting together
    engine.dispose()
    return postgres_url


@pytest.fixture
def pg_sessions(queue_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(queue_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def jobs(url: str) -> list[tuple[str, str, int, str | None]]:
    """Every job of the queue: its run, status, priority and queueing lock, oldest first."""
    with psycopg.connect(conninfo(url)) as connection:
        return [tuple(row) for row in connection.execute(  # type: ignore[misc]
            "SELECT args->>'run_id', status::text, priority, queueing_lock "
            "FROM procrastinate_jobs WHERE queue_name = %s ORDER BY id", (QUEUE,))]


def state_of(sessions: sessionmaker[Session], **claim: Any) -> tuple[WorkerState, list[int]]:
    """A worker process's shared state, counting the epochs it stores."""
    stored: list[int] = []
    state = WorkerState(sessions, Claim(worker="test:worker", **claim))
    state.on_epochs = stored.append
    return state, stored


async def work(app: procrastinate.App) -> None:
    """Run a procrastinate worker until the queue is empty."""
    await app.run_worker_async(queues=[QUEUE], wait=False, concurrency=1, listen_notify=False,
                               install_signal_handlers=False, delete_jobs="successful")


def test_the_api_defers_one_job_per_run_in_turns_across_tenants(
        queue_url: str, pg_sessions: sessionmaker[Session]) -> None:
    runs = [a_run(pg_sessions) for _ in range(3)]
    with pg_sessions.begin() as session:
        session.execute(update(RunRow).where(RunRow.id == runs[2]).values(owner="other"))
    executor = QueueExecutor(queue_url, pg_sessions)
    executor.start()
    try:
        for run_id in [*runs, runs[0]]:  # the second defer of a waiting run adds nothing
            executor.submit(run_id)
        assert (executor.queued, executor.busy) == (3, 0)
        executor.cancel(runs[0])  # nothing to do: the worker reads the store
    finally:
        assert executor.stop() == []
    assert jobs(queue_url) == [(runs[0], "todo", 0, runs[0]), (runs[1], "todo", -1, runs[1]),
                               (runs[2], "todo", 0, runs[2])]


def test_a_failed_defer_is_left_to_the_sweep_and_a_worker_trains_the_run(
        queue_url: str, pg_sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(queue_module, "ORPHAN_GRACE_SECONDS", 0.0)
    run_id = a_run(pg_sessions, epochs=4)
    with caplog.at_level(logging.WARNING, logger="tapeline.jobs"):
        QueueExecutor(queue_url, pg_sessions).submit(run_id)  # never opened: the defer fails
    assert f"could not defer the job of run {run_id}" in caplog.text
    assert jobs(queue_url) == []
    state, stored = state_of(pg_sessions)
    runs: list[None] = []
    state.on_run = lambda: runs.append(None)
    app = build_worker_app(queue_url, state)

    async def main() -> None:
        async with app.open_async():
            await sweep(app, state)
            assert jobs(queue_url) == [(run_id, "todo", 0, run_id)]
            await work(app)

    asyncio.run(main())
    run = run_row(pg_sessions, run_id)
    assert (run.status, run.worker, run.epochs_completed) == ("succeeded", "test:worker", 4)
    assert sum(stored) == 4 and len(runs) == 1 and jobs(queue_url) == []


def test_a_draining_worker_hands_the_run_back_with_a_job_for_the_next(
        queue_url: str, pg_sessions: sessionmaker[Session]) -> None:
    run_id = a_run(pg_sessions, epochs=4)
    state, _ = state_of(pg_sessions)
    app = build_worker_app(queue_url, state)

    async def main() -> None:
        async with app.open_async():
            state.draining.set()
            await app.tasks[TASK](run_id=run_id)  # the job as a worker runs it
            assert run_row(pg_sessions, run_id).status == "queued"
            assert jobs(queue_url) == [(run_id, "todo", 0, run_id)]
            state.draining.clear()
            await work(app)

    asyncio.run(main())
    run = run_row(pg_sessions, run_id)
    assert (run.status, run.attempt, run.handbacks, run.epochs_completed) == \
        ("succeeded", 2, 1, 4)


def test_the_sweep_retries_a_stalled_workers_job_and_gives_a_silent_run_a_job(
        queue_url: str, pg_sessions: sessionmaker[Session]) -> None:
    """A job whose procrastinate worker stopped beating goes back to ``todo``; a run whose
    attempt is silent and that no job holds (its worker killed, the job deleted) gets one; a
    fresh queued run (its defer on its way) and a live one do not."""
    stalled, silent, fresh, live = (a_run(pg_sessions) for _ in range(4))
    state, _ = state_of(pg_sessions, timeout=5.0)
    app = build_worker_app(queue_url, state)
    with pg_sessions.begin() as session:
        session.execute(update(RunRow).where(RunRow.id.in_([silent, live])).values(
            status="running", attempt=1, worker="gone", heartbeat_at=now()))
        session.execute(update(RunRow).where(RunRow.id == silent).values(
            heartbeat_at=now().replace(year=2000)))
        session.execute(update(RunRow).where(RunRow.id != fresh).values(
            created_at=now().replace(year=2000)))

    async def main() -> None:
        async with app.open_async():
            await app.configure_task(TASK, queue=QUEUE, queueing_lock=stalled).defer_async(
                run_id=stalled)
            worker_id = await app.job_manager.register_worker()
            job = await app.job_manager.fetch_job([QUEUE], worker_id)
            assert job is not None and job.task_kwargs == {"run_id": stalled}
            assert jobs(queue_url) == [(stalled, "doing", 0, stalled)]
            with psycopg.connect(conninfo(queue_url), autocommit=True) as connection:
                connection.execute("UPDATE procrastinate_workers SET last_heartbeat = "
                                   "now() - interval '1 hour' WHERE id = %s", (worker_id,))
            await sweep(app, state)

    asyncio.run(main())
    # (``stalled`` is a queued run of the same owner before ``silent``: its turn comes first.)
    assert jobs(queue_url) == [(stalled, "todo", 0, stalled), (silent, "todo", -1, silent)]
