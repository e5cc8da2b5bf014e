"""The ``queue`` executor: runs are jobs of procrastinate, a PostgreSQL task queue, trained by
``tapeline worker`` processes on any number of machines; API replicas only defer jobs.

One job trains one attempt of one run (:func:`service.jobs.attempt.execute_run` claims the run
with a fenced attempt, so a job that runs twice, or a worker presumed dead that comes back,
writes nothing over its successor). Each worker process also sweeps: jobs of workers whose
procrastinate heartbeat stopped are retried, and active runs that no job holds any more (a
worker killed, a defer lost) get a new one. Dispatch is fair across tenants: a job's priority
is minus the number of its owner's runs queued before it, and procrastinate takes the highest
priority first, so owners take turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import procrastinate
from procrastinate import exceptions as pexc
from sqlalchemy import Engine, exists, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from service.jobs.attempt import Claim, execute_run
from service.store import lifecycle
from service.store.db import MIGRATION_LOCK
from service.store.repo import now
from service.store.tables import RunRow, RunStatus

log = logging.getLogger("tapeline.jobs")

QUEUE = "tapeline-runs"
TASK = "tapeline.train"
# A queued run older than this with no job gets one from a worker's sweep (a lost defer).
ORPHAN_GRACE_SECONDS = 5.0


def conninfo(database_url: str) -> str:
    """The libpq connection string of a SQLAlchemy PostgreSQL URL."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError("the queue executor needs PostgreSQL (TAPELINE_DATABASE_URL)")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def ensure_queue_schema(engine: Engine) -> None:
    """Create procrastinate's tables once (under the migration lock, so replicas starting
    together do not race)."""
    schema = procrastinate.App(
        connector=procrastinate.SyncPsycopgConnector(conninfo="")
    ).schema_manager.get_schema()
    with engine.begin() as connection:
        connection.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))
        if connection.scalar(text("SELECT to_regclass('procrastinate_jobs')")) is None:
            cursor = connection.connection.cursor()  # the script has '%': no parameters
            cursor.execute(schema)
            cursor.close()


def defer_options(session: Session, run_id: str) -> dict[str, Any]:
    """How a run's job is deferred: its fair-share priority and a lock that keeps one job of
    the run waiting at most."""
    _, ahead = lifecycle.queue_rank(session, run_id)
    return {"queue": QUEUE, "priority": -ahead, "queueing_lock": run_id}


class QueueExecutor:
    """The API side: defers a job per run; trains nothing."""

    def __init__(self, database_url: str, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(
            conninfo=conninfo(database_url), min_size=1, max_size=4))

    def start(self) -> None:
        self._app.open()

    def submit(self, run_id: str, owner: str | None = None) -> None:
        """Defer the run's job (blocking: call it off the event loop). The run is stored
        already: if the defer fails, a worker's sweep defers it a few seconds later. (The
        job's options come from the store, owner included.)"""
        try:
            with self._sessions() as session:
                options = defer_options(session, run_id)
            with contextlib.suppress(pexc.AlreadyEnqueued):  # a job of the run waits already
                self._app.configure_task(TASK, **options).defer(run_id=run_id)
        except Exception:
            log.warning("could not defer the job of run %s; a worker's sweep will", run_id,
                        exc_info=True)

    def cancel(self, run_id: str) -> None:
        """Nothing to do: the store says cancelling, and the worker training it looks."""

    def look(self, run_id: str) -> None:
        """Nothing to do: the worker training it reads the store every 0.25 s."""

    @property
    def busy(self) -> int:
        with self._sessions() as session:
            return int(session.scalar(select(func.count()).where(
                RunRow.status.in_(lifecycle.TRAINING))) or 0)

    @property
    def queued(self) -> int:
        with self._sessions() as session:
            return int(session.scalar(select(func.count()).where(
                RunRow.status == RunStatus.QUEUED)) or 0)

    def stop(self, timeout: float = 3.0) -> list[str]:
        self._app.close()
        return []


# ----------------------------------------------------------------- the worker side


