"""A run's stored epochs, and the run once it is final or while it is paused, as the items of
its live streams: what the run feeds (:mod:`service.api.feeds`) read from the store, serialised
once per process."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.api import views
from service.api.feeds import Item
from service.api.schemas.history import EndEvent, EpochEvent, PausedEvent
from service.store.repo import NotFound, Repository
from service.store.tables import FINAL_STATUSES, RunRow, RunStatus


def read_items(
    sessions: sessionmaker[Session], run_id: str, after: int, limit: int
) -> tuple[list[Item], Item | None]:
    """Up to ``limit`` of a run's epochs after ``after`` as stream items, and, when no epoch
    follows, the end item if the run is final or the paused item if it is paused
    (:class:`~service.api.feeds.Read`). A feed serves
    every reader of the run in this process, so it reads as the run's own tenant; each
    reader's tenant is checked before it joins (``stream_start`` in
    :mod:`service.api.routes.history`)."""
    with sessions() as session:
        owner = session.scalar(select(RunRow.owner).where(RunRow.id == run_id))
        if owner is None:
            raise NotFound("run", run_id)
        repo = Repository(session, owner)
        run = repo.get_run(run_id)
        rows, more = repo.run_history(run_id, after, limit)
        items = [
            Item("epoch", row.epoch, EpochEvent(**views.history_row(row).model_dump())
                 .model_dump_json())
            for row in rows
        ]
        tail = None
        if run.status in FINAL_STATUSES and not more:
            tail = Item("end", None, EndEvent(**views.run(run).model_dump()).model_dump_json())
        elif run.status == RunStatus.PAUSED and not more:
            tail = Item("paused", None,
                        PausedEvent(**views.run(run).model_dump()).model_dump_json())
        return items, tail
