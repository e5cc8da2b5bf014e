"""Dependencies shared by the routers: the runtime, a database session, paging parameters."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.api.problems import ProblemError
from service.api.schemas import LIMITS
from service.api.telemetry import Metrics
from service.config import Settings
from service.jobs.executor import ProcessExecutor
from service.jobs.progress import Progress


@dataclass
class Runtime:
    """What a running app holds: settings, the store, the executor and run wake-ups."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    executor: ProcessExecutor
    progress: Progress
    metrics: Metrics


def get_runtime(request: Request) -> Runtime:
    """The app's runtime."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_session(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Iterator[Session]:
    """A session for one request, committed when the request's work succeeds."""
    with runtime.sessions.begin() as session:
        yield session


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SessionDep = Annotated[Session, Depends(get_session)]


def encode_cursor(seq: int | None) -> str | None:
    """An opaque cursor for a creation-order position."""
    if seq is None:
        return None
    return base64.urlsafe_b64encode(f"s{seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("s"):
            raise ValueError(text)
        return int(text[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise ProblemError(
            422,
            "cursor: not a cursor this service handed out",
            [{"loc": ["query", "cursor"], "msg": "invalid cursor"}],
        ) from error


@dataclass(frozen=True)
class PageParams:
    """``limit`` and the decoded ``cursor`` of a list request."""

    limit: int
    after_seq: int | None


def page_params(
    limit: Annotated[int, Query(ge=1, le=LIMITS.max_page_size, description="Page size.")] = 100,
    cursor: Annotated[
        str | None, Query(max_length=64, description="`next_cursor` of the previous page.")
    ] = None,
) -> PageParams:
    """Paging parameters of list endpoints."""
    return PageParams(limit, _decode_cursor(cursor))


PageDep = Annotated[PageParams, Depends(page_params)]


def require_json(request: Request) -> None:
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
