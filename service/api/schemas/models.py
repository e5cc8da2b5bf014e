"""Schemas of models: create requests of each kind with their initial parameters, each kind's
resource and dry-run preview, pages of models, and predictions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from service.api.schemas.annotations import ETAG_DESCRIPTION, Description, Tags
from service.api.schemas.common import (
    DRY_RUN_ID,
    RFC3339,
    Inputs,
    Name,
    NamedArrays,
    Public,
    Request,
    Seed,
    Weights,
    kind_or,
)
from service.api.schemas.limits import Limit
from service.training.kind_schemas import KindSchemas, SchemaParts, derive
from service.training.kinds import DEFAULT_KIND, KINDS


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
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    etag: str = Field("", description=ETAG_DESCRIPTION)


# Each kind's create request, resource and dry-run preview, derived from the fields the kind
# declares once (service/training/kinds.py).
KIND_SCHEMAS: dict[str, KindSchemas] = {
    name: derive(kind, SchemaParts(
        request=Request,
        request_tail={"initial": (Initial, None), "name": (Name, None),
                      "description": (Description, None), "tags": (Tags, None)},
        resource=ModelBase,
        preview={"id": (None, DRY_RUN_ID)},
        limit=Limit,
        module=__name__,
    ))
    for name, kind in KINDS.items()
}
# The names the spec and the clients know them by.
LinearModelCreate: Any = KIND_SCHEMAS["linear"].create
LinearModel = KIND_SCHEMAS["linear"].resource
LinearModelPreview = KIND_SCHEMAS["linear"].preview
LogisticModelCreate = KIND_SCHEMAS["logistic"].create
LogisticModel = KIND_SCHEMAS["logistic"].resource
LogisticModelPreview = KIND_SCHEMAS["logistic"].preview
MLPModelCreate = KIND_SCHEMAS["mlp"].create
MLPModel = KIND_SCHEMAS["mlp"].resource
MLPModelPreview = KIND_SCHEMAS["mlp"].preview


def _union(classes: list[type[BaseModel]]) -> Any:
    """The union of ``classes``, in order."""
    return Union[tuple(classes)]  # noqa: UP007


if TYPE_CHECKING:  # built at run time from the registry, which a type checker cannot follow
    ModelCreate = Any
    Model = Any
    ModelPreview = Any
else:
    ModelCreate = Annotated[
        _union([Annotated[schemas.create, Tag(name)] for name, schemas in KIND_SCHEMAS.items()]),
        Discriminator(kind_or(DEFAULT_KIND)),
    ]
    Model = Annotated[_union([schemas.resource for schemas in KIND_SCHEMAS.values()]),
                      Field(discriminator="kind")]
    ModelPreview = Annotated[_union([schemas.preview for schemas in KIND_SCHEMAS.values()]),
                             Field(discriminator="kind")]


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

