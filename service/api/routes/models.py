"""/v1/models: create, list, read and delete models (predictions: :mod:`.predict`; files:
:mod:`.model_files`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Body, Response
from sqlalchemy.orm import defer

from service.api import list_answers, views
from service.api.http import dryrun
from service.api.http.auth import AUTH_ERRORS, Authorized
from service.api.http.large_bodies import OffLoopJsonRoute
from service.api.http.listing import FiltersDep, IfMatch, locked
from service.api.http.paging import PageDep, encode_cursor
from service.api.http.problems import responses
from service.api.http.request_checks import JsonBody
from service.api.http.runtime import RuntimeDep
from service.api.http.tenant_store import StoreDep, check_stored_bytes
from service.api.model_requests import initial_params, kind_of
from service.api.schemas.annotations import ETAG_HEADER
from service.api.schemas.models import (
    LinearModelCreate,
    Model,
    ModelCreate,
    ModelPage,
    ModelPreview,
)
from service.store.tables import ModelRow
from service.training.specs import stored_kind

router = APIRouter(prefix="/v1/models", tags=["models"], route_class=OffLoopJsonRoute,
                   dependencies=[Authorized], responses=AUTH_ERRORS)


@router.post(
    "",
    status_code=201,
    summary="Create a model",
    dependencies=[JsonBody],
    responses={**dryrun.responses(ModelPreview), **responses(400, 413, 415, 422, 429)},
)
def create(
    runtime: RuntimeDep,
    store: StoreDep,
    response: Response,
    body: Annotated[ModelCreate | None, Body()] = None,
    dry_run: dryrun.DryRun = False,
) -> Model:
    """A model of a `kind`: `linear` (`x @ W + b`; with no `initial`, W = 5 for every feature
    and b = 0, the tutorial's start), `logistic` (2 classes: a sigmoid; more: a softmax) or
    `mlp` (dense layers). Initial values may be given by name (`initial.params`)."""
    spec = body or LinearModelCreate()
    kind = kind_of(spec, runtime.settings)
    params, seed = initial_params(kind, spec.initial)
    with store.write(dry_run) as repo:
        quotas = store.quotas(repo)
        if quotas is not None:
            repo.lock_tenant()
        row = repo.create_model(kind=kind.name, config=kind.config(), params=params,
                                name=spec.name, random_seed=seed,
                                description=spec.description, tags=spec.tags)
        if quotas is not None:  # counted with the new row; raising undoes it
            check_stored_bytes(repo, quotas, f"this model ({len(row.params)} bytes of params)")
        view = views.model(row, training=False)
    if dry_run:
        return dryrun.preview(view)  # type: ignore[return-value]
    response.headers["Location"] = f"/v1/models/{view.id}"
    return view  # type: ignore[no-any-return]


@router.get("", summary="List models", response_model=ModelPage, responses=responses(422))
def list_(runtime: RuntimeDep, store: StoreDep, page: PageDep, found: FiltersDep) -> Response:
    """The tenant's models in creation order, a page at a time; `tag` and `name_prefix` keep
    those with the tags and name asked for. Params are shown for models of up to
    TAPELINE_HISTORY_PARAMS_MAX; a page holds fewer models than `limit` when their bytes would
    pass TAPELINE_MAX_ANSWER_BYTES (its `next_cursor` continues it)."""
    shown_up_to = runtime.settings.history_params_max
    training: set[str] = set()
    shown: set[str] = set()
    costs: list[int] = []

    def fitting(rows: Sequence[ModelRow]) -> int:
        """Each model judged before its params are read: its JSON without them, and what
        its params would take (:mod:`~service.api.list_answers`)."""
        training.update(repo.training_model_ids([r.id for r in rows]))
        for row in rows:
            cost = len(views.model(row, row.id in training, -1).model_dump_json())
            count = stored_kind(row).param_count()
            if count <= shown_up_to:
                shown.add(row.id)
                cost += list_answers.params_bytes(8 * count + 64 * len(stored_kind(row).shapes()),
                                                  list_answers.writes_wb(row))
            costs.append(cost)
        return list_answers.fitting(costs, runtime.settings.max_answer_bytes)

    with store.read() as repo:
        rows, after = repo.page(
            ModelRow, page.limit, page.after_seq, *found.conditions(ModelRow, repo.dialect),
            newest_first=page.newest_first, options=(defer(ModelRow.params),), fitting=fitting)
        repo.load_params([row for row in rows if row.id in shown])
    items = ([views.model(row, row.id in training, shown_up_to).model_dump_json().encode()]
             for row in rows)  # one model at a time: each holds at most a few thousand params
    return list_answers.answer(list_answers.page(items, encode_cursor(after)),
                               sum(costs[: len(rows)]))


@router.get("/{model_id}", summary="Get a model and its parameters",
            responses={200: {"headers": ETAG_HEADER}, **responses(404)})
def get(model_id: str, store: StoreDep, response: Response) -> Model:
    """Current params (W and b where the kind has them), epochs trained, last loss and whether
    it is training; `ETag` is that of its name, description and tags."""
    with store.read() as repo:
        row = repo.get_model(model_id)
        view = views.model(row, repo.active_run_id(model_id) is not None)
    response.headers["ETag"] = view.etag
    return view  # type: ignore[no-any-return]


@router.delete(
    "/{model_id}", status_code=204, summary="Delete a model", responses=responses(404, 409, 412)
)
def delete(model_id: str, store: StoreDep, if_match: IfMatch = None) -> Response:
    """Delete a model with its runs and history; 409 while it trains. With `If-Match`, only
    the version with that ETag (412 otherwise)."""
    with store.write() as repo:
        # The queue's lock first, then the row's: a run's creation takes them in this order
        # (its insert locks the model's row for its key), so taking the row first deadlocks.
        repo.lock_queue()
        locked(repo, ModelRow, "model", model_id, if_match)
        repo.delete_model(model_id)
    return Response(status_code=204)
