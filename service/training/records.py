"""What the epoch loop takes and reports, and the state it keeps: plain records (Python
numbers, strings, dicts and NumPy arrays; no engine types)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Params = dict[str, np.ndarray]


@dataclass(frozen=True)
class EarlyStopping:
    """Stop once ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs; ``restore_best`` then keeps the best epoch's params (Keras' EarlyStopping)."""

    monitor: str = "loss"
    patience: int = 5
    min_delta: float = 0.0
    restore_best: bool = True


@dataclass(frozen=True)
class FitSpec:
    """How to train: everything a run says about its training, resolved to plain values;
    ``record_params`` k keeps the params in the history rows of every k-th epoch (0: none)."""

    epochs: int
    optimizer: dict[str, Any]
    loss: str
    huber_delta: float = 1.0
    l1: float = 0.0
    l2: float = 0.0
    batch_size: int | None = None
    shuffle: bool = True
    shuffle_seed: int | None = None
    early_stopping: EarlyStopping | None = None
    record_params: int = 1

    def records_params(self, epoch: int) -> bool:
        """Whether the history row of ``epoch`` keeps the params."""
        return self.record_params > 0 and epoch % self.record_params == 0


@dataclass(frozen=True)
class EpochRecord:
    """The model at the start of an epoch: the training objective and the metrics there, the
    params (unless the model is too large to log them per epoch), and the epoch's wall time."""

    epoch: int
    loss: float
    metrics: dict[str, float]
    params: Params | None
    elapsed_ms: float


@dataclass(frozen=True)
class StoppedEarly:
    """Early stopping ended the run before ``epoch``; ``best_epoch`` was the best state."""

    epoch: int
    best_epoch: int


@dataclass(frozen=True)
class Outcome:
    """How the loop ended: the final params with their loss and metrics (the best epoch's
    when early stopping restored them), or cancellation."""

    cancelled: bool
    params: Params
    loss: float
    metrics: dict[str, float]
    stopped_early: StoppedEarly | None = None


@dataclass
class Best:
    """Early stopping's memory: the best monitored value so far, where it was, the params,
    loss and metrics there, and how many epochs have passed without improvement."""

    value: float
    epoch: int
    params: Params
    loss: float
    metrics: dict[str, float]
    wait: int = 0


@dataclass
class LoopState:
    """Everything the loop carries from one epoch to the next: with the model's params, it
    resumes a run exactly (the optimizer's slots and step, the shuffling generator's state,
    early stopping's memory, the next epoch)."""

    epoch: int = 0
    optimizer: Params = field(default_factory=dict)
    rng: dict[str, Any] | None = None
    best: Best | None = None
