"""Rows for tests that write a store directly: a linear model's params, history records and
outcomes, and a queued run on a new model and dataset (tests/store and tests/jobs use them)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from service.store import repo
from service.training.records import EpochRecord, Outcome

V1_OPTIONS = {"loss": "mse", "huber_delta": 1.0, "regularization": {"l1": 0.0, "l2": 0.0},
              "validation": None, "early_stopping": None, "shuffle": True}


def linear(W: list[float], b: float) -> dict[str, np.ndarray]:
    """A linear model's params."""
    return {"W": np.asarray(W, dtype=np.float64), "b": np.asarray(b, dtype=np.float64)}


def record(epoch: int, W: list[float], b: float, loss: float) -> EpochRecord:
    """A history row of a linear model."""
    return EpochRecord(epoch, loss, {"mse": loss}, linear(W, b), 0.1)


def outcome(W: list[float], b: float, loss: float) -> Outcome:
    """A linear model's final state."""
    return Outcome(False, linear(W, b), loss, {"mse": loss})


def own(session: Session) -> repo.Repository:
    """The repository of tenant ``default`` in ``session``."""
    return repo.Repository(session, "default")


def model(session: Session, W: list[float], b: float, name: str | None = None) -> repo.ModelRow:
    """A new linear model with these params."""
    return own(session).create_model(kind="linear", config={"features": len(W)},
                                     params=linear(W, b), name=name)


def dataset(session: Session, n: int = 5, features: int = 2) -> repo.DatasetRow:
    """A new inline dataset of ``n`` rows: x counts up, y is the sum of x's row."""
    x = np.arange(n * features, dtype=np.float32).reshape(n, features)
    return own(session).create_dataset(x=x, y=x.sum(axis=1), source="inline", name="d")


def queued_run(sessions: sessionmaker[Session], model_id: str | None = None,
               dataset_id: str | None = None, epochs: int = 3,
               **settings: Any) -> tuple[str, str, str]:
    """A queued run (on a new two-feature model and dataset unless given) of plain gradient
    descent on the full batch, or as ``settings`` of ``create_run`` say; its three ids."""
    with sessions.begin() as session:
        data = own(session).get_dataset(dataset_id) if dataset_id else dataset(session)
        trained = own(session).get_model(model_id) if model_id else model(session, [0, 0], 0.0)
        run = own(session).create_run(model=trained, dataset=data, epochs=epochs, **{
            "optimizer": {"kind": "sgd", "learning_rate": 0.1}, "batch_size": None,
            "shuffle_seed": None, "dtype": "float32", "options": V1_OPTIONS, **settings})
        return run.id, trained.id, data.id
