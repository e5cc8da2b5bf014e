"""Pydantic schemas of the HTTP API: request bodies reject unknown fields and non-finite
numbers; limits come from the answering app's settings (``limits.Limit``) and show as
constraints in the OpenAPI spec it serves. Every "kind of thing" is a discriminated union:
model kinds, synthetic datasets, optimizers, stream items."""

from __future__ import annotations

import functools
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

from service.api.limits import Limit
from service.store.tables import RunStatus
from service.training.data import SYNTHETIC
from service.training.kinds import ACTIVATIONS, KINDS
from service.training.losses import LOSSES
from service.training.metrics import METRICS

RFC3339 = Annotated[
    datetime,
    PlainSerializer(lambda d: d.isoformat().replace("+00:00", "Z"), return_type=str),
]


class Request(BaseModel):
    """Base of request bodies: unknown fields, NaN / Infinity and values of the wrong JSON type
    (``true`` for a number, ``"3"`` for an integer, ``1`` for a boolean) are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


@functools.cache
def request_schema_names() -> frozenset[str]:
    """The names of every request schema (how pydantic labels the alternatives of a union)."""
    found, todo = set(), [Request]
    while todo:
        for cls in todo.pop().__subclasses__():
            found.add(cls.__name__)
            todo.append(cls)
    return frozenset(found)


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
Values = Annotated[list[float], Field(min_length=1), Limit("max_examples")]
Rows = Annotated[
    list[Annotated[list[float], Field(min_length=1), Limit("max_features")]],
    Field(min_length=1),
    Limit("max_examples"),
]


def _shape_of(value: Any) -> str:
    return "rows" if isinstance(value, list) and value and isinstance(value[0], list) else "values"


Inputs = Annotated[
    Annotated[Values, Tag("values")] | Annotated[Rows, Tag("rows")],
    Discriminator(_shape_of),
    Field(description="A flat list (one feature) or a list of rows, one per example."),
]
Weights = Annotated[list[float], Field(min_length=1), Limit("max_features")]
Seed = Annotated[int, Field(ge=0, lt=SAFE_INT_END), BeforeValidator(_integral)]
Features = Annotated[int, Field(ge=1), Limit("max_features"), BeforeValidator(_integral)]
Examples = Annotated[int, Field(ge=1), Limit("max_examples"), BeforeValidator(_integral)]
Classes = Annotated[int, Field(ge=2), Limit("max_classes"), BeforeValidator(_integral)]
Label = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_NUL)]
Labels = Annotated[list[Label], Field(min_length=1), Limit("max_examples")]


def _labels_or_values(value: Any) -> str:
    return "labels" if isinstance(value, list) and value and isinstance(value[0], str) else "values"


Targets = Annotated[
    Annotated[Values, Tag("values")] | Annotated[Labels, Tag("labels")],
    Discriminator(_labels_or_values),
    Field(description="Numbers (values, or class indices), or class names: strings, stored as "
                      "indices into the dataset's `classes` (the names, sorted)."),
]


def _kind_or(default: str) -> Any:
    """A discriminator reading ``kind``, which may be left out for ``default``."""

    def kind(value: Any) -> str | None:
        if isinstance(value, dict):
            found = value.get("kind", default)
            return found if isinstance(found, str) else None
        return getattr(value, "kind", None)

    return kind


# ---------------------------------------------------------------- datasets


class DatasetCreate(Request):
    """Inline data: ``x`` is a list of numbers (one feature) or of rows (one per example);
    ``y`` holds numbers, or class names."""

    x: Inputs
    y: Targets
    name: Name = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"x": [[0.0], [1.0], [2.0], [3.0]], "y": [2.1, 4.9, 8.2, 10.9], "name": "tiny line"}
            ]
        }
    )


class LinearSynthetic(Request):
    """The tutorial's synthetic data: ``y = x @ true_W + true_b + noise_stddev * N(0, 1)``."""

    kind: Literal["linear"] = "linear"
    num_examples: Examples = 1000
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


