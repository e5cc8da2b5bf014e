"""A run's stored epochs, and the run once it is final or while it is paused, as the items of
its live streams: what the run feeds (:mod:`service.api.feeds`) read from the store, serialised
once per process."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.api import views
from service.api.feeds import PAGE_BYTES, Item
from service.api.list_answers import JSON_PER_PARAM_BYTE, writes_wb
from service.api.schemas.history import EndEvent, EpochEvent, PausedEvent
from service.store.budget import RowBudget
from service.store.repo import NotFound, Repository
from service.store.tables import FINAL_STATUSES, RunRow, RunStatus

# What an epoch item costs besides its params (numbers, ids, metrics), as history pages count.
ITEM_BASE = 1024


def read_items(
    sessions: sessionmaker[Session], run_id: str, after: int, limit: int
) -> tuple[list[Item], Item | None, bool]:
    """Up to ``limit`` of a run's epochs after ``after`` as stream items, fewer when their
    JSON would pass ``PAGE_BYTES`` (judged from the params' stored size before they are read);
    when no epoch follows, the end item if the run is final or the paused item if it is
    paused; and whether more epochs follow
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
        model = repo.model_kinds([run.model_id])[run.model_id]
        # ``param_bytes`` past the page: the rows' sizes are always looked at.
        budget = RowBudget(PAGE_BYTES, ITEM_BASE, JSON_PER_PARAM_BYTE * (1 + writes_wb(model)),
                           PAGE_BYTES)
        rows, more = repo.run_history(run_id, after, limit, budget)
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
        return items, tail, more
