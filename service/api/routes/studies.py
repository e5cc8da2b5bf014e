"""Studies: hyperparameter searches whose trials are runs: create, list, read, trials, cancel,
delete, and the study's live event stream (SSE or JSON Lines)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.sse import format_sse_event
from starlette.concurrency import run_in_threadpool

from service.api.http.auth import AUTH_ERRORS, Authorized
from service.api.http.large_bodies import OffLoopJsonRoute
from service.api.http.negotiation import choose
from service.api.http.paging import CURSOR, PageDep, PageSize, encode_cursor
from service.api.http.problems import ProblemError, responses
from service.api.http.request_checks import JsonBody
from service.api.http.runtime import RuntimeDep
from service.api.http.streams import JSONL, KEEP_ALIVE, OFFERS, SSE, EventStream, JsonLinesRoute
from service.api.http.tenant_store import StoreDep
from service.api.schemas.common import INT32_END, QueryInteger
from service.api.schemas.studies import (
    Study,
    StudyCreate,
    StudyEvent,
    StudyPage,
    StudyTrial,
    TrialPage,
)
from service.api.study_requests import prepare
from service.store import studies as stored
from service.store.annotations import etag
from service.store.studies import StudyStore
from service.store.tables import StudyRow, StudyStatus
from service.training import specs

router = APIRouter(prefix="/v1/studies", tags=["studies"], route_class=OffLoopJsonRoute,
                   dependencies=[Authorized], responses=AUTH_ERRORS)
jsonl_router = APIRouter(tags=["studies"], route_class=JsonLinesRoute,
                         dependencies=[Authorized], responses=AUTH_ERRORS)
events_router = APIRouter(tags=["studies"], dependencies=[Authorized], responses=AUTH_ERRORS)
# How often a study's stream looks for new events.
STREAM_POLL_SECONDS = 0.25


def view(session: Any, row: StudyRow) -> Study:
    """A stored study as the API answers it."""
    return Study.model_validate({**stored.document(session, row),
                                 "etag": etag(row)})  # type: ignore[arg-type]


@router.post(
    "",
    status_code=201,
    summary="Create a study (a hyperparameter search)",
    dependencies=[JsonBody],
    responses=responses(400, 404, 413, 415, 422, 429),
)
def create(body: StudyCreate, runtime: RuntimeDep, store: StoreDep, response: Response) -> Study:
    """Trials of `model` trained as `run` says on `dataset_id`, each with a point of `space`
    sampled by `sampler` (Optuna's grid, random, TPE or QMC), in batches of
    `trials_per_batch`; with `scheduler.kind: asha`, synchronous successive halving in each
    batch. Every point of the space must make a valid model and run: a path that leads
    nowhere or a value out of range is a 422 naming the space's path, and nothing is stored.
    `concurrency` is capped by the tenant's active-run quota (`concurrency.effective`)."""
    with store.write() as repo:
        dataset = repo.get_dataset(body.dataset_id)
        quotas = store.quotas(repo)

        def lookup(dataset_id: str) -> specs.DatasetMeta:
            return specs.DatasetMeta.of(repo.get_dataset(dataset_id))

        spec = prepare(body, runtime.settings, dataset, lookup,
                       None if quotas is None else quotas.max_active_runs)
        row = StudyStore(repo).create(dataset_id=dataset.id, spec=spec, name=body.name,
                                      description=body.description, tags=body.tags)
        answer = view(repo.session, row)
    runtime.studies.poke()
    response.headers["Location"] = f"/v1/studies/{answer.id}"
    response.headers["ETag"] = answer.etag
    return answer


@router.get("", summary="List studies", responses=responses(422))
def list_(store: StoreDep, page: PageDep) -> StudyPage:
    """The tenant's studies in creation order, a page at a time."""
    with store.read() as repo:
        rows, after = StudyStore(repo).page(page.limit, page.after_seq, page.newest_first)
        return StudyPage(items=[view(repo.session, r) for r in rows],
                         next_cursor=encode_cursor(after))


@router.get("/{study_id}", summary="Get a study", responses=responses(404))
def get(study_id: str, store: StoreDep, response: Response) -> Study:
    """Status, trials counted by status, the best trial so far and the epochs trained."""
    with store.read() as repo:
        answer = view(repo.session, StudyStore(repo).get(study_id))
    response.headers["ETag"] = answer.etag
    return answer


@router.get("/{study_id}/trials", summary="List a study's trials", responses=responses(404, 422))
def trials(
    study_id: str,
    store: StoreDep,
    limit: Annotated[PageSize, Query(description="Page size.")] = 100,
    cursor: Annotated[str | None, Query(pattern=CURSOR,
                                        description="`next_cursor` of the previous page.")
                      ] = None,
) -> TrialPage:
    """The study's trials in number order: each one's point, status, epochs, objective at
    each rung reached, model and run."""
    after = -1 if cursor is None else int(cursor)
    with store.read() as repo:
        rows, more = StudyStore(repo).trials_page(study_id, after, limit)
        items = [StudyTrial.model_validate(stored.trial_document(r)) for r in rows]
    return TrialPage(items=items,
                     next_cursor=str(items[-1].number) if more and items else None)


@router.post("/{study_id}/cancel", status_code=202, summary="Cancel a study",
             responses=responses(404))
def cancel(study_id: str, runtime: RuntimeDep, store: StoreDep) -> Study:
    """Stop a running study: no trial is made after this, queued trials are cancelled,
    training ones stop at their next epoch, paused ones end. An ended study is returned
    unchanged."""
    with store.write() as repo:
        row, stopping = StudyStore(repo).cancel(study_id)
        answer = view(repo.session, row)
    for run_id in stopping:
        runtime.executor.cancel(run_id)
        runtime.progress.notify_threadsafe(run_id)
    return answer


@router.delete("/{study_id}", status_code=204, summary="Delete a study",
               responses=responses(404, 409))
def delete(study_id: str, store: StoreDep) -> Response:
    """Delete an ended study with its trials' models, runs and histories; 409 while it runs
    (cancel it first)."""
    with store.write() as repo:
        StudyStore(repo).delete(study_id)
    return Response(status_code=204)


# ------------------------------------------------------------------ the event stream

After = Annotated[int | None, Query(ge=0, lt=INT32_END,
                                    description="Start after this event's `seq`."),
                  QueryInteger]
LastEventId = Annotated[str | None, Header(pattern=r"^[0-9]{1,9}$",
                                           description="SSE resume: the last `id` received.")]


def _read(store: Any, study_id: str, after: int) -> tuple[list[StudyEvent], str]:
    with store.read() as repo:
        rows, status = StudyStore(repo).events_after(study_id, after)
        return [StudyEvent(type=r.type, seq=r.seq, data=r.data) for r in rows], status


async def _start(study_id: str, store: StoreDep, request: Request, after: After = None,
                 last_event_id: LastEventId = None) -> int:
    if choose(request.headers.get("accept"), OFFERS) is None:
        raise ProblemError(406, f"can stream only {SSE} or {JSONL}")
    await run_in_threadpool(_read, store, study_id, 0)  # 404 before the answer starts
    if last_event_id is not None:
        return int(last_event_id)
    return 0 if after is None else after


async def _follow(runtime: Any, store: Any, study_id: str, after: int,
                  ping: float) -> AsyncIterator[list[StudyEvent] | None]:
    """The study's events after ``after``, then new ones as they come, ending with ``end``;
    ``None`` after ``ping`` seconds without one."""
    last = time.monotonic()
    while not runtime.progress.closed:
        events, status = await run_in_threadpool(_read, store, study_id, after)
        if events:
            after = events[-1].seq
            last = time.monotonic()
            yield events
            if events[-1].type == "end":
                return
            continue
        if status != StudyStatus.RUNNING:
            return
        if time.monotonic() - last >= ping:
            last = time.monotonic()
            yield None
        await asyncio.sleep(STREAM_POLL_SECONDS)


def _sse(event: StudyEvent) -> bytes:
    return format_sse_event(data_str=event.model_dump_json(), event=event.type,
                            id=str(event.seq))


@events_router.get(
    "/v1/studies/{study_id}/events",
    response_class=EventStream,
    status_code=200,
    summary="Stream a study's events (SSE or JSON Lines)",
    responses={200: {"model": StudyEvent,
                     "description": "One event per trial created, reported at a rung, paused, "
                                    "promoted, pruned, completed or failed, and per change of "
                                    "the best trial; `end` last. With `Accept: "
                                    "application/jsonl`, the same objects one per line.",
                     "content": {SSE: {}, JSONL: {}}},
               **responses(404, 406, 422)},
)
async def events(study_id: str, runtime: RuntimeDep, store: StoreDep, request: Request,
                 after: After = None, last_event_id: LastEventId = None) -> EventStream:
    """Replays the study's events and follows new ones until it ends. Resumes after
    `Last-Event-ID` or `?after`; sends keep-alive comments while idle."""
    start = await _start(study_id, store, request, after, last_event_id)

    async def stream() -> AsyncIterator[bytes]:
        async for batch in _follow(runtime, store, study_id, start,
                                   runtime.settings.sse_ping_seconds):
            yield KEEP_ALIVE if batch is None else b"".join(_sse(e) for e in batch)

    return EventStream(stream())


@jsonl_router.get("/v1/studies/{study_id}/events", include_in_schema=False,
                  name="events_jsonl")
async def events_jsonl(study_id: str, runtime: RuntimeDep, store: StoreDep, request: Request,
                       after: After = None) -> StreamingResponse:
    """The JSON Lines encoding of :func:`events`."""
    start = await _start(study_id, store, request, after)

    async def lines() -> AsyncIterator[bytes]:
        async for batch in _follow(runtime, store, study_id, start, float("inf")):
            if batch is not None:
                yield b"".join(json.dumps(e.model_dump(mode="json")).encode() + b"\n"
                               for e in batch)

    return StreamingResponse(lines(), media_type=JSONL)
