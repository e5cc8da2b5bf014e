"""/v1/models: create, read, predict with and delete models."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Body, Response

from service.api import views
from service.api.arrays import matrix
from service.api.bodies import OffLoopJsonRoute
from service.api.deps import JsonBody, PageDep, RuntimeDep, encode_cursor
from service.api.problems import ProblemError, responses
from service.api.schemas import (
    InitialParams,
    Model,
    ModelCreate,
    ModelPage,
    Prediction,
    PredictRequest,
    RandomInit,
)
from service.store import repo
from service.store.codec import unpack_vector
from service.store.tables import ModelRow

router = APIRouter(prefix="/v1/models", tags=["models"], route_class=OffLoopJsonRoute)

TUTORIAL_W, TUTORIAL_b = 5.0, 0.0


def _initial(spec: ModelCreate) -> tuple[np.ndarray, float]:
    if isinstance(spec.initial, InitialParams):
        if len(spec.initial.W) != spec.features:
            raise ProblemError(
                422,
                f"body.initial.W: has {len(spec.initial.W)} weights but the "
                f"model has {spec.features} feature(s)",
                [{"loc": ["body", "initial", "W"], "msg": f"expected {spec.features} weights"}],
            )
        return np.asarray(spec.initial.W, dtype=np.float64), spec.initial.b
    if isinstance(spec.initial, RandomInit):
        rng = np.random.default_rng(spec.initial.random_seed)
        return rng.standard_normal(spec.features, dtype=np.float32), 0.0
    return np.full(spec.features, TUTORIAL_W), TUTORIAL_b


@router.post(
    "",
    status_code=201,
    summary="Create a model",
    dependencies=[JsonBody],
    responses=responses(400, 413, 415, 422),
)
def create(
    runtime: RuntimeDep, response: Response, body: Annotated[ModelCreate | None, Body()] = None
) -> Model:
    """A linear model `x @ W + b`; with no `initial`, W = 5 for every feature and b = 0."""
    spec = body or ModelCreate()
    W, b = _initial(spec)
    with runtime.sessions.begin() as session:
        row = repo.create_model(
            session, kind=spec.kind, features=spec.features, W=W, b=b, name=spec.name
        )
        view = views.model(row, training=False)
    response.headers["Location"] = f"/v1/models/{view.id}"
    return view


@router.get("", summary="List models", responses=responses(422))
def list_(runtime: RuntimeDep, page: PageDep) -> ModelPage:
    """Models in creation order, a page at a time."""
    with runtime.sessions() as session:
        rows, after = repo.page(
            session, ModelRow, page.limit, page.after_seq, newest_first=page.newest_first
        )
        training = repo.training_model_ids(session, [r.id for r in rows])
        return ModelPage(
            items=[views.model(r, r.id in training) for r in rows], next_cursor=encode_cursor(after)
        )


@router.get("/{model_id}", summary="Get a model and its parameters", responses=responses(404))
def get(model_id: str, runtime: RuntimeDep) -> Model:
    """Current W and b, epochs trained, last loss and whether it is training."""
    with runtime.sessions() as session:
        row = repo.get_model(session, model_id)
        return views.model(row, repo.active_run_id(session, model_id) is not None)


@router.delete(
    "/{model_id}", status_code=204, summary="Delete a model", responses=responses(404, 409)
)
def delete(model_id: str, runtime: RuntimeDep) -> Response:
    """Delete a model with its runs and history; 409 while it trains."""
    with runtime.sessions.begin() as session:
        repo.delete_model(session, model_id)
    return Response(status_code=204)


@router.post(
    "/{model_id}/predict",
    summary="Predict with a model",
    dependencies=[JsonBody],
    responses=responses(400, 404, 413, 415, 422),
)
def predict(model_id: str, body: PredictRequest, runtime: RuntimeDep) -> Prediction:
    """`y = x @ W + b` for each row of `x` (a flat list when the model has one feature)."""
    with runtime.sessions() as session:
        row = repo.get_model(session, model_id)
        W, b = np.asarray(unpack_vector(row.W)), row.b
        features = row.features
    x = matrix(body.x, ["body", "x"], features)
    with np.errstate(all="ignore"):
        y = x @ W + b
    if not np.isfinite(y).all():
        raise ProblemError(422, "body.x: inputs this large give predictions that are not finite")
    return Prediction(y=y.tolist())
