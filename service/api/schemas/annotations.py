"""Schemas of names, descriptions and tags: the fields a create request may carry, the
JSON Merge Patch (RFC 7396) that changes them, and the fields every annotated resource shows
(its ``etag`` included). The limits are the store's (``service.store.annotations``)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field

from service.api.schemas.common import NO_NUL, Request
from service.store.annotations import (
    MAX_DESCRIPTION,
    MAX_NAME,
    MAX_TAG_VALUE,
    MAX_TAGS,
    RESERVED_TAGS,
    TAG_KEY,
)

TagKey = Annotated[str, Field(pattern=TAG_KEY)]


def _not_reserved(tags: dict[str, Any] | None) -> dict[str, Any] | None:
    for key in tags or {}:
        if key in RESERVED_TAGS:
            raise ValueError(f"the tag {key!r} is reserved for studies")
    return tags


def _key_rules(schema: dict[str, Any]) -> None:
    """State the keys' pattern as ``propertyNames`` (pydantic writes it as
    ``patternProperties``, which leaves other keys unconstrained). The reserved keys are said
    in the description: a ``not`` there breaks schema-driven generators."""
    for branch in [schema, *schema.get("anyOf", [])]:
        if branch.get("type") != "object":
            continue
        for pattern, values in branch.pop("patternProperties", {}).items():
            branch["additionalProperties"] = values
            branch["propertyNames"] = {"pattern": pattern}


TAGS_DESCRIPTION = (f"Labels of your choice: at most {MAX_TAGS} keys of 1 to 64 of a-z 0-9 _ . - "
                    f"to strings of at most {MAX_TAG_VALUE} characters (`study` and `trial` "
                    "are reserved for studies).")
Description = Annotated[
    str | None,
    Field(max_length=MAX_DESCRIPTION, pattern=NO_NUL, description="Plain text notes."),
]
TagValue = Annotated[str, Field(max_length=MAX_TAG_VALUE, pattern=NO_NUL)]
Tags = Annotated[
    dict[TagKey, TagValue] | None,
    Field(max_length=MAX_TAGS, description=TAGS_DESCRIPTION,
          json_schema_extra=_key_rules),
    AfterValidator(_not_reserved),
]
PatchName = Annotated[
    str | None,
    Field(max_length=MAX_NAME, pattern=NO_NUL, description="A new name; null removes it."),
]
PatchTags = Annotated[
    dict[TagKey, TagValue | None] | None,
    Field(max_length=MAX_TAGS, json_schema_extra=_key_rules,
          description="Tags to set; a null value removes that tag, and `tags: null` every "
                      "tag. " + TAGS_DESCRIPTION),
    AfterValidator(_not_reserved),
]


class AnnotationsPatch(Request):
    """A JSON Merge Patch (RFC 7396) of a resource's name, description and tags: members
    left out stay as they are, null removes."""

    name: PatchName = None
    description: Description = None
    tags: PatchTags = None

    model_config = ConfigDict(json_schema_extra={
        "examples": [{"name": "lr-sweep-3", "tags": {"team": "cv", "draft": None}}]})


ETAG_DESCRIPTION = ("The weak ETag of the name, description and tags (also in the `ETag` "
                    "header): send it as `If-Match` to change or delete only that version.")
# The ETag header of an annotated resource's answers, as the OpenAPI document declares it.
ETAG_HEADER = {"ETag": {"description": "The weak ETag of the name, description and tags.",
                        "schema": {"type": "string"}}}
