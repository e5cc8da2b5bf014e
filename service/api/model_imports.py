"""An imported model file made into a model: its kind and config checked exactly as a create
request's, then its params' names and shapes against the kind's (from the file's header,
before any of its data is converted), its class names as a dataset's labels are, and what it
said of its origin. No HTTP and no store: the route stores what this returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from service import export
from service.api.http.problems import ProblemError, field_problems, invalid
from service.api.model_requests import REQUEST_FIELDS, kind_of
from service.api.schemas.limits import bound
from service.api.schemas.models import ModelCreate
from service.config import Settings
from service.export import Limits, Parsed
from service.training.kinds import KINDS, Kind

_create = TypeAdapter[Any](ModelCreate)

# What an imported model keeps of its file's provenance, and the short text or count each is.
ORIGIN_TEXT = ("model_id", "run_id", "tapeline_version", "format")
ORIGIN_COUNTS = ("epochs_trained",)
# Imports of imports remembered (each hop's origin nests the one before).
ORIGIN_HOPS = 16
# A class name, as a dataset's labels are limited (service.api.schemas.common.Label).
NAME_CHARS = 200


@dataclass(frozen=True)
class Imported:
    """A model file made into a model: its kind and params, class names, label and origin."""

    kind: Kind
    params: dict[str, np.ndarray]
    class_names: list[str] | None
    name: str | None
    origin: dict[str, Any]


def limits(settings: Settings) -> Limits:
    """What a model file may hold under these settings: no more params, class names and named
    arrays than a model made here can have."""
    return Limits(params=settings.max_params, classes=settings.max_classes,
                  tensors=2 * (settings.max_hidden_layers + 1))


def read(data: bytes, settings: Settings, name: str | None = None) -> Imported:
    """The model a file describes, every part checked (415 or 422 naming the part at fault);
    ``name`` is the caller's label, else the file's."""
    parsed = export.read_bundle(data, limits(settings))
    kind = checked_kind(parsed, settings)
    params = parsed.arrays(kind.shapes())
    given = parsed.provenance.get("name")
    label = name or (given if isinstance(given, str) and "\x00" not in given else None)
    return Imported(kind, params, class_names(parsed, kind.num_classes),
                    label[:NAME_CHARS] if label else None,
                    {**origin_of(parsed.provenance), "format": parsed.format})


def origin_of(provenance: dict[str, Any], hops: int = ORIGIN_HOPS) -> dict[str, Any]:
    """What an imported model keeps of its file's provenance: the model, run and version that
    produced it, the epochs it had trained, and (nested) where that model came from; anything
    else, or of another type, is left out."""
    origin: dict[str, Any] = {
        key: value for key, value in provenance.items()
        if (key in ORIGIN_TEXT and isinstance(value, str) and len(value) <= 200
            and "\x00" not in value)
        or (key in ORIGIN_COUNTS and isinstance(value, int) and not isinstance(value, bool)
            and value >= 0)
    }
    earlier = provenance.get("imported_from")
    if isinstance(earlier, dict) and hops > 1:
        origin["imported_from"] = origin_of(earlier, hops - 1)
    return origin


def _config_problem(error: ValidationError) -> ProblemError:
    """A 422 naming the config fields at fault, as a create request's would name its body's
    (``field_problems`` drops the kind's tag from each location)."""
    raw = [{"loc": ("body", *e["loc"]), "msg": e["msg"]} for e in error.errors(include_url=False)]
    errors = [{"loc": ["file", "config", *p["loc"][1:]], "msg": p["msg"]}
              for p in field_problems(raw)]
    where = ".".join(str(part) for part in errors[0]["loc"])
    return ProblemError(422, f"{where}: {errors[0]['msg']}", errors)


def checked_kind(parsed: Parsed, settings: Settings) -> Kind:
    """The kind of an imported file, its config checked exactly as a create request's."""
    if parsed.kind not in KINDS:
        raise invalid(["file", "kind"], f"unknown model kind {parsed.kind[:40]!r} (known: "
                                        f"{', '.join(KINDS)})")
    reserved = REQUEST_FIELDS & set(parsed.config)
    if reserved:
        raise invalid(["file", "config", sorted(reserved)[0]], "is not a config field")
    try:
        with bound(settings):
            spec = _create.validate_python({"kind": parsed.kind, **parsed.config})
    except ValidationError as error:
        raise _config_problem(error) from error
    return kind_of(spec, settings)


def class_names(parsed: Parsed, classes: int | None) -> list[str] | None:
    """The file's class names: one per class of a classifier, each a dataset label's length
    (1 to 200 characters, no NUL); 422 otherwise."""
    names = parsed.provenance.get("class_names")
    if names is None:
        return None
    loc: list[str | int] = ["file", "provenance", "class_names"]
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)
            and len(names) == classes):
        raise invalid(loc, f"must be {classes} class names" if classes else "a regression "
                           "model has no class names")
    for index, text in enumerate(names):
        if not 0 < len(text) <= NAME_CHARS or "\x00" in text:
            raise invalid([*loc, index], f"a class name must have 1 to {NAME_CHARS} "
                                         f"characters and no NUL, as a dataset's labels")
    return names
