"""Paging of list endpoints: the ``limit``, ``cursor`` and ``order`` query parameters, and the
cursor of the next page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Query
from pydantic import Field

from service.api.schemas.common import QueryInteger
from service.api.schemas.limits import Limit

# Every string of this shape is a cursor (a creation-order position), so the spec's pattern is
# the whole rule and no well-formed cursor is refused; 18 digits stay inside a 64-bit integer.
CURSOR = r"^[0-9]{1,18}$"


def encode_cursor(seq: int | None) -> str | None:
    """The cursor for a creation-order position."""
    return None if seq is None else str(seq)


LIMIT_DESCRIPTION = (
    "Most items per page. A page holds fewer when their JSON would pass "
    "TAPELINE_MAX_ANSWER_BYTES (each item judged before it is written; one item at least); "
    "its `next_cursor` then continues after the last item it holds."
)
PageSize = Annotated[int, Field(ge=1), Limit("max_page_size"), QueryInteger]


@dataclass(frozen=True)
class PageParams:
    """``limit``, the decoded ``cursor`` and the ``order`` of a list request."""

    limit: int
    after_seq: int | None
    newest_first: bool = False


async def page_params(
    limit: Annotated[PageSize, Query(description=LIMIT_DESCRIPTION)] = 100,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR, description="`next_cursor` of the previous page."),
    ] = None,
    order: Annotated[
        Literal["oldest", "newest"],
        Query(description="Creation order: `oldest` first (the default) or `newest` first."),
    ] = "oldest",
) -> PageParams:
    """Paging parameters of list endpoints."""
    return PageParams(limit, None if cursor is None else int(cursor), order == "newest")


PageDep = Annotated[PageParams, Depends(page_params)]
