"""Live streams of a run: every stored epoch, then new ones as they are trained, then the run.

One path, two encodings chosen by ``Accept``: Server-Sent Events (the default; resumable with
``Last-Event-ID``) and JSON Lines; the spec describes each item of both. Items come from the
process's run feeds (:mod:`service.api.feeds`): read from the store once and serialised once,
however many clients read the run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from fastapi.sse import format_sse_event
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.routing import Match
from starlette.types import Scope

from service.api import views
from service.api.auth import AUTH_ERRORS, Authorized, StoreDep, TenantStore
from service.api.deps import Runtime, RuntimeDep
from service.api.feeds import Item
from service.api.negotiation import choose
from service.api.problems import ProblemError, responses
from service.api.schemas import INT32_END, EndEvent, EpochEvent, StreamItem
from service.store.repo import NotFound, Repository
from service.store.tables import FINAL_STATUSES, RunRow

SSE, JSONL = "text/event-stream", "application/jsonl"
OFFERS = (SSE, JSONL, "application/x-ndjson")


def _accepts(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"accept":
            return str(value.decode("latin-1"))
    return None


class JsonLinesRoute(APIRoute):
    """A route that matches only requests whose ``Accept`` prefers JSON Lines."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE and choose(_accepts(scope), OFFERS) not in OFFERS[1:]:
            return Match.NONE, {}
        return match, child


router = APIRouter(tags=["events"], dependencies=[Authorized],
                   responses=AUTH_ERRORS)
jsonl_router = APIRouter(tags=["events"], route_class=JsonLinesRoute, dependencies=[Authorized],
                   responses=AUTH_ERRORS)


def read_items(
    sessions: sessionmaker[Session], run_id: str, after: int, limit: int
) -> tuple[list[Item], Item | None]:
    """Up to ``limit`` of a run's epochs after ``after`` as stream items, and the end item when
    the run is final and no epoch follows (:class:`~service.api.feeds.Read`). A feed serves
    every reader of the run in this process, so it reads as the run's own tenant; each
    reader's tenant is checked before it joins (:func:`stream_start`)."""
    with sessions() as session:
        owner = session.scalar(select(RunRow.owner).where(RunRow.id == run_id))
        if owner is None:
            raise NotFound("run", run_id)
        repo = Repository(session, owner)
        run = repo.get_run(run_id)
        rows, more = repo.run_history(run_id, after, limit)
        items = [
            Item("epoch", row.epoch, EpochEvent(**views.history_row(row).model_dump())
                 .model_dump_json())
            for row in rows
        ]
        end = None
        if run.status in FINAL_STATUSES and not more:
            end = Item("end", None, EndEvent(**views.run(run).model_dump()).model_dump_json())
        return items, end


def follow(runtime: Runtime, run_id: str, after: int,
           ping: float) -> AsyncIterator[list[Item] | None]:
    """Stored epochs after ``after``, then new ones as they land, then the final run, in
    batches; ``None`` marks ``ping`` seconds without news (a chance to send a keep-alive)."""
    return runtime.feeds.follow(run_id, after, ping)


def sse_event(item: Item) -> bytes:
    """An item as one Server-Sent Event (``id`` = its epoch)."""
    epoch = None if item.epoch is None else str(item.epoch)
    return format_sse_event(data_str=item.json, event=item.kind, id=epoch)


def json_line(item: Item) -> bytes:
    """An item as one line of JSON Lines."""
    return item.json.encode() + b"\n"


KEEP_ALIVE = format_sse_event(comment="keep-alive")


After = Annotated[
    int | None, Query(ge=-1, lt=INT32_END, description="Start after this epoch.")
]
LastEventId = Annotated[
    str | None,
    Header(
        pattern=r"^-?[0-9]{1,9}$",
        description="SSE resume: the `id` of the last event received.",
    ),
]


def _check_run(store: TenantStore, run_id: str) -> None:
    with store.read() as repo:
        repo.get_run(run_id)


async def stream_start(
    run_id: str,
    runtime: RuntimeDep,
    store: StoreDep,
    request: Request,
    after: After = None,
    last_event_id: LastEventId = None,
) -> int:
    """The epoch to stream after, checked before the response starts (404, 406, 422)."""
    if choose(request.headers.get("accept"), OFFERS) is None:
        raise ProblemError(406, f"can stream only {SSE} or {JSONL}")
    await runtime.feeds.check(store.caller.tenant, run_id, partial(_check_run, store, run_id))
    if last_event_id is not None:
        return max(int(last_event_id), -1)
    return -1 if after is None else after


StartDep = Annotated[int, Depends(stream_start)]

ITEM_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"$ref": "#/components/schemas/EpochEvent"},
        {"$ref": "#/components/schemas/EndEvent"},
    ],
    "discriminator": {
        "propertyName": "type",
        "mapping": {
            "epoch": "#/components/schemas/EpochEvent",
            "end": "#/components/schemas/EndEvent",
        },
    },
}


SSE_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": ITEM_SCHEMA},
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
    "required": ["data"],
}


class EventStream(StreamingResponse):
    """A ``text/event-stream`` answer that no proxy should buffer or cache."""

    media_type = SSE

    def __init__(self, content: AsyncIterator[bytes]) -> None:
        super().__init__(content, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# The streams are plain byte streams of items serialised once per process (FastAPI's own
# streaming validates and serialises every item for every reader); the spec states the items.
@router.get(
    "/v1/runs/{run_id}/events",
    response_class=EventStream,
    status_code=200,
    summary="Stream a run's epochs live (SSE or JSON Lines)",
    responses={
        200: {
            "model": StreamItem,
            "description": "`event: epoch` per history row (`id` = epoch), then "
            "`event: end` with the final run. With `Accept: "
            "application/jsonl`, the same objects one per line.",
            "content": {SSE: {"itemSchema": SSE_ITEM_SCHEMA}, JSONL: {"itemSchema": ITEM_SCHEMA}},
        },
        **responses(404, 406, 422),
    },
)
async def stream(run_id: str, runtime: RuntimeDep, start: StartDep) -> EventStream:
    """Replays the stored epochs, follows new ones until the run ends, then sends the run.
    Resumes after `Last-Event-ID` or `?after`; sends keep-alive comments while idle."""

    async def events() -> AsyncIterator[bytes]:
        async for batch in follow(runtime, run_id, start, runtime.settings.sse_ping_seconds):
            if batch is None:
                yield KEEP_ALIVE
            else:  # each item encoded once per process, whoever reads it
                yield b"".join(item.encoded(SSE, sse_event) for item in batch)

    return EventStream(events())


@jsonl_router.get("/v1/runs/{run_id}/events", include_in_schema=False, name="stream_jsonl")
async def stream_jsonl(run_id: str, runtime: RuntimeDep, start: StartDep) -> StreamingResponse:
    """The JSON Lines encoding of :func:`stream`."""

    async def lines() -> AsyncIterator[bytes]:
        async for batch in follow(runtime, run_id, start, ping=float("inf")):
            if batch is not None:
                yield b"".join(item.encoded(JSONL, json_line) for item in batch)

    return StreamingResponse(lines(), media_type=JSONL)


def routers() -> list[APIRouter]:
    """The JSON Lines router must come first: it matches only when asked for."""
    return [jsonl_router, router]
