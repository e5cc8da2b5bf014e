"""Schemas of models: create requests of each kind with their initial parameters, each kind's
resource and dry-run preview, pages of models, and predictions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Discriminator, Field, Tag

from service.api.schemas.common import (
    DRY_RUN_ID,
    RFC3339,
    Classes,
    Features,
    Inputs,
    Name,
    NamedArrays,
    Public,
    Request,
    Seed,
    Weights,
    integral,
    kind_or,
)
from service.api.schemas.limits import Limit
from service.training.kinds import ACTIVATIONS


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
Width = Annotated[int, Field(ge=1), Limit("max_layer_width"), BeforeValidator(integral)]


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
    Discriminator(kind_or("linear")),
]


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
