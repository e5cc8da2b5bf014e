"""Each model kind declares its request fields once: the create, resource and preview classes
derived from them are the API's hand-written ones (names, descriptions, field order, JSON
schemas in both modes) and validate every body alike; bounds become the API's settings-bound
limits."""

from __future__ import annotations

import json
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field, ValidationError

from service.api import schemas as api
from service.api.schemas.limits import Limit, bound
from service.config import Settings
from service.training.fields import Bound, Classes, Features
from service.training.kind_schemas import KindSchemas, SchemaParts, derive, plain, resolve
from service.training.kinds import KINDS

PARTS = SchemaParts(
    request=api.Request,
    request_tail={"initial": (api.Initial, None), "name": (api.Name, None)},
    resource=api.ModelBase,
    preview={"id": (None, api.DRY_RUN_ID)},
    limit=Limit,
    module=api.__name__,
)
DERIVED: dict[str, KindSchemas] = {name: derive(kind, PARTS) for name, kind in KINDS.items()}


def todays(name: str) -> list[type[BaseModel]]:
    """The API's hand-written create, resource and preview classes of a kind."""
    prefix = KINDS[name].__name__
    return [getattr(api, f"{prefix}ModelCreate"), getattr(api, f"{prefix}Model"),
            getattr(api, f"{prefix}ModelPreview")]


@pytest.mark.parametrize("name", list(KINDS))
@pytest.mark.parametrize("settings", [Settings(), Settings(max_features=7, max_classes=3,
                                                           max_layer_width=9,
                                                           max_hidden_layers=2)],
                         ids=["default-limits", "other-limits"])
def test_derived_classes_are_todays_hand_written_ones(name: str, settings: Settings) -> None:
    derived = DERIVED[name]
    for new, old in zip([derived.create, derived.resource, derived.preview], todays(name),
                        strict=True):
        assert new.__name__ == old.__name__
        assert list(new.model_fields) == list(old.model_fields)
        assert issubclass(new, api.Request) == issubclass(old, api.Request)
        with bound(settings):
            for mode in ("validation", "serialization"):
                # Compared as text: key order (what the OpenAPI document shows) included.
                assert json.dumps(new.model_json_schema(mode=mode)) == \
                    json.dumps(old.model_json_schema(mode=mode)), (new.__name__, mode)
    assert issubclass(derived.preview, derived.resource)


BODIES: list[dict[str, Any]] = [
    {},
    {"kind": "linear", "features": 3.0, "initial": {"W": [1, 2, 3], "b": 0}},
    {"features": 2000},
    {"features": True},
    {"features": "3"},
    {"features": 0},
    {"kind": "logistic", "features": 2, "classes": 4},
    {"kind": "logistic", "classes": 1001},
    {"kind": "logistic", "classes": 2.5},
    {"kind": "mlp", "hidden": [4, 4.0], "activation": "tanh", "task": "classification",
     "classes": 3, "initial": {"random_seed": 5}, "name": "m"},
    {"kind": "mlp", "hidden": [5000]},
    {"kind": "mlp", "hidden": [1] * 17},
    {"kind": "mlp", "hidden": []},
    {"kind": "mlp", "activation": "gelu"},
    {"kind": "mlp", "task": "ranking"},
    {"kind": "mlp", "classes": None, "unknown": 1},
    {"kind": "linear", "initial": {"params": {"W": [1.0], "b": 0.0}}, "name": "x" * 201},
]


def outcome(cls: type[BaseModel], body: dict[str, Any]) -> Any:
    """What validating ``body`` gives: the dump, or the errors."""
    try:
        return cls.model_validate(body).model_dump()
    except ValidationError as error:
        return error.errors(include_url=False)


@pytest.mark.parametrize("body", BODIES, ids=[str(i) for i in range(len(BODIES))])
def test_derived_requests_validate_every_body_alike(body: dict[str, Any]) -> None:
    name = body.get("kind", "linear")
    derived, old = DERIVED[name].create, todays(name)[0]
    with bound(Settings()):
        new_outcome, old_outcome = outcome(derived, body), outcome(old, body)
    assert repr(new_outcome) == repr(old_outcome)


def test_a_kind_left_out_is_the_default_kind_and_only_it() -> None:
    assert DERIVED["linear"].create.model_fields["kind"].default == "linear"
    assert DERIVED["logistic"].create.model_fields["kind"].is_required()
    assert DERIVED["mlp"].create.model_fields["kind"].is_required()


def test_resolve_replaces_bounds_and_plain_drops_constraints() -> None:
    resolved = resolve(Classes | None, Limit)
    inner = resolved.__args__[0]
    assert [type(m).__name__ for m in inner.__metadata__] == ["FieldInfo", "Limit",
                                                              "BeforeValidator"]
    assert inner.__metadata__[1] == Limit("max_classes")
    assert plain(Classes | None) == int | None
    assert plain(Annotated[list[Features], Field(min_length=1), Bound("x")]) == list[int]
    assert resolve(int, Limit) is int
