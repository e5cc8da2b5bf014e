"""What every listing endpoint filters by besides paging: tags (``?tag=team:cv``, repeated
for all of them; ``?tag=team`` for any value) and a name prefix (``?name_prefix=sweep-``);
and, for lists of runs, the search language's ``filter`` and ``sort`` with a cursor that
pages either."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, Header, Query
from pydantic import Field

from service.api.http.paging import LIMIT_DESCRIPTION, PageSize
from service.api.schemas.common import NO_NUL
from service.store.annotations import (
    MAX_NAME,
    MAX_TAG_VALUE,
    check_if_match,
    lock,
    name_prefix,
    tag_condition,
)
from service.store.repo import NotFound, Repository
from service.store.search.grammar import MAX_LENGTH
from service.store.search.query import CURSOR_PREFIX, RunQuery

TagFilter = Annotated[
    str, Field(pattern=rf"^[a-z0-9_.-]{{1,64}}(:[^\x00]{{0,{MAX_TAG_VALUE}}})?$")]
TAG_DESCRIPTION = ("`key:value` lists only what has that tag (`key` alone: with any value); "
                   "repeat for all of several.")
# A sorted search's cursor is opaque (`k` and base64url); an unsorted one a position.
SEARCH_CURSOR = rf"^([0-9]{{1,18}}|{CURSOR_PREFIX}[A-Za-z0-9_-]{{1,8000}})$"


IfMatch = Annotated[
    str | None,
    Header(description="Change (or delete) only if the resource's ETag is one of these (`*`: "
                       "any); 412 otherwise. Optional: without it the change always applies."),
]


def locked(repo: Repository, table: Any, kind: str, resource_id: str,
           if_match: str | None) -> Any:
    """The tenant's row, locked until the transaction ends, checked against ``If-Match``;
    :class:`NotFound` when there is none, ``PreconditionFailed`` when stale."""
    row = lock(repo.session, table, resource_id, repo.tenant)
    if row is None:
        raise NotFound(kind, resource_id)
    check_if_match(row, kind, if_match)
    return row


def split_tag(text: str) -> tuple[str, str | None]:
    """``key:value`` as (key, value); ``key`` as (key, None)."""
    key, colon, value = text.partition(":")
    return key, value if colon else None


@dataclass(frozen=True)
class Filters:
    """Tags and a name prefix to list by."""

    tags: tuple[tuple[str, str | None], ...]
    name_prefix: str | None

    def conditions(self, table: Any, dialect: str) -> list[Any]:
        """The SQL conditions of these filters on ``table``."""
        found = [tag_condition(table, dialect, key, value) for key, value in self.tags]
        if self.name_prefix:
            found.append(name_prefix(table, dialect, self.name_prefix))
        return found


async def filters(
    tag: Annotated[list[TagFilter] | None, Query(description=TAG_DESCRIPTION)] = None,
    name_prefix: Annotated[
        str | None,
        Query(max_length=MAX_NAME, pattern=NO_NUL,
              description="Only those whose name starts with this (case-sensitive)."),
    ] = None,
) -> Filters:
    """The tag and name filters of a listing request."""
    return Filters(tuple(split_tag(t) for t in tag or ()), name_prefix)


FiltersDep = Annotated[Filters, Depends(filters)]


async def run_query(
    found: FiltersDep,
    limit: Annotated[PageSize, Query(description=LIMIT_DESCRIPTION)] = 100,
    cursor: Annotated[
        str | None,
        Query(pattern=SEARCH_CURSOR, description="`next_cursor` of the previous page (of the "
                                                 "same `filter` and `sort`)."),
    ] = None,
    order: Annotated[
        Literal["oldest", "newest"],
        Query(description="Without `sort`: creation order, `oldest` first (the default) or "
                          "`newest` first."),
    ] = "oldest",
    filter: Annotated[
        str | None,
        Query(max_length=MAX_LENGTH,
              description="An expression of the search language, e.g. `metrics.val_loss < "
                          "0.5 AND params.optimizer.kind IN ('adam', 'sgd')` (see the "
                          "manual's Experiments chapter)."),
    ] = None,
    sort: Annotated[
        str | None,
        Query(max_length=400,
              description="Fields to sort by, comma-separated, `-` for descending, e.g. "
                          "`metrics.val_loss,-created_at`; runs without a field come last, "
                          "ties break by id."),
    ] = None,
) -> RunQuery:
    """A list of runs' paging, filters, search expression and sort."""
    return RunQuery(filter=filter, sort=sort, limit=limit, cursor=cursor,
                    newest_first=order == "newest", tags=found.tags,
                    name_prefix=found.name_prefix)


RunQueryDep = Annotated[RunQuery, Depends(run_query)]
