"""Schemas of runs: optimizers, loss, penalty, validation and early stopping of a run request,
the run as a resource (parameters, error, early stop), pages of runs and a dry run's preview."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field

from service.api.schemas.annotations import ETAG_DESCRIPTION, Description, Tags
from service.api.schemas.common import (
    DRY_RUN_ID,
    INT32_END,
    NO_NUL,
    RFC3339,
    Examples,
    Name,
    NamedArrays,
    Public,
    Request,
    Seed,
    integral,
)
from service.api.schemas.limits import Limit
from service.store.tables import RunStatus
from service.training.losses import LOSSES
from service.training.metrics import METRICS

LearningRate = Annotated[float, Field(gt=0, le=1e6)]
Decay = Annotated[float, Field(ge=0, lt=1)]


class SGD(Request):
    """Plain gradient descent, ``W -= learning_rate * dW`` (the tutorial's update)."""

    kind: Literal["sgd"]  # required like every discriminator: `{}` would not say which optimizer
    learning_rate: LearningRate = 0.1


class Momentum(Request):
    """Gradient descent with momentum, optionally Nesterov's (Keras' update rule)."""

    kind: Literal["momentum"]
    learning_rate: LearningRate = 0.1
    momentum: Decay = 0.9
    nesterov: bool = False


class Adam(Request):
    """Adam (Keras' update rule and defaults)."""

    kind: Literal["adam"]
    learning_rate: LearningRate = 0.001
    beta_1: Decay = 0.9
    beta_2: Decay = 0.999
    epsilon: float = Field(1e-7, gt=0, le=1)


OptimizerSpec = Annotated[SGD | Momentum | Adam, Field(discriminator="kind")]


LossName: Any = Literal.__getitem__(tuple(LOSSES))  # type: ignore[attr-defined]
MONITORS = ("loss", "val_loss", *METRICS, *(f"val_{name}" for name in METRICS))
Monitor: Any = Literal.__getitem__(MONITORS)  # type: ignore[attr-defined]


class Regularization(Request):
    """``l1 Σ|w| + l2 Σw²`` over the kernels (W, W1...Wn; not biases), added to the
    objective."""

    l1: float = Field(0.0, ge=0, le=1e6)
    l2: float = Field(0.0, ge=0, le=1e6)


class ValidationFraction(Request):
    """Validate on the last rows: the first ceil(n (1 - fraction)) rows train, the rest
    validate, in order (Keras' ``validation_split``)."""

    fraction: float = Field(gt=0, lt=1)


class ValidationDataset(Request):
    """Validate on another dataset (same features)."""

    dataset_id: str = Field(max_length=40, pattern=NO_NUL)


class EarlyStoppingSpec(Request):
    """Stop once ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs (Keras' EarlyStopping). ``monitor`` is ``loss``, ``val_loss`` or a metric, with
    ``val_`` for its value on the validation rows; ``accuracy`` and ``r2`` improve upwards,
    the others downwards."""

    monitor: Monitor | None = Field(None, description="`val_loss` with validation, else `loss`.")
    patience: Annotated[int, Field(ge=0, lt=INT32_END), BeforeValidator(integral)] = 5
    min_delta: float = Field(0.0, ge=0, le=1e6)
    restore_best: bool = Field(True, description="End with the best epoch's params.")


class RunCreate(Request):
    """Train a model on a dataset; with no other field, the tutorial's ten epochs of SGD."""

    dataset_id: str = Field(max_length=40, pattern=NO_NUL)
    epochs: Annotated[int, Field(ge=1), Limit("max_epochs"), BeforeValidator(integral)] = 10
    optimizer: OptimizerSpec = Field(default_factory=lambda: SGD(kind="sgd"))
    batch_size: Examples | None = Field(
        None,
        description="Examples per gradient step; null means the whole dataset (full batch).",
    )
    shuffle_seed: Seed | None = Field(
        None, description="Seeds the per-epoch shuffle of mini-batches."
    )
    dtype: Literal["float32", "float64"] = "float32"
    loss: LossName | None = Field(
        None, description="`mse` for regression, `cross_entropy` for classification if left out."
    )
    huber_delta: float = Field(1.0, gt=0, le=1e6, description="Huber's threshold.")
    regularization: Regularization = Field(default_factory=Regularization)
    validation: ValidationFraction | ValidationDataset | None = None
    early_stopping: EarlyStoppingSpec | None = None
    shuffle: bool = Field(
        True, description="Mini-batches in a shuffled order each epoch, or in row order."
    )
    record_params: Annotated[int, Field(ge=0, lt=INT32_END), BeforeValidator(integral)] | None = (
        Field(None, description="History rows keep the params of every k-th epoch (epochs "
                                "0, k, 2k, ...; 0: none). By default every row for a model "
                                "of at most 512 parameters, every ceil(count / 512)-th for a "
                                "larger one, none past TAPELINE_HISTORY_PARAMS_MAX.")
    )
    name: Name = None
    description: Description = None
    tags: Tags = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "dataset_id": "ds_0123456789abcdef0123",
                    "epochs": 10,
                    "optimizer": {"kind": "sgd", "learning_rate": 0.1},
                }
            ]
        }
    )


class Params(Public):
    """A model's parameters: every named array, and W and b where the kind has them."""

    W: list[float] | None
    b: float | None
    params: NamedArrays


class FinalParams(Params):
    """Parameters after a run's last update (the best epoch's when early stopping restored
    them), with the objective and metrics over the training rows there."""

    loss: float
    metrics: dict[str, float]


class RunError(Public):
    """Why a run did not succeed."""

    reason: str = Field(description="diverged, cancelled, interrupted, worker_crashed, "
                                    "worker_lost, quota (the tenant's stored bytes) or error")
    detail: str
    epoch: int | None = None


class StoppedEarly(Public):
    """Early stopping ended the run before ``epoch``; ``best_epoch`` was the best state."""

    epoch: int
    best_epoch: int


class Run(Public):
    """A training run."""

    id: str
    name: str | None = None
    model_id: str
    dataset_id: str
    status: RunStatus
    epochs: int
    epochs_completed: int
    optimizer: OptimizerSpec
    batch_size: int | None
    shuffle_seed: int | None
    dtype: Literal["float32", "float64"]
    loss: LossName
    huber_delta: float
    regularization: Regularization
    validation: ValidationFraction | ValidationDataset | None
    early_stopping: EarlyStoppingSpec | None
    shuffle: bool
    record_params: int = Field(description="History rows keep the params of the epochs that "
                                           "are multiples of this (0: none).")
    created_at: RFC3339
    started_at: RFC3339 | None
    finished_at: RFC3339 | None
    initial: Params
    final: FinalParams | None = None
    stopped_early: StoppedEarly | None = None
    error: RunError | None = None
    duration_ms: float | None = Field(
        None, description="From `started_at` to `finished_at`, once the run has ended.")
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    etag: str = Field("", description=ETAG_DESCRIPTION)


class RunPage(Public):
    """A page of runs; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[Run]
    next_cursor: str | None


class RunPreview(Run):
    """A run as a dry run would have queued it."""

    id: None = DRY_RUN_ID  # type: ignore[assignment]
