"""The executor interface the API uses, and the executor a server's settings choose."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.jobs.executor import ProcessExecutor
from service.jobs.metrics import ScaleCollector, queue_workers, read_figures
from service.jobs.notify import Listener
from service.jobs.progress import Progress
from service.jobs.runner import Claim
from service.store import lifecycle
from service.store.repo import now
from service.store.tables import ACTIVE_STATUSES, RunRow, RunStatus

log = logging.getLogger("tapeline.jobs")


class Executor(Protocol):
    """Trains queued runs somewhere: the API hands it run ids and cancel requests."""

    def start(self) -> None: ...

    def submit(self, run_id: str, owner: str | None = None) -> None:
        """A run was queued (may block on the store: call it off the event loop); ``owner``
        is its tenant, when the caller knows it."""

    def cancel(self, run_id: str) -> None:
        """A run was asked to stop (the store says so already)."""

    @property
    def busy(self) -> int: ...

    @property
    def queued(self) -> int: ...

    def stop(self, timeout: float = 3.0) -> list[str]:
        """Stop; the ids of runs this process abandoned (none for the queue)."""


def claim_of(settings: Settings, worker: str) -> Claim:
    """How a worker named ``worker`` claims runs under these settings."""
    return Claim(worker=worker, timeout=settings.worker_timeout,
                 max_attempts=settings.max_attempts,
                 checkpoint_seconds=settings.checkpoint_seconds, compile=settings.compile)


def local_worker_name() -> str:
    """How this server's pool names itself on the runs it trains: ``local:<host>:<pid>``."""
    return f"local:{socket.gethostname()}:{os.getpid()}"


def owner_alive(row: RunRow, timeout: float) -> bool:
    """Whether a live worker other than this server holds an active run: one that showed it
    was alive within ``timeout`` seconds, unless it is a ``local`` pool of a server on this
    host whose process is gone (it died with its server, whatever its last heartbeat)."""
    if row.status == RunStatus.QUEUED or row.worker is None or row.heartbeat_at is None:
        return False
    if now() - row.heartbeat_at > timedelta(seconds=timeout):
        return False
    kind, _, rest = row.worker.partition(":")
    host, _, pid = rest.partition(":")
    if kind == "local" and host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True


class LocalExecutor:
    """Today's pool of processes in the server, fair across tenants; a crashed worker's run
    is failed (``fail``) or resumed from its checkpoint (``requeue``)."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session],
                 on_news: Callable[[str, bool | None], None]) -> None:
        self._sessions = sessions
        self._settings = settings
        self._on_news = on_news
        self._pool = ProcessExecutor(
            settings.database_url,
            settings.workers,
            on_news=on_news,
            on_crash=self._crashed,
            log_level=settings.log_level,
            claim=claim_of(settings, local_worker_name()),
        )

    def start(self) -> None:
        self._pool.start()

    def submit(self, run_id: str, owner: str | None = None) -> None:
        if owner is None:
            with self._sessions() as session:
                owner, _ = lifecycle.queue_rank(session, run_id)
        self._pool.submit(run_id, owner)

    def cancel(self, run_id: str) -> None:
        self._pool.cancel(run_id)

    @property
    def busy(self) -> int:
        return self._pool.busy

    @property
    def queued(self) -> int:
        return self._pool.queued

    def stop(self, timeout: float = 3.0) -> list[str]:
        return self._pool.stop(timeout)

    def _crashed(self, run_id: str) -> None:
        with self._sessions.begin() as session:  # still queued if it died while starting it
            if lifecycle.run_status(session, run_id) not in ACTIVE_STATUSES:
                return
            if self._settings.on_interrupted == "requeue":
                requeued = lifecycle.resolve_interrupted(session, "requeue", [run_id])
            else:
                requeued = []
                lifecycle.finish_run(
                    session,
                    run_id,
                    RunStatus.FAILED,
                    error=("worker_crashed", "the worker process training this run died", None),
                )
        for again in requeued:
            log.warning("run %s: its worker process died; resuming it from its checkpoint",
                        again)
            self.submit(again)


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

        listener = Listener(conninfo(settings.database_url), progress)
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
