"""A small study used across the suite: a grid of 2 x 2 points (learning rate and hidden
width) of a tiny MLP on a classification dataset, 3 epochs each, no scheduler."""

from __future__ import annotations

from typing import Any


def grid_study(dataset_id: str, **changes: Any) -> dict[str, Any]:
    """The grid study's create body on ``dataset_id``, with ``changes`` over its fields."""
    body: dict[str, Any] = {
        "name": "moons-grid", "dataset_id": dataset_id,
        "model": {"kind": "mlp", "features": 2, "task": "classification", "classes": 2,
                  "hidden": [4]},
        "run": {"epochs": 3, "optimizer": {"kind": "adam", "learning_rate": 0.01},
                "batch_size": 32, "validation": {"fraction": 0.25}},
        "space": {"run.optimizer.learning_rate": {"type": "choice", "values": [0.01, 0.1]},
                  "model.hidden": {"type": "choice", "values": [[4], [8]]}},
        "objective": {"metric": "val_loss", "goal": "minimize"},
        "sampler": {"kind": "grid", "seed": 7},
        "concurrency": 2,
    }
    return body | changes
