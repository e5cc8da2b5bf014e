"""The executor interface the API uses, and the executor a server's settings choose: ``local``
(:mod:`service.jobs.local`) or ``queue`` (:mod:`service.jobs.queue`)."""

from __future__ import annotations

from functools import partial
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.jobs.local import LocalExecutor, owner_alive
from service.jobs.metrics import ScaleCollector, queue_workers, read_figures
from service.jobs.notify import Listener, progress_listener
from service.jobs.progress import Progress
from service.store import lifecycle


class Executor(Protocol):
    """Trains queued runs somewhere: the API hands it run ids and cancel requests."""

    def start(self) -> None: ...

    def submit(self, run_id: str, owner: str | None = None) -> None:
        """A run was queued (may block on the store: call it off the event loop); ``owner``
        is its tenant, when the caller knows it."""

    def cancel(self, run_id: str) -> None:
        """A run was asked to stop (the store says so already)."""

    def look(self, run_id: str) -> None:
        """A running run's controls changed in the store (a pause was asked): the worker
        training it, when this process can reach it, reads them at its next epoch boundary
        rather than at its next timed look."""

    @property
    def busy(self) -> int: ...

    @property
    def queued(self) -> int: ...

    def stop(self, timeout: float = 3.0) -> list[str]:
        """Stop; the ids of runs this process abandoned (none for the queue)."""


def submit_run(executor: Executor, run_id: str, owner: str | None = None) -> None:
    """Hand a queued run to the executor, as the API does once a new run's transaction has
    committed (blocking on the store: call it off the event loop)."""
    executor.submit(run_id, owner)


def resume_and_submit(sessions: sessionmaker[Session], executor: Executor, run_id: str,
                      pause_at: int | None = None, *, end: bool = False) -> None:
    """Resume a paused run and hand it to the executor: for callers without HTTP (a study's
    scheduler). :func:`~service.store.lifecycle.resume_run` in a transaction of its own
    (queued again, pausing next at ``pause_at``; or, with ``end``, to end ``succeeded`` where
    it paused), then, once committed, :func:`submit_run`. Raises what ``resume_run`` raises
    (nothing is then queued)."""
    with sessions.begin() as session:
        owner = lifecycle.resume_run(session, run_id, pause_at, end=end).owner
    submit_run(executor, run_id, owner)


def scale_collector(settings: Settings, sessions: sessionmaker[Session],
                    executor: Executor) -> ScaleCollector:
    """The /metrics collector of workers, attempts and queue depth."""
    if settings.executor == "queue":
        workers = queue_workers(settings.worker_timeout)
    else:
        def workers(session: Session) -> int:
            return settings.workers
    return ScaleCollector(partial(read_figures, sessions, workers))


def start_executor(
    settings: Settings,
    engine: Engine,
    sessions: sessionmaker[Session],
    progress: Progress,
) -> tuple[Executor, list[str], Listener | None]:
    """Start the executor the settings choose, and (on PostgreSQL) the listener of other
    processes' news. ``local`` settles the runs a previous server left active (it was the
    only one training them); ``queue`` settles nothing: workers take over runs whose worker
    is gone, never a live one's."""
    listener = None
    if engine.dialect.name == "postgresql":
        from service.jobs.queue import conninfo

        listener = progress_listener(conninfo(settings.database_url), progress)
        listener.start()
    executor: Executor
    requeued: list[str] = []
    if settings.executor == "queue":
        from service.jobs.queue import QueueExecutor, ensure_queue_schema

        ensure_queue_schema(engine)
        executor = QueueExecutor(settings.database_url, sessions)
        executor.start()
        return executor, requeued, listener
    executor = LocalExecutor(settings, sessions, progress.notify_threadsafe)
    with sessions.begin() as session:
        requeued = lifecycle.resolve_interrupted(
            session, settings.on_interrupted,
            keep=partial(owner_alive, timeout=settings.worker_timeout))
    executor.start()
    for run_id in requeued:
        executor.submit(run_id)
    return executor, requeued, listener
