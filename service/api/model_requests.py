"""A model's create request (or an imported file's kind, config and params) made into a model
kind and its starting params, checked against the limits: a 422 naming the field at fault."""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from service.api.http.problems import invalid
from service.api.schemas.models import InitialParams, NamedInit, RandomInit
from service.config import Settings
from service.training.kinds import Kind, make_kind


def kind_of(spec: Any, settings: Settings) -> Kind:
    """The model kind a create request describes, checked against the size limit."""
    config = spec.model_dump(exclude={"kind", "initial", "name"})
    if spec.kind == "mlp":
        if spec.task == "regression" and spec.classes is not None:
            raise invalid(["body", "classes"], "applies to classification only")
        config["classes"] = spec.classes or 2
    kind = make_kind(spec.kind, config)
    if kind.param_count() > settings.max_params:
        raise invalid(["body", kind.size_field],
                      f"the model would have {kind.param_count()} parameters, more than the "
                      f"limit of {settings.max_params} (TAPELINE_MAX_PARAMS)")
    return kind


def initial_params(kind: Kind, initial: Any) -> tuple[dict[str, np.ndarray], int | None]:
    """The starting params a request asks for and the random seed used, if any; 422 naming
    the offending param when a name or shape is wrong."""
    shapes = kind.shapes()
    if isinstance(initial, InitialParams):
        if set(shapes) != {"W", "b"} or shapes["b"] != ():
            raise invalid(["body", "initial", "W"],
                          f"a {kind.name} model with these settings has params "
                          f"{', '.join(shapes)}: give them as initial.params")
        if len(initial.W) != kind.features:
            raise invalid(["body", "initial", "W"],
                          f"has {len(initial.W)} weights but the model has {kind.features} "
                          "feature(s)")
        return {"W": np.asarray(initial.W, dtype=np.float64), "b": np.array(initial.b)}, None
    if isinstance(initial, NamedInit):
        return initial_params_named(shapes, initial.params), None
    seed = initial.random_seed if isinstance(initial, RandomInit) else None
    if seed is None and kind.random_default:
        seed = secrets.randbits(53)
    return kind.initial(seed), seed


def initial_params_named(
    shapes: dict[str, tuple[int, ...]],
    given: dict[str, Any],
    loc: list[str | int] | None = None,
) -> dict[str, np.ndarray]:
    """Every param of ``shapes`` from ``given`` by name; 422 naming (under ``loc``) an unknown,
    missing, ragged or misshapen one."""
    loc = loc or ["body", "initial", "params"]
    for name in given:
        if name not in shapes:
            raise invalid([*loc, name],
                          f"the model has no param {name!r} (it has {', '.join(shapes)})")
    params = {}
    for name, shape in shapes.items():
        if name not in given:
            raise invalid([*loc, name], f"missing: shape {list(shape)}")
        try:
            value = np.asarray(given[name], dtype=np.float64)
        except ValueError as error:  # ragged nested lists
            raise invalid([*loc, name],
                          f"expected shape {list(shape)}, got ragged lists") from error
        if value.shape != shape:
            raise invalid([*loc, name],
                          f"expected shape {list(shape)}, got {list(value.shape)}")
        params[name] = value
    return params
