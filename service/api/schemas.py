"""Pydantic schemas of the HTTP API: request bodies reject unknown fields and non-finite
numbers; limits come from the settings and show as constraints in the OpenAPI spec."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
)

from service.config import get_settings

LIMITS = get_settings()

RFC3339 = Annotated[
    datetime,
    PlainSerializer(lambda d: d.isoformat().replace("+00:00", "Z"), return_type=str),
]


class Request(BaseModel):
    """Base of request bodies: unknown fields, NaN / Infinity and values of the wrong JSON type
    (``true`` for a number, ``"3"`` for an integer, ``1`` for a boolean) are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class Public(BaseModel):
    """Base of response bodies."""

    model_config = ConfigDict(allow_inf_nan=False)


def _integral(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# JSON Schema counts 2.0 as an integer, so strict requests still take integral floats. (Bounds
# go inside the Annotated, before the validator: else an optional field's spec shows `ge`/`le`.)
Integer = Annotated[int, BeforeValidator(_integral)]
# Integers below 2**53 survive every JSON parser (JavaScript's numbers are doubles), so seeds
# and positions stay under it; the bound is also exact where the spec writes it as a float.
SAFE_INT_END = 2**53
# Epochs and steps are 32-bit integers in the store.
INT32_END = 2**31
# NUL is the one character PostgreSQL cannot store or compare.
NO_NUL = r"^[^\x00]*$"
Name = Annotated[
    str | None, Field(max_length=200, pattern=NO_NUL, description="A label of your choice.")
]
Values = Annotated[list[float], Field(min_length=1, max_length=LIMITS.max_examples)]
Rows = Annotated[
    list[Annotated[list[float], Field(min_length=1, max_length=LIMITS.max_features)]],
    Field(min_length=1, max_length=LIMITS.max_examples),
]


def _shape_of(value: Any) -> str:
    return "rows" if isinstance(value, list) and value and isinstance(value[0], list) else "values"


Inputs = Annotated[
    Annotated[Values, Tag("values")] | Annotated[Rows, Tag("rows")],
    Discriminator(_shape_of),
    Field(description="A flat list (one feature) or a list of rows, one per example."),
]
Weights = Annotated[list[float], Field(min_length=1, max_length=LIMITS.max_features)]
Seed = Annotated[int, Field(ge=0, lt=SAFE_INT_END), BeforeValidator(_integral)]


# ---------------------------------------------------------------- datasets


class DatasetCreate(Request):
    """Inline data: ``x`` is a list of numbers (one feature) or of rows (one per example)."""

    x: Inputs
    y: Values
    name: Name = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"x": [[0.0], [1.0], [2.0], [3.0]], "y": [2.1, 4.9, 8.2, 10.9], "name": "tiny line"}
            ]
        }
    )


class SyntheticCreate(Request):
    """The tutorial's synthetic data: ``y = x @ true_W + true_b + noise_stddev * N(0, 1)``."""

    num_examples: Integer = Field(1000, ge=1, le=LIMITS.max_examples)
    true_W: Weights = Field(default_factory=lambda: [3.0])
    true_b: float = 2.0
    noise_stddev: float = Field(1.0, ge=0)
    seed: Seed | None = Field(None, description="Omit for a random seed (reported back).")
    name: Name = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "num_examples": 1000,
                    "true_W": [3.0],
                    "true_b": 2.0,
                    "noise_stddev": 1.0,
                    "seed": 42,
                }
            ]
        }
    )


class SyntheticParams(Public):
    """The parameters a synthetic dataset was made with, seed included."""

    num_examples: int
    true_W: list[float]
    true_b: float
    noise_stddev: float
    seed: int


class DatasetSummary(Public):
    """Per-feature mean and standard deviation of x, and those of y."""

    x_mean: list[float]
    x_std: list[float]
    y_mean: float
    y_std: float


class Dataset(Public):
    """A stored dataset's metadata."""

    id: str
    name: str | None
    num_examples: int
    features: int
    dtype: str
    created_at: RFC3339
    summary: DatasetSummary
    source: Literal["inline", "synthetic", "upload"]
    synthetic: SyntheticParams | None = None


class DatasetPage(Public):
    """A page of datasets; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[Dataset]
    next_cursor: str | None


class DatasetData(Public):
    """A dataset's arrays: ``x`` as rows (one per example) and ``y``."""

    x: list[list[float]]
    y: list[float]


# ------------------------------------------------------------------ models


class InitialParams(Request):
    """Explicit starting parameters: one weight per feature and a bias."""

    W: Weights
    b: float = 0.0


