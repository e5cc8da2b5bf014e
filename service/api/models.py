"""/v1/models: create, read, predict with and delete models."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Body, Request, Response

from service import engine as tg
from service.api import batch, dryrun, views
from service.api.arrays import matrix
from service.api.auth import AUTH_ERRORS, Authorized, StoreDep
from service.api.batch import FileBodyRoute
from service.api.deps import JsonBody, PageDep, RuntimeDep, encode_cursor
from service.api.problems import ProblemError, invalid, responses
from service.api.schemas import (
    ClassPrediction,
    InitialParams,
    LinearModelCreate,
    Model,
    ModelCreate,
    ModelPage,
    ModelPreview,
    NamedInit,
    Prediction,
    PredictRequest,
    RandomInit,
)
from service.config import Settings
from service.store.codec import unpack_params
from service.store.tables import ModelRow
from service.training.kinds import Kind, make_kind, probabilities
from service.training.kinds import Model as Trainable

# Rows per forward pass of a prediction: a block's float64 inputs and activations stay small
# (in the cache for a narrow model; never the whole batch's at once), and the engine's cost
# per call is small beside the block's.
BLOCK_ROWS = 1 << 14

router = APIRouter(prefix="/v1/models", tags=["models"], route_class=FileBodyRoute,
                   dependencies=[Authorized], responses=AUTH_ERRORS)


def kind_of(spec: Any, settings: Settings) -> Kind:
    """The model kind a create request describes, checked against the size limit."""
    config = spec.model_dump(exclude={"kind", "initial", "name"})
    if spec.kind == "mlp":
        if spec.task == "regression" and spec.classes is not None:
            raise invalid(["body", "classes"], "applies to classification only")
        config["classes"] = spec.classes or 2
    kind = make_kind(spec.kind, config)
    if kind.param_count() > settings.max_params:
        raise invalid(["body", kind.size_field],
                      f"the model would have {kind.param_count()} parameters, more than the "
                      f"limit of {settings.max_params} (TAPELINE_MAX_PARAMS)")
    return kind


def initial_params(kind: Kind, initial: Any) -> tuple[dict[str, np.ndarray], int | None]:
    """The starting params a request asks for and the random seed used, if any; 422 naming
    the offending param when a name or shape is wrong."""
    shapes = kind.shapes()
    if isinstance(initial, InitialParams):
        if set(shapes) != {"W", "b"} or shapes["b"] != ():
            raise invalid(["body", "initial", "W"],
                          f"a {kind.name} model with these settings has params "
                          f"{', '.join(shapes)}: give them as initial.params")
        if len(initial.W) != kind.features:
            raise invalid(["body", "initial", "W"],
                          f"has {len(initial.W)} weights but the model has {kind.features} "
                          "feature(s)")
        return {"W": np.asarray(initial.W, dtype=np.float64), "b": np.array(initial.b)}, None
    if isinstance(initial, NamedInit):
        return initial_params_named(shapes, initial.params), None
    seed = initial.random_seed if isinstance(initial, RandomInit) else None
    if seed is None and kind.random_default:
        seed = secrets.randbits(53)
    return kind.initial(seed), seed


def initial_params_named(
    shapes: dict[str, tuple[int, ...]],
    given: dict[str, Any],
    loc: list[str | int] | None = None,
) -> dict[str, np.ndarray]:
    """Every param of ``shapes`` from ``given`` by name; 422 naming (under ``loc``) an unknown,
    missing, ragged or misshapen one."""
    loc = loc or ["body", "initial", "params"]
    for name in given:
        if name not in shapes:
            raise invalid([*loc, name],
                          f"the model has no param {name!r} (it has {', '.join(shapes)})")
    params = {}
    for name, shape in shapes.items():
        if name not in given:
            raise invalid([*loc, name], f"missing: shape {list(shape)}")
        try:
            value = np.asarray(given[name], dtype=np.float64)
        except ValueError as error:  # ragged nested lists
            raise invalid([*loc, name],
                          f"expected shape {list(shape)}, got ragged lists") from error
        if value.shape != shape:
            raise invalid([*loc, name],
                          f"expected shape {list(shape)}, got {list(value.shape)}")
        params[name] = value
    return params


@router.post(
    "",
    status_code=201,
    summary="Create a model",
    dependencies=[JsonBody],
    responses={**dryrun.responses(ModelPreview), **responses(400, 413, 415, 422)},
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
        row = repo.create_model(kind=kind.name, config=kind.config(), params=params,
                                name=spec.name, random_seed=seed)
        view = views.model(row, training=False)
    if dry_run:
        return dryrun.preview(view)  # type: ignore[return-value]
    response.headers["Location"] = f"/v1/models/{view.id}"
    return view  # type: ignore[no-any-return]


@router.get("", summary="List models", responses=responses(422))
def list_(runtime: RuntimeDep, store: StoreDep, page: PageDep) -> ModelPage:
    """The tenant's models in creation order, a page at a time."""
    with store.read() as repo:
        rows, after = repo.page(
            ModelRow, page.limit, page.after_seq, newest_first=page.newest_first
        )
        training = repo.training_model_ids([r.id for r in rows])
        limit = runtime.settings.history_params_max
        return ModelPage(items=[views.model(r, r.id in training, limit) for r in rows],
                         next_cursor=encode_cursor(after))


