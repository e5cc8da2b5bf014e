"""History: per-epoch params, loss and metrics of a run, or of a model across its runs; and the
live streams of a run's epochs (every stored epoch, then new ones as they are trained, then the
run), as Server-Sent Events or JSON Lines on one path.

A page's bytes are bounded as well as its rows: each row costs a fixed part and its params
(judged from their stored size before they are read), and a page stops before the row that
would take it past ``TAPELINE_MAX_ANSWER_BYTES`` (its ``next_cursor`` continues it); a
downsampled answer keeps fewer points. Large answers are streamed as they are written."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from service.api import history_answers
from service.api.feeds import Item
from service.api.http.auth import AUTH_ERRORS, Authorized
from service.api.http.negotiation import choose
from service.api.http.paging import PageSize
from service.api.http.problems import ProblemError, responses
from service.api.http.runtime import Runtime, RuntimeDep
from service.api.http.streams import (
    JSONL,
    KEEP_ALIVE,
    OFFERS,
    SSE,
    EventStream,
    JsonLinesRoute,
    json_line,
    sse_event,
)
from service.api.http.tenant_store import StoreDep, TenantStore
from service.api.recent import Recent
from service.api.schemas.common import INT32_END, QueryInteger
from service.api.schemas.history import HistoryColumns, HistoryPage, StreamItem
from service.config import Settings
from service.store.budget import RowBudget, sizes
from service.store.repo import Repository
from service.store.tables import FINAL_STATUSES, EpochRow
from service.training.specs import stored_kind

router = APIRouter(tags=["history"], dependencies=[Authorized],
                   responses=AUTH_ERRORS)

Format = Annotated[
    Literal["rows", "columns"],
    Query(description="`rows`: a list of row objects; `columns`: one list per field."),
]
Limit = Annotated[
    PageSize | None,
    Query(description="Rows per page (by default the largest page); fewer when the rows' "
                      "bytes would pass TAPELINE_MAX_ANSWER_BYTES (`next_cursor` continues)."),
]
# A chart is at most a few thousand pixels wide; more points than this draw nothing new.
MAX_POINTS = 10_000
MaxPoints = Annotated[
    int | None,
    Query(
        ge=4,
        le=MAX_POINTS,
        description="Downsample to at most this many rows, all after `after` in one answer "
        "(`limit` does not apply): the rows are cut into `max_points // 4` equal buckets, each "
        "keeping its first, last, lowest-loss and highest-loss row, so the first and last "
        "epoch and every bucket's loss extremes are kept. Every row when they fit; fewer "
        "buckets when the rows' bytes would pass TAPELINE_MAX_ANSWER_BYTES.",
    ),
    QueryInteger,
]


# Rendered `max_points` answers about finished runs: their history never changes again.
finished_answers: Recent[bytes] = Recent(32)
# Answers up to this size are sent whole (and may be kept above); larger ones are streamed.
WHOLE_BYTES = 1 << 20
# What a history row costs an answer besides its params (numbers, ids, metrics), and the
# bytes of JSON per byte of stored params: a float64 (8 bytes) is at most 24 characters and
# a separator, with room for brackets.
ROW_BASE = 1024
JSON_PER_PARAM_BYTE = 28 / 8


def budget(repo: Repository, model_id: str, settings: Settings) -> RowBudget:
    """What the model's history rows may take of an answer, and what each costs: its W and
    b are written twice (as `params` and as the tutorial's fields) for the kinds that have
    them."""
    row = repo.get_model(model_id)
    shapes = stored_kind(row).shapes()
    twice = shapes.keys() == {"W", "b"} and len(shapes["W"]) == 1 and shapes["b"] == ()
    return RowBudget(settings.max_answer_bytes, ROW_BASE, JSON_PER_PARAM_BYTE * (1 + twice),
                     len(row.params))


def answer(rows: Sequence[EpochRow], more: bool, fmt: str, cursor_of: str,
           budget: RowBudget) -> Response:
    """A page of history: sent whole when it is small, else streamed a block at a time."""
    costs = budget.costs(sizes([None if r.params is None else len(r.params) for r in rows]))
    parts = history_answers.chunks(rows, more, fmt, cursor_of)
    if costs.sum() <= WHOLE_BYTES:
        return Response(b"".join(parts), media_type="application/json")
    return StreamingResponse(parts, media_type="application/json")


@router.get(
    "/v1/runs/{run_id}/history",
    summary="A run's per-epoch history",
    response_model=HistoryPage | HistoryColumns,
    response_description="Rows (`HistoryPage`, the default) or columns (`HistoryColumns`).",
    responses=responses(404, 422),
)
def run(
    run_id: str,
    runtime: RuntimeDep,
    store: StoreDep,
    format: Format = "rows",
    after: Annotated[
        int | None, Query(ge=-1, lt=INT32_END, description="Only epochs after this one."),
        QueryInteger,
    ] = None,
    limit: Limit = None,
    max_points: MaxPoints = None,
) -> Response:
    """The model at the start of each epoch (params; W and b where the kind has them) and the
    loss and metrics there, as the tutorial logs W, b and the loss; with `max_points`, a
    chart's worth of them."""
    settings = runtime.settings
    with store.read() as repo:
        found = repo.get_run(run_id)  # 404 unless the caller's
        finished = found.status in FINAL_STATUSES
        key = (id(store.sessions), store.caller.tenant, run_id, after, max_points, format)
        if max_points is not None and finished:
            body = finished_answers.get(key)
            if body is not None:
                return Response(body, media_type="application/json")
        bound = budget(repo, found.model_id, settings)
        if max_points is not None:
            rows, more = repo.run_history_sample(run_id, after, max_points, bound), False
        else:
            rows, more = repo.run_history(run_id, after, limit or settings.max_page_size, bound)
    page = answer(rows, more, format, "epoch", bound)
    if max_points is not None and finished and not isinstance(page, StreamingResponse):
        finished_answers.put(key, bytes(page.body))
    return page


@router.get(
    "/v1/models/{model_id}/history",
    summary="A model's history across its runs",
    response_model=HistoryPage | HistoryColumns,
    response_description="Rows (`HistoryPage`, the default) or columns (`HistoryColumns`).",
    responses=responses(404, 422),
)
def model(
    model_id: str,
    runtime: RuntimeDep,
    store: StoreDep,
    format: Format = "rows",
    after: Annotated[
        int | None, Query(ge=-1, lt=INT32_END, description="Only rows after this `step`."),
        QueryInteger,
    ] = None,
    limit: Limit = None,
    max_points: MaxPoints = None,
) -> Response:
    """Every epoch of every run of the model in order; `step` numbers them across runs. With
    `max_points`, a chart's worth of them."""
    settings = runtime.settings
    with store.read() as repo:
        bound = budget(repo, model_id, settings)  # 404 unless the caller's
        if max_points is not None:
            rows, more = repo.model_history_sample(model_id, after, max_points, bound), False
        else:
            rows, more = repo.model_history(model_id, after, limit or settings.max_page_size,
                                            bound)
    return answer(rows, more, format, "step", bound)


# ------------------------------------------------------------------ live streams

# The JSON Lines router is included first: it matches only when asked for.
jsonl_router = APIRouter(tags=["events"], route_class=JsonLinesRoute, dependencies=[Authorized],
                         responses=AUTH_ERRORS)
events_router = APIRouter(tags=["events"], dependencies=[Authorized], responses=AUTH_ERRORS)


def follow(runtime: Runtime, run_id: str, after: int,
           ping: float) -> AsyncIterator[list[Item] | None]:
    """Stored epochs after ``after``, then new ones as they land, then the final run, in
    batches; ``None`` marks ``ping`` seconds without news (a chance to send a keep-alive)."""
    return runtime.feeds.follow(run_id, after, ping)


After = Annotated[
    int | None, Query(ge=-1, lt=INT32_END, description="Start after this epoch."), QueryInteger
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
        {"$ref": "#/components/schemas/PausedEvent"},
    ],
    "discriminator": {
        "propertyName": "type",
        "mapping": {
            "epoch": "#/components/schemas/EpochEvent",
            "end": "#/components/schemas/EndEvent",
            "paused": "#/components/schemas/PausedEvent",
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


# The streams are plain byte streams of items serialised once per process (FastAPI's own
# streaming validates and serialises every item for every reader); the spec states the items.
@events_router.get(
    "/v1/runs/{run_id}/events",
    response_class=EventStream,
    status_code=200,
    summary="Stream a run's epochs live (SSE or JSON Lines)",
    responses={
        200: {
            "model": StreamItem,
            "description": "`event: epoch` per history row (`id` = epoch), then "
            "`event: end` with the final run. While the run is paused, `event: paused` "
            "with the run (no `id`) after its last epoch, and the stream stays open: the "
            "epochs follow once it is resumed. With `Accept: "
            "application/jsonl`, the same objects one per line.",
            "content": {SSE: {"itemSchema": SSE_ITEM_SCHEMA}, JSONL: {"itemSchema": ITEM_SCHEMA}},
        },
        **responses(404, 406, 422),
    },
)
async def stream(run_id: str, runtime: RuntimeDep, start: StartDep) -> EventStream:
    """Replays the stored epochs, follows new ones until the run ends, then sends the run
    (and the run, once, each time it pauses). Resumes after `Last-Event-ID` or `?after`;
    sends keep-alive comments while idle."""

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
