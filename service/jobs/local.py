"""The ``local`` executor: a pool of processes in the server that trains its runs, fair across
tenants; a crashed worker's run is failed or resumed from its checkpoint. Also how a server's
pool names itself on its runs, and how a starting server tells whether another holder of an
active run is still alive."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.jobs.attempt import Claim
from service.jobs.pool import ProcessPool
from service.store import lifecycle
from service.store.repo import now
from service.store.tables import ACTIVE_STATUSES, RunRow, RunStatus

log = logging.getLogger("tapeline.jobs")


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
        self._pool = ProcessPool(
            settings.database_url,
            settings.workers,
            on_news=on_news,
            on_crash=self._crashed,
            log_level=settings.log_level,
            claim=Claim.of(settings, local_worker_name()),
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

    def look(self, run_id: str) -> None:
        self._pool.look(run_id)

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
            row = session.scalar(select(RunRow).where(RunRow.id == run_id))
            if self._settings.on_interrupted == "requeue" or (
                    row is not None and lifecycle.in_study(row)):
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
