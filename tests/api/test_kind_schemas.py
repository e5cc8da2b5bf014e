"""Each model kind declares its request fields once; the API derives its create, resource and
preview classes from them (their JSON schemas are pinned by the committed OpenAPI document,
tests/contract/test_openapi.py); bounds become the API's settings-bound limits."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from service.api.schemas.limits import Limit
from service.api.schemas.models import KIND_SCHEMAS
from service.training.fields import Bound, Classes, Features
from service.training.kind_schemas import plain, resolve
from service.training.kinds import KINDS

DERIVED = KIND_SCHEMAS


def test_every_kind_has_its_three_classes_named_for_it() -> None:
    for name, kind in KINDS.items():
        schemas = DERIVED[name]
        prefix = kind.__name__
        assert [schemas.create.__name__, schemas.resource.__name__, schemas.preview.__name__] \
            == [f"{prefix}ModelCreate", f"{prefix}Model", f"{prefix}ModelPreview"]
        assert issubclass(schemas.preview, schemas.resource)
        assert list(schemas.create.model_fields)[-4:] == ["initial", "name", "description",
                                                          "tags"]


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