class RandomInit(Request):
    """Seeded random starting parameters: ``W ~ N(0, 1)`` per feature, ``b = 0``."""

    random_seed: Seed


class ModelCreate(Request):
    """A new model; with no ``initial`` it starts at the tutorial's W = 5, b = 0."""

    kind: Literal["linear"] = "linear"
    features: Integer = Field(1, ge=1, le=LIMITS.max_features)
    initial: InitialParams | RandomInit | None = None
    name: Name = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "kind": "linear",
                    "features": 1,
                    "initial": {"W": [5.0], "b": 0.0},
                    "name": "tutorial",
                }
            ]
        }
    )


class Model(Public):
    """A model and its current parameters."""

    id: str
    name: str | None
    kind: Literal["linear"]
    features: int
    W: list[float]
    b: float
    epochs_trained: int
    last_loss: float | None
    status: Literal["idle", "training"]
    created_at: RFC3339
    updated_at: RFC3339


class ModelPage(Public):
    """A page of models; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[Model]
    next_cursor: str | None


class PredictRequest(Request):
    """Inputs to predict for: a list of numbers (one feature) or of rows."""

    x: Inputs

    model_config = ConfigDict(json_schema_extra={"examples": [{"x": [-1.0, 0.0, 1.0]}]})


class Prediction(Public):
    """One prediction per input row."""

    y: list[float]


# -------------------------------------------------------------------- runs

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


class RunCreate(Request):
    """Train a model on a dataset; with no other field, the tutorial's ten epochs of SGD."""

    dataset_id: str = Field(max_length=40, pattern=NO_NUL)
    epochs: Integer = Field(10, ge=1, le=LIMITS.max_epochs)
    optimizer: OptimizerSpec = Field(default_factory=lambda: SGD(kind="sgd"))
    batch_size: (
        Annotated[int, Field(ge=1, le=LIMITS.max_examples), BeforeValidator(_integral)] | None
    ) = Field(
        None,
        description="Examples per gradient step; null means the whole dataset (full batch).",
    )
    shuffle_seed: Seed | None = Field(
        None, description="Seeds the per-epoch shuffle of mini-batches."
    )
    dtype: Literal["float32", "float64"] = "float32"

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
    """A model's parameters."""

    W: list[float]
    b: float


class FinalParams(Params):
    """Parameters after a run's last update and the loss over the whole dataset there."""

    loss: float


class RunError(Public):
    """Why a run did not succeed."""

    reason: str = Field(description="diverged, cancelled, interrupted, worker_crashed or error")
    detail: str
    epoch: int | None = None


RunStatus = Literal[
    "queued", "running", "cancelling", "succeeded", "failed", "cancelled", "diverged"
]


class Run(Public):
    """A training run."""

    id: str
    model_id: str
    dataset_id: str
    status: RunStatus
    epochs: int
    epochs_completed: int
    optimizer: OptimizerSpec
    batch_size: int | None
    shuffle_seed: int | None
    dtype: Literal["float32", "float64"]
    created_at: RFC3339
    started_at: RFC3339 | None
    finished_at: RFC3339 | None
    initial: Params
    final: FinalParams | None = None
    error: RunError | None = None


class RunPage(Public):
    """A page of runs; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[Run]
    next_cursor: str | None


# ----------------------------------------------------------------- history


class HistoryRow(Public):
    """W and b at the start of an epoch and the loss at those values over the whole dataset."""

    epoch: int
    W: list[float]
    b: float
    loss: float
    elapsed_ms: float
    run_id: str
    step: int = Field(description="Position of this row in the model's whole history.")


class HistoryPage(Public):
    """History as rows; pass ``next_cursor`` as ``after`` for the next page."""

    items: list[HistoryRow]
    next_cursor: str | None


class HistoryColumns(Public):
    """History as columns, one list per field; pass ``next_cursor`` as ``after``."""

    epoch: list[int]
    W: list[list[float]]
    b: list[float]
    loss: list[float]
    elapsed_ms: list[float]
    run_id: list[str]
    step: list[int]
    next_cursor: str | None


class EpochEvent(HistoryRow):
    """A stream item: one history row."""

    type: Literal["epoch"] = "epoch"


class EndEvent(Run):
    """The last stream item: the run in its final state."""

    type: Literal["end"] = "end"


StreamItem = Annotated[EpochEvent | EndEvent, Field(discriminator="type")]


# ----------------------------------------------------------------- service


class Health(Public):
    """Liveness or readiness."""

    status: Literal["ok"]


def dump(model: BaseModel) -> dict[str, Any]:
    """A model as JSON-ready data."""
    return model.model_dump(mode="json")
