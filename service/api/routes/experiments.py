"""Experiments: lists of runs searched with the filter language and sorted, runs compared
across models (their settings side by side, and one metric per epoch), and names,
descriptions and tags changed by JSON Merge Patch under ``If-Match`` on datasets, models and
runs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Response

from service.api import list_answers, views
from service.api.http.auth import AUTH_ERRORS, Authorized
from service.api.http.listing import IfMatch, RunQueryDep, locked
from service.api.http.problems import responses
from service.api.http.request_checks import JsonBody
from service.api.http.runtime import RuntimeDep
from service.api.http.tenant_store import StoreDep, TenantStore
from service.api.routes.history import MAX_POINTS
from service.api.schemas.annotations import ETAG_HEADER, AnnotationsPatch
from service.api.schemas.datasets import Dataset
from service.api.schemas.experiments import (
    ComparedRun,
    ComparisonHistory,
    FinalPoint,
    MetricSeries,
    RunComparison,
)
from service.api.schemas.models import Model
from service.api.schemas.runs import Run, RunPage
from service.store import annotations as annotated
from service.store import documents
from service.store.annotations import UNSET, Patch
from service.store.codec import unpack_params
from service.store.repo import Repository
from service.store.search import compare as comparing
from service.store.search.query import RunQuery, RunSearch
from service.store.tables import DatasetRow, ModelRow, RunRow

runs_router = APIRouter(tags=["runs"], dependencies=[Authorized], responses=AUTH_ERRORS)
models_router = APIRouter(tags=["models"], dependencies=[Authorized], responses=AUTH_ERRORS)
datasets_router = APIRouter(tags=["datasets"], dependencies=[Authorized],
                            responses=AUTH_ERRORS)

MERGE_PATCH = "application/merge-patch+json"
# Paths under /v1/datasets/ of their own, which no dataset id can be.
OWN_PATHS = frozenset({"synthetic", "upload"})


async def not_an_own_path(dataset_id: str) -> None:
    """405 (with ``Allow``: POST) for ``/v1/datasets/synthetic`` and ``/upload``, before the
    body is read: those paths are not a dataset's."""
    if dataset_id in OWN_PATHS:
        raise HTTPException(405)
Ids = Annotated[
    str,
    Query(pattern=r"^[^,\x00]{1,40}(,[^,\x00]{1,40}){1,49}$",
          description="2 to 50 run ids, comma-separated, from any models."),
]


def _page(repo: Repository, query: RunQuery, max_bytes: int) -> Response:
    """A page of runs within ``max_bytes``: each run judged from its JSON without params and
    its params' stored bytes (:mod:`~service.api.list_answers`), then written a run at a
    time, its params a block at a time."""
    heads: dict[str, bytes] = {}
    costs: dict[str, int] = {}
    finals: set[str] = set()  # the runs whose view has a final (see documents.shows_final)

    def fitting(found: Sequence[tuple[RunRow, int, int]]) -> int:
        kinds = repo.model_kinds([row.model_id for row, _, _ in found])
        twice = {model_id: list_answers.writes_wb(model) for model_id, model in kinds.items()}
        for row, initial, final in found:
            if documents.shows_final(row, final > 0):
                finals.add(row.id)
            else:
                final = 0
            head = heads[row.id] = views.run_head(row, row.id in finals)
            costs[row.id] = len(head) + list_answers.params_bytes(
                initial + final, twice.get(row.model_id, True))
        return list_answers.fitting((costs[row.id] for row, _, _ in found), max_bytes)

    rows, cursor = RunSearch(repo.session, repo.tenant).runs(query, fitting)
    stored = repo.run_params([row.id for row in rows])
    order = [row.id for row in rows]

    def items() -> Iterator[Iterator[bytes]]:
        # The params are read after the runs: a run may have ended in between (its final
        # params, absent from its head, are left out: the page is the runs as first read) or
        # been deleted (left out of the page).
        for run_id in order:
            if run_id not in stored:
                continue
            initial, final = stored.pop(run_id)  # each run's params freed once written
            yield list_answers.run_parts(
                heads.pop(run_id), unpack_params(initial),
                unpack_params(final) if final is not None and run_id in finals else None)

    return list_answers.answer(list_answers.page(items(), cursor),
                               sum(costs[run_id] for run_id in order))


@runs_router.get("/v1/runs", summary="List and search runs", response_model=RunPage,
                 responses=responses(422))
def list_all(store: StoreDep, query: RunQueryDep, runtime: RuntimeDep) -> Response:
    """The tenant's runs of every model: in creation order (`order=newest`: latest first), or
    by `sort`; only those matching `filter` (the search language: fields such as
    `params.optimizer.learning_rate`, `metrics.val_loss`, `model.hidden`, `tags.team`;
    operators `= != < <= > >= IN NOT IN LIKE IS NULL` with `AND OR NOT` and parentheses), `tag`
    and `name_prefix`. A filter that does not parse, or names an unknown field, is a 422 naming
    the column. A page holds fewer runs than `limit` when their params' bytes would pass
    TAPELINE_MAX_ANSWER_BYTES; its `next_cursor` continues it."""
    with store.read() as repo:
        return _page(repo, query, runtime.settings.max_answer_bytes)


@runs_router.get("/v1/models/{model_id}/runs", summary="List a model's runs",
                 response_model=RunPage, responses=responses(404, 422))
def list_(model_id: str, store: StoreDep, query: RunQueryDep, runtime: RuntimeDep) -> Response:
    """A model's runs in creation order (or `order=newest` first), a page at a time; searched
    and sorted as `GET /v1/runs` is, and cut short by bytes as it is."""
    with store.read() as repo:
        repo.get_model(model_id)
        return _page(repo, RunQuery(**{**query.__dict__, "model_id": model_id}),
                     runtime.settings.max_answer_bytes)


