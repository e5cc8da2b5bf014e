"""Runs: start training a model on a dataset, read, list, cancel, pause and resume runs."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Header, Response
from starlette.concurrency import run_in_threadpool

from service.api import views
from service.api.http import dryrun
from service.api.http.auth import AUTH_ERRORS, Authorized
from service.api.http.large_bodies import OffLoopJsonRoute
from service.api.http.prefer import decimal, wait_seconds
from service.api.http.problems import ProblemError, over_quota, responses
from service.api.http.request_checks import JsonBody
from service.api.http.runtime import Runtime, RuntimeDep
from service.api.http.tenant_store import StoreDep, TenantStore, check_stored_bytes
from service.api.run_requests import run_spec
from service.api.schemas.annotations import ETAG_HEADER
from service.api.schemas.runs import (
    Run,
    RunCreate,
    RunPreview,
)
from service.jobs import executors
from service.store import lifecycle
from service.store.keys import Quotas
from service.store.repo import Repository
from service.store.tables import FINAL_STATUSES, RunStatus
from service.training import specs

router = APIRouter(tags=["runs"], route_class=OffLoopJsonRoute, dependencies=[Authorized],
                   responses=AUTH_ERRORS)


def _admit(runtime: Runtime, store: TenantStore, repo: Repository) -> Quotas | None:
    """Take the queue's lock and check that one more run may be queued (429 otherwise): the
    server's queue limit and the tenant's active-run quota; the tenant's quotas (None when
    none apply)."""
    queued = repo.lock_queue()
    if queued >= runtime.settings.max_queued_runs:
        raise ProblemError(
            429,
            f"{queued} runs are already waiting; try again later",
            headers={"Retry-After": "5"},
        )
    quotas = store.quotas(repo)
    if quotas is not None:  # counted under the queue's lock: no concurrent run slips by
        active = repo.active_runs()
        if active >= quotas.max_active_runs:
            raise over_quota(
                f"tenant {repo.tenant!r} has {active} queued or running runs, its quota "
                f"of {quotas.max_active_runs}; wait for one to end or cancel one",
                quotas.max_active_runs, active)
    return quotas


def _start(runtime: Runtime, store: TenantStore, model_id: str, body: RunCreate,
           dry_run: bool = False) -> Run:
    with store.write(dry_run) as repo:
        quotas = _admit(runtime, store, repo)
        model = repo.get_model(model_id)
        dataset = repo.get_dataset(body.dataset_id)
        spec = specs.ModelSpec.from_row(model)
        draft = run_spec(body, specs.record_params(body.record_params, spec.build().param_count(),
                                                   runtime.settings.history_params_max))
        run = specs.validate_run(
            spec, draft, specs.DatasetMeta.of(dataset), class_names=model.class_names,
            datasets=lambda dataset_id: specs.DatasetMeta.of(repo.get_dataset(dataset_id)))
        if quotas is not None:
            repo.lock_tenant()
        row = repo.create_run(model=model, dataset=dataset, stored_quota=quotas is not None,
                              **run.columns(), name=body.name, description=body.description,
                              tags=body.tags)
        if quotas is not None:  # the run's copy of the model's params counts too
            check_stored_bytes(repo, quotas, f"this run ({row.stored_bytes} bytes)")
        return views.run(row)


def read_run(store: TenantStore, run_id: str) -> Run:
    """The tenant's run as it is stored now."""
    with store.read() as repo:
        return views.run(repo.get_run(run_id))


async def wait_for_end(runtime: Runtime, store: TenantStore, run: Run, seen: int,
                       seconds: float) -> Run:
    """The run once it is final, or as it is after ``seconds``; ``run`` is how it was when the
    run's news version was ``seen``. The store is read after news that may be the end (news
    that says the run goes on is not), and each second without news."""
    deadline = time.monotonic() + seconds
    stale = False  # news came that was not read: the run changed since ``run``
    while run.status not in FINAL_STATUSES:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        await runtime.progress.wait(run.id, seen, min(remaining, 1.0))
        if runtime.progress.closed:
            break  # the service is stopping: answer with the run as it is
        version = runtime.progress.version(run.id)
        if version != seen and runtime.progress.ended(run.id) is False:
            seen, stale = version, True
            continue
        seen, stale = version, False
        run = await run_in_threadpool(read_run, store, run.id)
    if stale:
        run = await run_in_threadpool(read_run, store, run.id)
    return run


