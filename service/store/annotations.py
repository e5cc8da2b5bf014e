"""Names, descriptions and tags of datasets, models and runs: their limits, the weak ETag over
them, a JSON Merge Patch (RFC 7396) applied under ``If-Match``, and the tag and name-prefix
filters of the listing endpoints.

The ETag covers only what a patch can change (name, description, tags), so a run's progress
never makes a client's ``If-Match`` stale.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import false, func, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from service.store import dialects
from service.store.tables import DatasetRow, ModelRow, RunRow
from service.training.errors import SpecError

MAX_NAME = 200
MAX_DESCRIPTION = 10_000
MAX_TAGS = 64
MAX_TAG_VALUE = 256
TAG_KEY = r"^[a-z0-9_.-]{1,64}$"
TAG_KEY_RE = re.compile(TAG_KEY)
# Set by studies on their trials' models and runs, never by a client.
RESERVED_TAGS = frozenset({"study", "trial"})
_ENTITY_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*(?:,|$)')

Annotated = DatasetRow | ModelRow | RunRow


class PreconditionFailed(Exception):
    """``If-Match`` names no current version of the resource (HTTP 412)."""

    def __init__(self, kind: str, resource_id: str, current: str) -> None:
        super().__init__(f"{kind} {resource_id!r} has changed: its ETag is now {current}; "
                         "read it again and retry")
        self.current = current


def etag(row: Annotated) -> str:
    """The weak ETag of a resource's name, description and tags."""
    content = json.dumps([row.name, row.description, row.tags or {}], sort_keys=True,
                         separators=(",", ":"), ensure_ascii=False)
    return f'W/"{hashlib.sha256(content.encode()).hexdigest()[:20]}"'


def matches(if_match: str, current: str) -> bool:
    """Whether an ``If-Match`` header names ``current`` (``*`` names any): the weak
    comparison, since these tags are weak; a malformed header names nothing."""
    if if_match.strip() == "*":
        return True
    opaque = current.removeprefix("W/")
    position, text = 0, if_match.strip()
    while position < len(text):
        found = _ENTITY_TAG.match(text, position)
        if found is None or found.end() == position:
            return False
        if f'"{found.group(2)}"' == opaque:
            return True
        position = found.end()
    return False


def check_if_match(row: Annotated, kind: str, if_match: str | None) -> None:
    """:class:`PreconditionFailed` unless ``If-Match`` is absent or names the row's ETag."""
    if if_match is not None and not matches(if_match, etag(row)):
        raise PreconditionFailed(kind, row.id, etag(row))


def check_tags(tags: Mapping[str, Any], location: tuple[str | int, ...],
               reserved_allowed: bool = False) -> None:
    """A :class:`SpecError` at ``location`` for a tag key outside ``[a-z0-9_.-]{1,64}``, a
    reserved key (``study``, ``trial``), a value that is not a string of at most 256
    characters (``None`` is allowed: a patch's removal), or more than 64 tags."""
    for key, value in tags.items():
        if not TAG_KEY_RE.match(key):
            raise SpecError((*location, key), "tag keys are 1 to 64 of a-z 0-9 _ . -")
        if key in RESERVED_TAGS and not reserved_allowed:
            raise SpecError((*location, key), "this tag is reserved for studies")
        if value is not None and (not isinstance(value, str) or len(value) > MAX_TAG_VALUE):
            raise SpecError((*location, key), f"a tag's value is a string of at most "
                                              f"{MAX_TAG_VALUE} characters")
    if len(tags) > MAX_TAGS:
        raise SpecError(location, f"{len(tags)} tags; at most {MAX_TAGS}")


UNSET: Any = object()


@dataclass(frozen=True)
class Patch:
    """A merge patch of annotations: each member given (a value, or None to remove it) or
    :data:`UNSET`; ``tags`` maps keys to new values or None (removed); ``tags`` None removes
    every tag."""

    name: str | None = UNSET
    description: str | None = UNSET
    tags: Mapping[str, str | None] | None = field(default=UNSET)


def merged_tags(current: Mapping[str, str], change: Mapping[str, str | None] | None) -> dict[
        str, str]:
    """``current`` with a patch's tags merged in (RFC 7396: null removes)."""
    if change is None:
        return {}
    tags = dict(current)
    for key, value in change.items():
        if value is None:
            tags.pop(key, None)
        else:
            tags[key] = value
    return tags


def lock(session: Session, table: type[Annotated], resource_id: str, owner: str) -> Any:
    """The tenant's row, locked until the transaction ends (a row lock on PostgreSQL, the
    database's write lock on SQLite), or None."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(update(table).where(false()).values(id=table.id)
                        .execution_options(synchronize_session=False))
    return session.scalar(select(table).where(table.id == resource_id, table.owner == owner)
                          .with_for_update())


def apply(row: Annotated, patch: Patch) -> None:
    """Merge ``patch`` into ``row``; a :class:`SpecError` (and nothing changed) when the tags
    would pass their limits."""
    tags = row.tags or {}
    if patch.tags is not UNSET:
        tags = merged_tags(tags, patch.tags)
        check_tags(tags, ("body", "tags"), reserved_allowed=True)
    if patch.name is not UNSET:
        row.name = patch.name
    if patch.description is not UNSET:
        row.description = patch.description
    if patch.tags is not UNSET:
        row.tags = tags


def tag_condition(table: type[Annotated], dialect: str, key: str, value: str | None) -> Any:
    """Rows with tag ``key`` (with ``value``, when given): a containment the GIN index
    answers on PostgreSQL, JSON extraction on SQLite."""
    if dialect == "postgresql":
        if value is None:
            return table.tags.op("?", is_comparison=True)(literal(key))
        document = func.cast(literal(json.dumps({key: value})), JSONB)
        return table.tags.op("@>", is_comparison=True)(document)
    found = dialects.json_value(table.tags, dialect, (key,))
    return found.is_not(None) if value is None else found == value


def name_prefix(table: type[Annotated], dialect: str, prefix: str) -> Any:
    """Rows whose name starts with ``prefix`` (case-sensitive on both stores)."""
    return dialects.like(table.name, dialect, dialects.escape_like(prefix) + "%")
