"""A model kind's three API schemas (its create request, its resource, its dry-run preview),
derived from the fields the kind declares once (``Kind.schema``).

What is not the kind's comes from the API (:class:`SchemaParts`): the bases of the request and
resource classes, the fields every create request ends with, what a preview changes, and the
API's check of a bound from the settings. The derived classes are named, described and ordered
exactly as if written by hand: ``<Kind>ModelCreate`` (``kind``, the config fields, then the
API's), ``<Kind>Model`` (the resource base's fields, ``kind`` a literal, then the config fields
the base lacks, without their constraints) and ``<Kind>ModelPreview``.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field

from service.training.fields import Bound, ConfigField
from service.training.kinds import DEFAULT_KIND, Kind

# A field as pydantic's ``create_model`` takes it: (annotation, default or FieldInfo).
FieldSpec = tuple[Any, Any]


@dataclass(frozen=True)
class SchemaParts:
    """What the API puts around every kind's own fields: the base of create requests and the
    fields each ends with (``initial``, ``name``), the base of model resources, the fields a
    dry-run preview overrides (``id``), the API's marker for a :class:`Bound`, and the module
    the derived classes belong to."""

    request: type[BaseModel]
    request_tail: Mapping[str, FieldSpec]
    resource: type[BaseModel]
    preview: Mapping[str, FieldSpec]
    limit: Callable[[str], Any]
    module: str


@dataclass(frozen=True)
class KindSchemas:
    """A kind's create request, resource and dry-run preview classes."""

    create: type[BaseModel]
    resource: type[BaseModel]
    preview: type[BaseModel]


def _rebuild(annotation: Any, metadata: Callable[[list[Any]], list[Any]]) -> Any:
    """``annotation`` with the metadata of every ``Annotated`` in it (through unions and
    lists) replaced by ``metadata(old)``; an ``Annotated`` left with none is its bare type."""
    origin = get_origin(annotation)
    if origin is Annotated:
        bare, *old = get_args(annotation)
        new = metadata(old)
        inner = _rebuild(bare, metadata)
        return Annotated[(inner, *new)] if new else inner  # type: ignore[valid-type]
    if origin in (Union, types.UnionType):
        return Union[tuple(_rebuild(arg, metadata) for arg in get_args(annotation))]  # noqa: UP007
    if origin is list:
        return list[_rebuild(get_args(annotation)[0], metadata)]  # type: ignore[misc]
    return annotation


def resolve(annotation: Any, limit: Callable[[str], Any]) -> Any:
    """``annotation`` with each :class:`Bound` replaced by ``limit(setting)``: how the API
    takes a constrained type of the kinds (``Features``, ``Classes``) as its own."""
    return _rebuild(annotation, lambda meta: [limit(m.setting) if isinstance(m, Bound) else m
                                              for m in meta])


def plain(annotation: Any) -> Any:
    """``annotation`` without its constraints: what a resource shows of a request field."""
    return _rebuild(annotation, lambda meta: [])


def _model(name: str, base: type[BaseModel], doc: str, module: str,
           fields: Mapping[str, FieldSpec], config: ConfigDict | None = None) -> type[BaseModel]:
    """A pydantic class as a ``class`` statement would make it (``create_model`` takes no
    config beside a base)."""

    def body(namespace: dict[str, Any]) -> None:
        namespace.update({"__doc__": doc, "__module__": module, "__qualname__": name,
                          "__annotations__": {key: spec[0] for key, spec in fields.items()}})
        namespace.update({key: spec[1] for key, spec in fields.items() if spec[1] is not ...})
        if config is not None:
            namespace["model_config"] = config

    return types.new_class(name, (base,), {}, body)


def _request_field(field: ConfigField, limit: Callable[[str], Any]) -> FieldSpec:
    annotation = resolve(field.annotation, limit)
    if field.default_factory is not None:
        return annotation, Field(default_factory=field.default_factory,
                                 description=field.description)
    if field.description is not None:
        return annotation, Field(field.default, description=field.description)
    return annotation, field.default


def _resource_field(field: ConfigField) -> FieldSpec:
    annotation = plain(field.annotation)
    return annotation, None if type(None) in get_args(annotation) else ...


def derive(kind: type[Kind], parts: SchemaParts) -> KindSchemas:
    """The create, resource and preview classes of ``kind``."""
    schema, prefix = kind.schema, kind.__name__
    tag = Literal.__getitem__(kind.name)  # type: ignore[attr-defined]
    create = _model(
        f"{prefix}ModelCreate", parts.request, schema.doc, parts.module,
        {"kind": (tag, kind.name if kind.name == DEFAULT_KIND else ...),
         **{f.name: _request_field(f, parts.limit) for f in schema.fields},
         **parts.request_tail},
        ConfigDict(json_schema_extra={"examples": [dict(e) for e in schema.examples]})
        if schema.examples else None,
    )
    own = [f for f in schema.fields if f.name not in parts.resource.model_fields]
    resource = _model(f"{prefix}Model", parts.resource,
                      f"{schema.noun} and its current parameters.", parts.module,
                      {"kind": (tag, ...), **{f.name: _resource_field(f) for f in own}})
    preview = _model(f"{prefix}ModelPreview", resource,
                     f"{schema.noun} as a dry run would have created it.", parts.module,
                     parts.preview)
    return KindSchemas(create, resource, preview)