@dataclass
class WorkerState:
    """What the jobs of one worker process share."""

    sessions: sessionmaker[Session]
    claim: Claim
    draining: threading.Event = field(default_factory=threading.Event)
    on_epochs: Callable[[int], None] = lambda n: None
    on_run: Callable[[], None] = lambda: None
    # Told that the training loop shows progress (True: an attempt starts, an epoch boundary)
    # or that it trains nothing any more (False); the worker's liveness check reads it.
    on_progress: Callable[[bool], None] = lambda training: None
    # The run this process trains now, and how many times it was told that run's controls
    # changed in the store (a pause asked: news on the LISTEN channel), for the attempt to
    # read them at its next boundary.
    running: str | None = None
    looks: int = 0

    def told(self, run_id: str) -> None:
        """News of a run (from the listener's thread): counted if it is the one training."""
        if run_id == self.running:
            self.looks += 1

    def looked(self) -> int:
        return self.looks

    def at_boundary(self) -> bool:
        """Asked by the attempt at every epoch boundary: whether to hand the run back (the
        worker drains); the loop showed progress."""
        self.on_progress(True)
        return self.draining.is_set()


def build_worker_app(database_url: str, state: WorkerState) -> procrastinate.App:
    """A procrastinate app whose one task trains an attempt of a run in a thread."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(
        conninfo=conninfo(database_url), min_size=1, max_size=4))

    @app.task(name=TASK, queue=QUEUE)
    async def train(run_id: str) -> None:
        state.on_progress(True)
        state.running = run_id
        try:
            status = await asyncio.to_thread(
                execute_run, state.sessions, run_id, claim=state.claim,
                draining=state.at_boundary, stored=state.on_epochs, looked=state.looked,
            )
        finally:
            state.running = None
            state.on_progress(False)
        state.on_run()
        if status == RunStatus.QUEUED:  # handed back while draining: another worker resumes
            await defer_async(app, state.sessions, run_id)

    return app


async def defer_async(app: procrastinate.App, sessions: sessionmaker[Session],
                      run_id: str) -> None:
    """Defer a job of the run (none if one is waiting already)."""
    def options() -> dict[str, Any]:
        with sessions() as session:
            return defer_options(session, run_id)

    with contextlib.suppress(pexc.AlreadyEnqueued):
        await app.configure_task(TASK, **await asyncio.to_thread(options)).defer_async(
            run_id=run_id)


def orphans(session: Session, timeout: float) -> list[str]:
    """Active runs that no waiting or running job holds and that nobody is training: queued
    for a while, or training with a worker silent for ``timeout`` seconds."""
    stamp = now()
    held = exists(
        select(text("1")).select_from(text("procrastinate_jobs")).where(
            text("queue_name = :queue AND status IN ('todo', 'doing') "
                 "AND args->>'run_id' = runs.id")
        )
    )
    query = (
        select(RunRow.id)
        .where(
            (
                (RunRow.status == RunStatus.QUEUED)
                & (RunRow.created_at < stamp - timedelta(seconds=ORPHAN_GRACE_SECONDS))
            )
            | (
                RunRow.status.in_(lifecycle.TRAINING)
                & (
                    RunRow.heartbeat_at.is_(None)
                    | (RunRow.heartbeat_at < stamp - timedelta(seconds=timeout))
                )
            ),
            ~held,
        )
        .order_by(RunRow.seq)
        .limit(100)
    )
    return list(session.scalars(query, {"queue": QUEUE}))


async def sweep(app: procrastinate.App, state: WorkerState) -> None:
    """Once: retry the jobs of stalled workers, and give orphaned runs a job."""
    timeout = state.claim.timeout
    for job in await app.job_manager.get_stalled_jobs(
        queue=QUEUE, seconds_since_heartbeat=timeout
    ):
        log.warning("retrying job %s of a stalled worker", job.id)
        try:
            await app.job_manager.retry_job(job)
        except Exception:
            log.warning("could not retry job %s", job.id, exc_info=True)

    def find() -> list[str]:
        with state.sessions() as session:
            return orphans(session, timeout)

    for run_id in await asyncio.to_thread(find):
        log.warning("run %s has no job; deferring one", run_id)
        await defer_async(app, state.sessions, run_id)


async def sweep_forever(app: procrastinate.App, state: WorkerState) -> None:
    every = max(min(state.claim.timeout / 3, 5.0), 0.2)
    while True:
        try:
            await sweep(app, state)
        except Exception:
            log.warning("sweep failed", exc_info=True)
        await asyncio.sleep(every)