class BlobsSynthetic(Request):
    """Gaussian blobs for classification: ``classes`` centers drawn in [-10, 10]^features,
    examples spread around them by ``spread``, labels 0..classes-1."""

    kind: Literal["blobs"]
    num_examples: Examples = 300
    features: Features = 2
    classes: Classes = 3
    spread: float = Field(1.0, gt=0, le=1e6)
    seed: Seed | None = Field(None, description="Omit for a random seed (reported back).")
    name: Name = None


class MoonsSynthetic(Request):
    """Two interleaving half circles in 2-D (labels 0 and 1), with Gaussian ``noise``."""

    kind: Literal["moons"]
    num_examples: Examples = 200
    noise: float = Field(0.1, ge=0, le=1e6)
    seed: Seed | None = Field(None, description="Omit for a random seed (reported back).")
    name: Name = None


class CirclesSynthetic(Request):
    """A circle of radius 1 (label 0) around one of radius 0.5 (label 1) in 2-D, with
    Gaussian ``noise``."""

    kind: Literal["circles"]
    num_examples: Examples = 200
    noise: float = Field(0.1, ge=0, le=1e6)
    seed: Seed | None = Field(None, description="Omit for a random seed (reported back).")
    name: Name = None


SyntheticCreate = Annotated[
    Annotated[LinearSynthetic, Tag("linear")]
    | Annotated[BlobsSynthetic, Tag("blobs")]
    | Annotated[MoonsSynthetic, Tag("moons")]
    | Annotated[CirclesSynthetic, Tag("circles")],
    Discriminator(_kind_or("linear")),
]


class LinearSyntheticParams(Public):
    """The parameters a synthetic line was made with, seed included."""

    kind: Literal["linear"] = "linear"
    num_examples: int
    true_W: list[float]
    true_b: float
    noise_stddev: float
    seed: int


class BlobsSyntheticParams(Public):
    """The parameters synthetic blobs were made with, seed included."""

    kind: Literal["blobs"]
    num_examples: int
    features: int
    classes: int
    spread: float
    seed: int


class MoonsSyntheticParams(Public):
    """The parameters synthetic moons were made with, seed included."""

    kind: Literal["moons"]
    num_examples: int
    noise: float
    seed: int


class CirclesSyntheticParams(Public):
    """The parameters synthetic circles were made with, seed included."""

    kind: Literal["circles"]
    num_examples: int
    noise: float
    seed: int


SyntheticMade = Annotated[
    LinearSyntheticParams | BlobsSyntheticParams | MoonsSyntheticParams | CirclesSyntheticParams,
    Field(discriminator="kind"),
]


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
    synthetic: SyntheticMade | None = None
    classes: list[str] | None = Field(
        None, description="The class names, when y held strings (y holds their indices)."
    )