@router.post(
    "/v1/models/{model_id}/runs",
    status_code=202,
    summary="Start a training run",
    response_description="The run, queued or training; `Location` names it.",
    dependencies=[JsonBody],
    responses={
        200: {"model": Run | RunPreview,
              "description": "The run finished within `Prefer: wait`; or, for a dry run, the "
                             "run as it would be queued (`id` null; nothing stored or queued)."},
        **responses(400, 404, 409, 413, 415, 422, 429),
    },
)
async def create(
    model_id: str,
    body: RunCreate,
    runtime: RuntimeDep,
    store: StoreDep,
    response: Response,
    prefer: Annotated[
        str | None,
        Header(
            description="`wait=N`: answer 200 with the finished run if it ends within N "
            "seconds (RFC 7240; at most `TAPELINE_MAX_WAIT_SECONDS`, reported in "
            "`Preference-Applied`); other preferences are ignored",
        ),
    ] = None,
    dry_run: dryrun.DryRun = False,
) -> Run:
    """Queue a run (one active run per model; 409 otherwise). It trains as soon as a worker is
    free; watch it with `GET /v1/runs/{id}/events`. Besides the optimizer and mini-batches, a
    run may name its `loss` (the model's task decides the default), a `regularization`
    penalty on the kernels, `validation` rows (the last `fraction`, or another dataset),
    `early_stopping`, and `shuffle: false` for mini-batches in row order. A classifier needs
    labels that are class indices in [0, classes)."""
    run = await run_in_threadpool(_start, runtime, store, model_id, body, dry_run)
    if dry_run:
        return dryrun.preview(run)  # type: ignore[return-value]
    seen = runtime.progress.version(run.id)
    await run_in_threadpool(runtime.executor.submit, run.id, store.caller.tenant)
    response.headers["Location"] = f"/v1/runs/{run.id}"
    wait = wait_seconds(prefer, runtime.settings.max_wait_seconds)
    if wait is not None:
        run = await wait_for_end(runtime, store, run, seen, wait)
        response.headers["Preference-Applied"] = f"wait={decimal(wait)}"
    if run.status in FINAL_STATUSES:
        response.status_code = 200
    return run


@router.get("/v1/runs/{run_id}", summary="Get a run",
            responses={200: {"headers": ETAG_HEADER}, **responses(404)})
def get(run_id: str, store: StoreDep, response: Response) -> Run:
    """Status, progress, initial and final parameters, and the error if it did not succeed;
    `ETag` is that of its name, description and tags."""
    run = read_run(store, run_id)
    response.headers["ETag"] = run.etag
    return run


@router.post(
    "/v1/runs/{run_id}/cancel",
    status_code=202,
    summary="Cancel a run",
    response_description="The run: `cancelling`, `cancelled`, or as it ended if already final.",
    responses=responses(404),
)
def cancel(run_id: str, runtime: RuntimeDep, store: StoreDep) -> Run:
    """A queued or paused run is cancelled at once; a running one stops at its next epoch
    boundary and keeps its history. A finished run is returned unchanged."""
    with store.write() as repo:
        repo.get_run(run_id)  # 404 unless the caller's
        if lifecycle.cancel_paused(repo.session, run_id):
            repo.session.expire_all()  # the row was changed by a statement, not through it
            row = repo.get_run(run_id)
        else:
            row = repo.request_cancel(run_id)
        run = views.run(row)
    runtime.executor.cancel(run_id)
    runtime.progress.notify_threadsafe(run_id)
    return run


@router.post(
    "/v1/runs/{run_id}/pause",
    status_code=202,
    summary="Pause a run",
    response_description="The run: `paused`, or still `running` until its epoch ends.",
    responses=responses(404, 409),
)
def pause(run_id: str, runtime: RuntimeDep, store: StoreDep) -> Run:
    """A queued run is paused at once; a running one pauses at the end of the epoch it
    trains, with a checkpoint of its params, optimizer state and random stream (poll the run
    or watch its events for `paused`). A paused run holds no worker and does not count toward
    the active-run quota, but keeps its model (`training`) until it is resumed or cancelled.
    Pausing a paused run changes nothing; a finished or cancelling run cannot be paused
    (409)."""
    with store.write() as repo:
        repo.get_run(run_id)  # 404 unless the caller's
        lifecycle.request_pause(repo.session, run_id)
        repo.session.expire_all()  # the row was changed by a statement, not through it
        run = views.run(repo.get_run(run_id))
    if run.status == RunStatus.PAUSED:
        runtime.executor.cancel(run_id)  # paused while queued: no worker needs to take it
    else:
        runtime.executor.look(run_id)  # at the end of the epoch it trains now
    runtime.progress.notify_threadsafe(run_id)
    return run


@router.post(
    "/v1/runs/{run_id}/resume",
    status_code=202,
    summary="Resume a paused run",
    response_description="The run, queued again.",
    responses=responses(404, 409, 429),
)
def resume(run_id: str, runtime: RuntimeDep, store: StoreDep) -> Run:
    """The paused run is queued again and continues from its checkpoint, exactly as it would
    have had it never paused (its final params are bit for bit the same). It counts toward
    the active-run quota again (429 at the quota); a run that is not paused cannot be resumed
    (409)."""
    with store.write() as repo:
        repo.get_run(run_id)  # 404 unless the caller's
        _admit(runtime, store, repo)
        run = views.run(lifecycle.resume_run(repo.session, run_id))
    executors.submit_run(runtime.executor, run_id, store.caller.tenant)
    runtime.progress.notify_threadsafe(run_id)
    return run
