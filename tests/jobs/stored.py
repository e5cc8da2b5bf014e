"""What the jobs' tests put in a store and read back: a run on a learnable dataset, the run's
row and its history."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.store import repo
from service.store.tables import CheckpointRow, EpochRow, RunRow
from tests.store.rows import V1_OPTIONS, own, queued_run


def learnable(session: Session, rows: int = 64) -> str:
    """A dataset of two features whose targets a linear model can learn; its id."""
    x = np.random.default_rng(5).standard_normal((rows, 2)).astype(np.float32)
    y = (x @ np.array([1.5, -2.0]) + 0.3).astype(np.float32)
    return own(session).create_dataset(x=x, y=y, source="inline", name="learnable").id


def a_run(sessions: sessionmaker[Session], epochs: int = 5, dataset_id: str | None = None,
          **settings: Any) -> str:
    """A queued run of a new linear model (W = [0, 0], b = 0) on a learnable dataset (a new
    one unless given); ``settings`` of ``create_run`` as :func:`queued_run` takes them."""
    if dataset_id is None:
        with sessions.begin() as session:
            dataset_id = learnable(session)
    run_id, _, _ = queued_run(sessions, dataset_id=dataset_id, epochs=epochs, **settings)
    return run_id


def run_row(sessions: sessionmaker[Session], run_id: str) -> RunRow:
    """The run as the store has it now."""
    with sessions() as session:
        return repo.Repository(session, "default").get_run(run_id)


def model_row(sessions: sessionmaker[Session], run_id: str) -> repo.ModelRow:
    """The run's model as the store has it now."""
    with sessions() as session:
        found = repo.Repository(session, "default")
        return found.get_model(found.get_run(run_id).model_id)


def history(sessions: sessionmaker[Session], run_id: str) -> list[EpochRow]:
    """The run's stored history rows, in epoch order."""
    with sessions() as session:
        return list(session.scalars(
            select(EpochRow).where(EpochRow.run_id == run_id).order_by(EpochRow.epoch)))


def checkpoint_epoch(sessions: sessionmaker[Session], run_id: str) -> int | None:
    """The epoch of the run's checkpoint (None without one)."""
    with sessions() as session:
        return session.scalar(select(CheckpointRow.epoch).where(CheckpointRow.run_id == run_id))


MINI_BATCHES: dict[str, Any] = {
    "optimizer": {"kind": "adam", "learning_rate": 0.05}, "batch_size": 8, "shuffle_seed": 3,
    "options": V1_OPTIONS,
}
