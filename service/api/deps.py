"""Dependencies shared by the routers: the runtime, paging parameters, request checks.

They are ``async`` because they never block: FastAPI runs a plain ``def`` dependency in a
worker thread, a trip that costs more than these checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Query, Request
from pydantic import Field
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.api.bodies import BodyDecoder
from service.api.feeds import Feeds
from service.api.limits import Limit, bind_settings
from service.api.problems import ProblemError
from service.api.telemetry import Metrics
from service.config import Settings
from service.jobs.executors import Executor
from service.jobs.progress import Progress


@dataclass
class Runtime:
    """What a running app holds: settings, the store, the executor, run wake-ups, the live
    feeds of runs being streamed and the process that decodes large bodies."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    executor: Executor
    progress: Progress
    feeds: Feeds
    decoder: BodyDecoder
    metrics: Metrics


async def get_runtime(request: Request) -> Runtime:
    """The app's runtime."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def every_request(request: Request) -> None:
    """What every operation needs first, as one dependency (each costs FastAPI work on every
    request): the app's settings bound for validation, and 404 for a path id holding NUL (no
    id has one, and PostgreSQL cannot even compare it)."""
    await bind_settings(request)
    if any("\x00" in str(value) for value in request.path_params.values()):
        raise ProblemError(404, "no resource has an id containing NUL")


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


# Every string of this shape is a cursor (a creation-order position), so the spec's pattern is
# the whole rule and no well-formed cursor is refused; 18 digits stay inside a 64-bit integer.
CURSOR = r"^[0-9]{1,18}$"


def encode_cursor(seq: int | None) -> str | None:
    """The cursor for a creation-order position."""
    return None if seq is None else str(seq)


PageSize = Annotated[int, Field(ge=1), Limit("max_page_size")]


@dataclass(frozen=True)
class PageParams:
    """``limit``, the decoded ``cursor`` and the ``order`` of a list request."""

    limit: int
    after_seq: int | None
    newest_first: bool = False


async def page_params(
    limit: Annotated[PageSize, Query(description="Page size.")] = 100,
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


async def require_json(request: Request) -> None:
    """415 unless a request that carries a body says it is JSON."""
    content_type = request.headers.get("content-type", "")
    has_body = (
        request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    )
    media = content_type.split(";")[0].strip().lower()
    if (has_body or content_type) and not (media == "application/json" or media.endswith("+json")):
        raise ProblemError(
            415, f"send JSON (Content-Type: application/json), not {media or 'an untyped body'}"
        )


JsonBody = Depends(require_json)