class DatasetPage(Public):
    """A page of datasets; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[Dataset]
    next_cursor: str | None


class DatasetData(Public):
    """A dataset's arrays: ``x`` as rows (one per example) and ``y`` (class names, when the
    dataset has them)."""

    x: list[list[float]]
    y: list[float] | list[str]


# ------------------------------------------------------------------ models


ParamArray = Annotated[
    float | list[float] | list[list[float]],
    Field(description="A number (a scalar), a vector, or a matrix as a list of rows."),
]


def _names_as_property_names(schema: dict[str, Any]) -> None:
    """Pydantic writes a key pattern as ``patternProperties``, which leaves keys that miss
    the pattern unconstrained in JSON Schema; say it as ``propertyNames`` instead, so every
    value must be a param array whatever its key."""
    for pattern, values in schema.pop("patternProperties", {}).items():
        schema["additionalProperties"] = values
        schema.setdefault("propertyNames", {})["pattern"] = pattern


NamedArrays = Annotated[
    dict[Annotated[str, Field(max_length=40, pattern=NO_NUL)], ParamArray],
    Field(
        description="Every parameter by name (W, b; W1, b1, ..., Wn, bn).",
        json_schema_extra=_names_as_property_names,
    ),
]


class InitialParams(Request):
    """Explicit starting parameters of a linear or 2-class logistic model: one weight per
    feature and a bias."""

    W: Weights
    b: float = 0.0


class RandomInit(Request):
    """Seeded random starting parameters: for a linear model ``W ~ N(0, 1)`` per feature; for
    the others Glorot-uniform kernels; zero biases."""

    random_seed: Seed


class NamedInit(Request):
    """Explicit starting values of every parameter, by name (shapes as the model's
    ``params``)."""

    params: NamedArrays


Initial = Annotated[
    InitialParams | RandomInit | NamedInit | None,
    Field(description="Starting parameters; the kind's defaults when left out."),
]
Task = Literal["regression", "classification"]
Activation: Any = Literal.__getitem__(tuple(ACTIVATIONS))  # type: ignore[attr-defined]
Width = Annotated[int, Field(ge=1), Limit("max_layer_width"), BeforeValidator(_integral)]


class LinearModelCreate(Request):
    """A linear model ``x @ W + b``; with no ``initial`` it starts at the tutorial's W = 5,
    b = 0."""

    kind: Literal["linear"] = "linear"
    features: Features = 1
    initial: Initial = None
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


class LogisticModelCreate(Request):
    """Logistic regression: a sigmoid over ``x @ W + b`` for 2 classes, a softmax over
    ``x @ W + b`` with W of shape (features, classes) for more; starts at zeros."""

    kind: Literal["logistic"]
    features: Features = 1
    classes: Classes = 2
    initial: Initial = None
    name: Name = None


class MLPModelCreate(Request):
    """A multi-layer perceptron: dense layers of the ``hidden`` widths with ``activation``
    between them, then 1 output (regression) or ``classes`` logits under a softmax
    (classification). Starts from Glorot-uniform kernels and zero biases, seeded by
    ``initial.random_seed`` (random when left out, reported back)."""

    kind: Literal["mlp"]
    features: Features = 1
    hidden: Annotated[list[Width], Field(min_length=1), Limit("max_hidden_layers")] = Field(
        default_factory=lambda: [16]
    )
    activation: Activation = "relu"
    task: Task = "regression"
    classes: Classes | None = Field(None, description="K, for classification only (2 if left "
                                                      "out).")
    initial: Initial = None
    name: Name = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "kind": "mlp",
                    "features": 2,
                    "hidden": [16, 16],
                    "activation": "relu",
                    "task": "classification",
                    "classes": 2,
                }
            ]
        }
    )


ModelCreate = Annotated[
    Annotated[LinearModelCreate, Tag("linear")]
    | Annotated[LogisticModelCreate, Tag("logistic")]
    | Annotated[MLPModelCreate, Tag("mlp")],
    Discriminator(_kind_or("linear")),
]
# The tags of request bodies that are unions of kinds (models, synthetic data), and of fields
# that are unions of shapes (x: values or rows; y: values or labels).
BODY_KIND_TAGS = frozenset(KINDS) | frozenset(SYNTHETIC)
FIELD_SHAPE_TAGS = frozenset({"values", "rows", "labels"})


class ModelBase(Public):
    """What every model resource has."""

    id: str
    name: str | None
    kind: str
    features: int
    W: list[float] | None = Field(description="The weights of a linear or 2-class logistic "
                                              "model (null for other kinds).")
    b: float | None = Field(description="The bias of a linear or 2-class logistic model.")
    params: NamedArrays | None = Field(
        description="Every parameter by name; in a list of models, null for those of more "
                    "than TAPELINE_HISTORY_PARAMS_MAX parameters (get the model for them)."
    )
    param_count: int
    random_seed: int | None = Field(description="The seed of random initial values, if any.")
    class_names: list[str] | None = Field(
        description="The class names of the dataset it last trained on, if its labels had "
                    "names (predictions then carry `labels`)."
    )
    epochs_trained: int
    last_loss: float | None
    status: Literal["idle", "training"]
    created_at: RFC3339
    updated_at: RFC3339


class LinearModel(ModelBase):
    """A linear model and its current parameters."""

    kind: Literal["linear"]


class LogisticModel(ModelBase):
    """A logistic regression model and its current parameters."""

    kind: Literal["logistic"]
    classes: int


class MLPModel(ModelBase):
    """A multi-layer perceptron and its current parameters."""

    kind: Literal["mlp"]
    hidden: list[int]
    activation: Activation
    task: Task
    classes: int | None = None


Model = Annotated[LinearModel | LogisticModel | MLPModel, Field(discriminator="kind")]


class ModelPage(Public):
    """A page of models; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[Model]
    next_cursor: str | None


