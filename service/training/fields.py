"""The request fields of model kinds, declared once in each kind's class: the record of one
config field, the constrained types the kinds share, and the marker of a bound that comes from
the service's settings (the API turns it into its own check when it derives its schemas)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BeforeValidator, Field


@dataclass(frozen=True)
class Bound:
    """Annotated marker: the value (a list's length) may not exceed the ``Settings`` field
    ``setting``. It checks nothing itself: deriving a kind's API schemas replaces it with the
    API's check, which reads the settings of the app answering."""

    setting: str


def integral(value: Any) -> Any:
    """An integral float as an int: JSON Schema counts 2.0 as an integer, so strict requests
    still take it."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Bounds go inside the Annotated, before the validator: else an optional field's spec shows
# `ge` / `le` beside its `anyOf`.
Features = Annotated[int, Field(ge=1), Bound("max_features"), BeforeValidator(integral)]
Classes = Annotated[int, Field(ge=2), Bound("max_classes"), BeforeValidator(integral)]
Width = Annotated[int, Field(ge=1), Bound("max_layer_width"), BeforeValidator(integral)]
Widths = Annotated[list[Width], Field(min_length=1), Bound("max_hidden_layers")]


@dataclass(frozen=True)
class ConfigField:
    """One config field of a kind as a create request gives it: its name, its type (with its
    constraints and bounds), its default (or a factory of it; neither: required) and its
    description. A model resource shows the same field with the constraints left out."""

    name: str
    annotation: Any
    default: Any = ...
    default_factory: Callable[[], Any] | None = None
    description: str | None = None


@dataclass(frozen=True)
class KindSchema:
    """How a kind shows in the API: its ``noun`` (``"A linear model"``, which names it in the
    descriptions of its resource and its dry-run preview), the description of its create
    request (``doc``, written as a docstring), its config fields in request order, and the
    create request's examples."""

    noun: str
    doc: str
    fields: tuple[ConfigField, ...]
    examples: tuple[Mapping[str, Any], ...] = field(default=())
