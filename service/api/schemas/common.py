"""The building blocks every schema of the HTTP API shares: the bases of request and response
bodies (requests reject unknown fields, non-finite numbers and values of the wrong JSON type),
bounded numbers and lists whose limits come from the answering app's settings
(``limits.Limit``), inputs and targets, named parameter arrays and the dry runs' null id."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
)
from pydantic_core import PydanticCustomError

from service.api.schemas.limits import Limit
from service.training import fields
from service.training.data import SYNTHETIC
from service.training.fields import integral
from service.training.kind_schemas import resolve
from service.training.kinds import KINDS


def whole_number_text(value: Any) -> Any:
    """A query parameter's text as an integer only when it is written as one (``5``, not
    ``5.0`` or ``5e0``, which pydantic's lax parsing of text would take): 422 otherwise."""
    if isinstance(value, str) and not value.strip().lstrip("+-").isdigit():
        raise PydanticCustomError("int_parsing",
                                 "Input should be a whole number written in digits")
    return value


# For integer query parameters: their values arrive as text.
QueryInteger = BeforeValidator(whole_number_text)

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
Seed = Annotated[int, Field(ge=0, lt=SAFE_INT_END), BeforeValidator(integral)]
Features = resolve(fields.Features, Limit)
Examples = Annotated[int, Field(ge=1), Limit("max_examples"), BeforeValidator(integral)]
Classes = resolve(fields.Classes, Limit)
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


def kind_or(default: str) -> Any:
    """A discriminator reading ``kind``, which may be left out for ``default``."""

    def kind(value: Any) -> str | None:
        if isinstance(value, dict):
            found = value.get("kind", default)
            return found if isinstance(found, str) else None
        return getattr(value, "kind", None)

    return kind


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


# The tags of request bodies that are unions of kinds (models, synthetic data), and of fields
# that are unions of shapes (x: values or rows; y: values or labels).
BODY_KIND_TAGS = frozenset(KINDS) | frozenset(SYNTHETIC)
FIELD_SHAPE_TAGS = frozenset({"values", "rows", "labels"})

DRY_RUN_ID = Field(None, description="null: a dry run creates nothing.")
