"""``POST /v1/models/{id}/predict``: a model's forward pass on inputs sent as JSON, as a CSV
table or as an ``.npy`` array, answered as JSON, CSV or ``.npy`` per ``Accept``, streamed. An
answer's size is known before anything is computed (a classifier answers K + 1 numbers a
row): past ``TAPELINE_MAX_ANSWER_BYTES`` the request is refused with a 413 that says how many
rows would do."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request

from service import engine as tg
from service.api.http.auth import AUTH_ERRORS, Authorized
from service.api.http.file_answers import (
    ANSWER_CONTENT,
    CSV,
    NPY,
    accepted,
    answer_bytes,
    csv_answer,
    json_answer,
    npy_answer,
    npy_response,
)
from service.api.http.file_bodies import REQUEST_BODY, FileBodyRoute, check_columns
from service.api.http.problems import ProblemError, responses
from service.api.http.request_checks import JsonBody
from service.api.http.runtime import RuntimeDep
from service.api.http.tenant_store import StoreDep
from service.api.schemas.models import ClassPrediction, Prediction, PredictRequest
from service.config import Settings
from service.files.arrays import matrix
from service.store.codec import unpack_params
from service.training.kinds import Kind, probabilities
from service.training.kinds import Model as Trainable
from service.training.specs import stored_kind

# Rows per block of a forward pass, and numbers per block of its widest layer: a block's
# float64 inputs and activations stay small (in the cache for a narrow model; 2 MB a layer
# for a wide one, never the whole batch's at once), and the engine's cost per call is small
# beside the block's.
BLOCK_ROWS = 1 << 14
BLOCK_NUMBERS = 1 << 18

router = APIRouter(prefix="/v1/models", tags=["models"], route_class=FileBodyRoute,
                   dependencies=[Authorized], responses=AUTH_ERRORS)


@router.post(
    "/{model_id}/predict",
    summary="Predict with a model",
    dependencies=[JsonBody],
    response_model=ClassPrediction | Prediction,
    responses={
        200: {"description": "Predictions as JSON, CSV or .npy (per `Accept`).",
              "content": ANSWER_CONTENT},
        **responses(400, 404, 415, 422),
        413: {"description": "The body, or the answer it asks for, is larger than the "
                             "service's limit (`TAPELINE_MAX_BODY_BYTES`, "
                             "`TAPELINE_MAX_ANSWER_BYTES`); the detail says how many rows fit.",
              "content": {"application/problem+json": {
                  "schema": {"$ref": "#/components/schemas/Problem"}}}},
    },
    openapi_extra={**REQUEST_BODY, "x-scope": "read"},  # a POST that changes nothing
)
def predict(model_id: str, body: PredictRequest, runtime: RuntimeDep, store: StoreDep,
            request: Request) -> Any:
    """The model's forward pass for each row of `x` (a flat list when the model has one
    feature): values `y` for regression; for a classifier, the most probable class `y`, each
    class's `probabilities`, and `labels` when the classes have names. The inputs may also be
    a file: CSV (`text/csv`: a header row, then the model's features in order) or `.npy`
    (`application/octet-stream`: rows of features); the answer is JSON, CSV (`y`, or `y`,
    `p_0`..`p_K-1` and `label`, text cells made safe for spreadsheets) or `.npy` (`y`, or the
    class then each probability per row) as `Accept` asks, streamed. 413 before anything is
    computed when the answer could pass `TAPELINE_MAX_ANSWER_BYTES`: the detail says how many
    rows fit in each format."""
    with store.read() as repo:
        row = repo.get_model(model_id)
        kind = stored_kind(row)
        params, names = unpack_params(row.params), row.class_names
    check_columns(request, kind.features)
    x = matrix(body.x, ["body", "x"], kind.features)
    rows, classes_k = len(x), kind.num_classes
    media = accepted(request)
    check_answer_size(media, rows, classes_k, names, runtime.settings)
    npy = None
    if media == NPY:
        npy, array = npy_answer((rows,) if classes_k is None else (rows, 1 + classes_k))
        values = array if classes_k is None else array[:, 1:]
    else:
        values = np.empty((rows,) if classes_k is None else (rows, classes_k))
    classes = None if classes_k is None else np.empty(rows, dtype=np.int64)
    if not forward(Trainable(kind, params, dtype="float64"), x, values, classes):
        raise ProblemError(422, "body.x: inputs this large give predictions that are not finite")
    if npy is not None:
        if classes is not None:
            array[:, 0] = classes
        return npy_response(model_id, npy)
    if media == CSV:
        return csv_answer(model_id, values, classes, names)
    return json_answer(values, classes, names)


def check_answer_size(media: str, rows: int, classes: int | None, names: list[str] | None,
                      settings: Settings) -> None:
    """413 when the answer ``rows`` ask for could pass ``TAPELINE_MAX_ANSWER_BYTES``, saying
    how many rows fit in each format."""
    limit = settings.max_answer_bytes
    fixed, per_row = answer_bytes(media, classes, names)
    if fixed + rows * per_row <= limit:
        return
    fit = {f: (limit - head) // row for f, (head, row) in
           ((f, answer_bytes(m, classes, names)) for f, m in
            (("JSON", "application/json"), ("CSV", CSV), (".npy", NPY)))}
    raise ProblemError(
        413, f"the answer to {rows} rows could take {fixed + rows * per_row} bytes, more than "
             f"the limit of {limit} (TAPELINE_MAX_ANSWER_BYTES): send at most {fit[_name(media)]} "
             f"rows per request ({', '.join(f'{n}: {k}' for n, k in fit.items())})")


def _name(media: str) -> str:
    return {CSV: "CSV", NPY: ".npy"}.get(media, "JSON")


def block_rows(kind: Kind) -> int:
    """Rows per block of a forward pass: :data:`BLOCK_ROWS`, fewer when its widest layer (the
    inputs, a hidden layer, or the outputs: 1,000 classes make 262 rows) would pass
    :data:`BLOCK_NUMBERS`."""
    widest = max([kind.features, *(shape[-1] for shape in kind.shapes().values() if shape)])
    return max(1, min(BLOCK_ROWS, BLOCK_NUMBERS // widest))


def forward(model: Trainable, x: np.ndarray, out: np.ndarray,
            classes: np.ndarray | None = None) -> bool:
    """The model's predictions for the rows of ``x`` (values, or each class's probability)
    written into ``out`` (and a classifier's most probable class into ``classes``), a block of
    :func:`block_rows` at a time: each block is converted to float64 as it is copied in, and
    nothing the size of the batch is made besides ``out``. Whether every value is finite."""
    classifier = model.kind.task != "regression"
    step = block_rows(model.kind)
    finite = True
    with np.errstate(all="ignore"):
        for start in range(0, len(x), step):
            outputs = model(tg.constant(x[start : start + step], dtype="float64"))
            found = (probabilities(outputs) if classifier else outputs).numpy()
            finite = finite and bool(np.isfinite(found).all())
            out[start : start + step] = found
            if classes is not None:
                classes[start : start + step] = np.argmax(found, axis=1)
    return finite
