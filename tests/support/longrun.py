"""A finished run with a very long history, written straight into a store: training 100,000
real epochs takes minutes, and what these tests and benchmarks read is the stored history."""

from __future__ import annotations

import numpy as np

from service.store import lifecycle, repo
from service.store.db import make_engine, make_sessionmaker, migrate
from service.training.records import EpochRecord, Outcome

OPTIONS = {"loss": "mse", "huber_delta": 1.0, "regularization": {"l1": 0.0, "l2": 0.0},
           "validation": None, "early_stopping": None, "shuffle": True}


def _linear(W: float, b: float) -> dict[str, np.ndarray]:
    return {"W": np.array([W]), "b": np.array(b)}


def trajectory(epochs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """W, b and a noisy, slowly decreasing loss per epoch, W 5 -> 3 and b 0 -> 2 like the
    tutorial's runs; the noise gives every stretch of epochs its own minimum and maximum."""
    t = np.arange(epochs) / max(epochs - 1, 1)
    decay = np.exp(-6 * t)
    noise = np.random.default_rng(seed).standard_normal(epochs)
    return 3 + 2 * decay, 2 - 2 * decay, 1 + 8 * decay + 0.05 * noise ** 2


def store_finished_run(database_url: str, model_id: str, dataset_id: str, epochs: int) -> str:
    """Write a succeeded run of ``epochs`` epochs of :func:`trajectory` for an existing model
    and dataset; returns the run's id."""
    engine = make_engine(database_url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    W, b, loss = trajectory(epochs)
    with sessions.begin() as session:
        store = repo.Repository(session, "default")
        run = store.create_run(
            model=store.get_model(model_id),
            dataset=store.get_dataset(dataset_id),
            epochs=epochs,
            optimizer={"kind": "sgd", "learning_rate": 0.1},
            batch_size=None,
            shuffle_seed=None,
            dtype="float32",
            options=OPTIONS,
        )
        run_id = run.id
    with sessions.begin() as session:
        started = lifecycle.claim_run(session, run_id, "longrun", timeout=30.0, max_attempts=1)
        assert started is not None
        for first in range(0, epochs, 10_000):
            lifecycle.append_epochs(session, started.run, [
                EpochRecord(e, float(loss[e]), {"mse": float(loss[e])},
                            _linear(float(W[e]), float(b[e])), 0.05)
                for e in range(first, min(first + 10_000, epochs))
            ], started.attempt)
        final = Outcome(False, _linear(3.0, 2.0), float(loss[-1]), {"mse": float(loss[-1])})
        lifecycle.finish_run(session, run_id, "succeeded", final=final, completed=epochs,
                             attempt=started.attempt)
    engine.dispose()
    return run_id