def _ids(text: str) -> list[str]:
    return text.split(",")


@runs_router.get("/v1/runs/compare", summary="Compare runs", responses=responses(404, 422))
def compare(
    store: StoreDep,
    ids: Ids,
    only_diff: Annotated[bool, Query(description="Keep only the fields whose values "
                                                 "differ.")] = False,
) -> RunComparison:
    """Runs side by side, from any models: each run's model kind and config, run options,
    final metrics and tags, named as the search language names them; `differing` lists the
    fields whose values are not the same in every run (a field some runs lack differs; numbers
    compare exactly)."""
    with store.read() as repo:
        found = comparing.compare(repo.session, repo.tenant, _ids(ids))
    differing = comparing.differing(found)
    shown = differing if only_diff else comparing.fields_of(found)
    wanted = set(shown)
    return RunComparison(
        runs=[ComparedRun(id=c.run.id, name=c.run.name, status=c.run.status,  # type: ignore[arg-type]
                          model_id=c.model.id, model_name=c.model.name,
                          dataset_id=c.run.dataset_id,
                          values={k: v for k, v in c.values.items() if k in wanted})
              for c in found],
        fields=shown, differing=differing)


@runs_router.get("/v1/runs/compare/history", summary="One metric of several runs, per epoch",
                 responses=responses(404, 422))
def compare_history(
    store: StoreDep,
    ids: Ids,
    metric: Annotated[str, Query(max_length=64, pattern=r"^[a-z0-9_]+$",
                                 description="`loss` or a metric such as `val_loss`, "
                                             "`accuracy`.")] = "loss",
    max_points: Annotated[int, Query(ge=4, le=MAX_POINTS, description="At most this many "
                                     "points per run, by the same min/max buckets as "
                                     "history's `max_points`.")] = 1000,
) -> ComparisonHistory:
    """The chosen metric at the start of each epoch of each run (2 to 50, from any models),
    downsampled to `max_points` per run: for overlaying runs of different models."""
    comparing.check_metric(metric)
    series = []
    with store.read() as repo:
        runs = [repo.get_run(run_id) for run_id in _checked(_ids(ids))]
        for run in runs:
            epochs, values = comparing.metric_history(repo.session, run.id, metric, max_points)
            final = comparing.final_point(run, metric, epochs)
            series.append(MetricSeries(
                id=run.id, name=run.name, epoch=epochs, values=values,
                final=None if final is None else FinalPoint(epoch=final[0], value=final[1])))
    return ComparisonHistory(metric=metric, runs=series)


def _checked(ids: list[str]) -> list[str]:
    comparing.check_ids(ids)
    return ids


# ------------------------------------------------------------------ annotations


def _patch(body: AnnotationsPatch) -> Patch:
    given = body.model_fields_set
    return Patch(name=body.name if "name" in given else UNSET,
                 description=body.description if "description" in given else UNSET,
                 tags=body.tags if "tags" in given else UNSET)


def _patched(store: TenantStore, table: Any, kind: str, resource_id: str,
             body: AnnotationsPatch, if_match: str | None, response: Response) -> Any:
    """Lock the row, check ``If-Match``, merge the patch, and render the row."""
    with store.write() as repo:
        row = locked(repo, table, kind, resource_id, if_match)
        annotated.apply(row, _patch(body))
        repo.session.flush()
        if table is RunRow:
            view: Any = views.run(row)
        elif table is ModelRow:
            view = views.model(row, repo.active_run_id(row.id) is not None)
        else:
            view = views.dataset(row)
    response.headers["ETag"] = view.etag
    return view


PatchBody = Annotated[AnnotationsPatch, Body(media_type=MERGE_PATCH)]
PATCH_ANSWERS = {200: {"headers": ETAG_HEADER}, **responses(400, 404, 412, 413, 415, 422)}


@runs_router.patch("/v1/runs/{run_id}", summary="Rename, describe or tag a run",
                   dependencies=[JsonBody], responses=PATCH_ANSWERS)
def update(run_id: str, body: PatchBody, store: StoreDep, response: Response,
           if_match: IfMatch = None) -> Run:
    """A JSON Merge Patch (RFC 7396) of the run's `name`, `description` and `tags`: members
    left out stay, null removes (a tag, or with `tags: null` every tag). Its progress is not
    part of the ETag, so a training run can be patched with the ETag read before."""
    return _patched(store, RunRow, "run", run_id, body, if_match,  # type: ignore[no-any-return]
                    response)


@models_router.patch("/v1/models/{model_id}", summary="Rename, describe or tag a model",
                     name="update", dependencies=[JsonBody], responses=PATCH_ANSWERS)
def update_model(model_id: str, body: PatchBody, store: StoreDep, response: Response,
                 if_match: IfMatch = None) -> Model:
    """A JSON Merge Patch (RFC 7396) of the model's `name`, `description` and `tags`."""
    return _patched(store, ModelRow, "model", model_id, body, if_match, response)


@datasets_router.patch("/v1/datasets/{dataset_id}", summary="Rename, describe or tag a dataset",
                       name="update", dependencies=[Depends(not_an_own_path), JsonBody],
                       responses=PATCH_ANSWERS)
def update_dataset(dataset_id: str, body: PatchBody, store: StoreDep, response: Response,
                   if_match: IfMatch = None) -> Dataset:
    """A JSON Merge Patch (RFC 7396) of the dataset's `name`, `description` and `tags`."""
    return _patched(store, DatasetRow, "dataset", dataset_id,  # type: ignore[no-any-return]
                    body, if_match, response)
