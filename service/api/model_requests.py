"""A model's create request made into a model kind and its starting params: the request's
fields handed to the training specs, which check them (a :class:`SpecError`, a 422 naming the
field) against each other and the size limit."""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from service.api.schemas.models import InitialParams, NamedInit, RandomInit
from service.config import Settings
from service.training.kinds import Kind
from service.training.specs import named_params, tutorial_params, validate_model

REQUEST_FIELDS = frozenset({"kind", "initial", "name", "description", "tags"})


def kind_of(spec: Any, settings: Settings) -> Kind:
    """The model kind a create request describes, checked against the size limit."""
    fields = spec.model_dump(exclude=REQUEST_FIELDS)
    return validate_model(spec.kind, fields, settings.max_params).build()


def initial_params(kind: Kind, initial: Any) -> tuple[dict[str, np.ndarray], int | None]:
    """The starting params a request asks for and the random seed used, if any; 422 naming
    the offending param when a name or shape is wrong."""
    if isinstance(initial, InitialParams):
        return tutorial_params(kind, initial.W, initial.b), None
    if isinstance(initial, NamedInit):
        return named_params(kind, initial.params), None
    seed = initial.random_seed if isinstance(initial, RandomInit) else None
    if seed is None and kind.random_default:
        seed = secrets.randbits(53)
    return kind.initial(seed), seed