class PredictRequest(Request):
    """Inputs to predict for: a list of numbers (one feature) or of rows."""

    x: Inputs

    model_config = ConfigDict(json_schema_extra={"examples": [{"x": [-1.0, 0.0, 1.0]}]})


class Prediction(Public):
    """A regression model's prediction for each input row."""

    y: list[float]


class ClassPrediction(Public):
    """A classifier's predicted class for each input row, with every class's probability."""

    y: list[int] = Field(description="The most probable class of each row.")
    probabilities: list[list[float]] = Field(description="Per row, each class's probability.")
    labels: list[str] | None = Field(
        None, description="The predicted classes' names, when the model has `class_names`."
    )


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
    patience: Annotated[int, Field(ge=0, lt=INT32_END), BeforeValidator(_integral)] = 5
    min_delta: float = Field(0.0, ge=0, le=1e6)
    restore_best: bool = Field(True, description="End with the best epoch's params.")


class RunCreate(Request):
    """Train a model on a dataset; with no other field, the tutorial's ten epochs of SGD."""

    dataset_id: str = Field(max_length=40, pattern=NO_NUL)
    epochs: Annotated[int, Field(ge=1), Limit("max_epochs"), BeforeValidator(_integral)] = 10
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

    reason: str = Field(description="diverged, cancelled, interrupted, worker_crashed or error")
    detail: str
    epoch: int | None = None


class StoppedEarly(Public):
    """Early stopping ended the run before ``epoch``; ``best_epoch`` was the best state."""

    epoch: int
    best_epoch: int


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
    loss: LossName
    huber_delta: float
    regularization: Regularization
    validation: ValidationFraction | ValidationDataset | None
    early_stopping: EarlyStoppingSpec | None
    shuffle: bool
    created_at: RFC3339
    started_at: RFC3339 | None
    finished_at: RFC3339 | None
    initial: Params
    final: FinalParams | None = None
    stopped_early: StoppedEarly | None = None
    error: RunError | None = None


class RunPage(Public):
    """A page of runs; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[Run]
    next_cursor: str | None


# ----------------------------------------------------------------- history


class HistoryRow(Public):
    """The model at the start of an epoch: the objective (``loss``) and metrics there over
    the training rows (``val_*`` over the validation rows), the params (for models of at most
    TAPELINE_HISTORY_PARAMS_MAX parameters), W and b where the kind has them."""

    epoch: int
    W: list[float] | None = None
    b: float | None = None
    loss: float
    metrics: dict[str, float]
    params: NamedArrays | None = None
    elapsed_ms: float
    run_id: str
    step: int = Field(description="Position of this row in the model's whole history.")


class HistoryPage(Public):
    """History as rows; pass ``next_cursor`` as ``after`` for the next page."""

    items: list[HistoryRow]
    next_cursor: str | None


class HistoryColumns(Public):
    """History as columns, one list per field (``metrics`` and ``params`` one per name); pass
    ``next_cursor`` as ``after``."""

    epoch: list[int]
    W: list[list[float]] | None = None
    b: list[float] | None = None
    loss: list[float]
    metrics: dict[str, list[float | None]]
    params: dict[str, list[ParamArray]] | None = None
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


# ---------------------------------------------------------------- dry runs

DRY_RUN_ID = Field(None, description="null: a dry run creates nothing.")


class DatasetPreview(Dataset):
    """A dataset as a dry run would have created it."""

    id: None = DRY_RUN_ID  # type: ignore[assignment]


class LinearModelPreview(LinearModel):
    """A linear model as a dry run would have created it."""

    id: None = DRY_RUN_ID  # type: ignore[assignment]


class LogisticModelPreview(LogisticModel):
    """A logistic regression model as a dry run would have created it."""

    id: None = DRY_RUN_ID  # type: ignore[assignment]


class MLPModelPreview(MLPModel):
    """A multi-layer perceptron as a dry run would have created it."""

    id: None = DRY_RUN_ID  # type: ignore[assignment]


ModelPreview = Annotated[LinearModelPreview | LogisticModelPreview | MLPModelPreview,
                         Field(discriminator="kind")]


class RunPreview(Run):
    """A run as a dry run would have queued it."""

    id: None = DRY_RUN_ID  # type: ignore[assignment]