@router.get("/{model_id}", summary="Get a model and its parameters", responses=responses(404))
def get(model_id: str, store: StoreDep) -> Model:
    """Current params (W and b where the kind has them), epochs trained, last loss and whether
    it is training."""
    with store.read() as repo:
        row = repo.get_model(model_id)
        return views.model(row, repo.active_run_id(model_id) is not None)  # type: ignore[no-any-return]


@router.delete(
    "/{model_id}", status_code=204, summary="Delete a model", responses=responses(404, 409)
)
def delete(model_id: str, store: StoreDep) -> Response:
    """Delete a model with its runs and history; 409 while it trains."""
    with store.write() as repo:
        repo.delete_model(model_id)
    return Response(status_code=204)


@router.post(
    "/{model_id}/predict",
    summary="Predict with a model",
    dependencies=[JsonBody],
    response_model=ClassPrediction | Prediction,
    responses={
        200: {"description": "Predictions as JSON, CSV or .npy (per `Accept`).",
              "content": batch.ANSWER_CONTENT},
        **responses(400, 404, 413, 415, 422),
    },
    openapi_extra={**batch.REQUEST_BODY, "x-scope": "read"},  # a POST that changes nothing
)
def predict(model_id: str, body: PredictRequest, runtime: RuntimeDep, store: StoreDep,
            request: Request) -> Any:
    """The model's forward pass for each row of `x` (a flat list when the model has one
    feature): values `y` for regression; for a classifier, the most probable class `y`, each
    class's `probabilities`, and `labels` when the classes have names. The inputs may also be
    a file: CSV (`text/csv`: a header row, then the model's features in order) or `.npy`
    (`application/octet-stream`: rows of features); the answer is JSON, CSV (`y`, or `y`,
    `p_0`..`p_K-1` and `label`) or `.npy` (`y`, or the class then each probability per row)
    as `Accept` asks, large answers streamed."""
    with store.read() as repo:
        row = repo.get_model(model_id)
        kind = make_kind(row.kind, row.config)
        params, names = unpack_params(row.params), row.class_names
    batch.check_columns(request, kind.features)
    x = matrix(body.x, ["body", "x"], kind.features)
    rows, classes_k = len(x), kind.num_classes
    media = batch.accepted(request)
    npy = None
    if media == batch.NPY:
        npy, array = batch.npy_answer((rows,) if classes_k is None else (rows, 1 + classes_k))
        values = array if classes_k is None else array[:, 1:]
    else:
        values = np.empty((rows,) if classes_k is None else (rows, classes_k))
    forward(Trainable(kind, params, dtype="float64"), x, values)
    if not np.isfinite(values).all():
        raise ProblemError(422, "body.x: inputs this large give predictions that are not finite")
    classes = None if classes_k is None else np.argmax(values, axis=1)
    if npy is not None:
        if classes is not None:
            array[:, 0] = classes
        return batch.npy_response(model_id, npy)
    if media == batch.CSV:
        return batch.csv_answer(model_id, values, classes, names)
    if classes is None:
        return Prediction(y=values.tolist())
    return ClassPrediction(
        y=classes.tolist(),
        probabilities=values.tolist(),
        labels=[names[c] if c < len(names) else str(c) for c in classes] if names else None,
    )


def forward(model: Trainable, x: np.ndarray, out: np.ndarray) -> None:
    """The model's predictions for the rows of ``x`` (values, or each class's probability)
    written into ``out``, :data:`BLOCK_ROWS` rows at a time: each block is converted to
    float64 as it is copied in, and stays in the cache through the forward pass."""
    classifier = model.kind.task != "regression"
    with np.errstate(all="ignore"):
        for start in range(0, len(x), BLOCK_ROWS):
            outputs = model(tg.constant(x[start : start + BLOCK_ROWS], dtype="float64"))
            found = probabilities(outputs) if classifier else outputs
            out[start : start + BLOCK_ROWS] = found.numpy()
