"""Stored rows as API schemas.

Datasets, models and runs are the store's documents (:mod:`service.store.documents`, the one
rendering the API's answers and the events' snapshots share) validated into their schemas.
History rows are trusted: they are built with ``model_construct`` (no validation), which keeps
reading long histories cheap; the answer is still serialised by its schema.
"""

from __future__ import annotations

from typing import Any

from fastapi import Response
from pydantic import BaseModel

from service.api.schemas.datasets import Dataset
from service.api.schemas.history import HistoryRow
from service.api.schemas.models import KIND_SCHEMAS
from service.api.schemas.runs import Run
from service.store import documents
from service.store.codec import unpack_params
from service.store.documents import arrays_json, v1_fields
from service.store.tables import DatasetRow, EpochRow, ModelRow, RunRow

MODEL_VIEWS: dict[str, Any] = {
    name: schemas.resource for name, schemas in KIND_SCHEMAS.items()
}


def dataset(row: DatasetRow) -> Dataset:
    """A dataset's public metadata."""
    return Dataset.model_validate(documents.dataset(row))


def model(row: ModelRow, training: bool, params_up_to: int | None = None) -> Any:
    """A model's public view (its kind's schema); ``training`` says whether it has an active
    run. ``params`` are left out (null) for models of more than ``params_up_to``."""
    return MODEL_VIEWS[row.kind].model_validate(documents.model(row, training, params_up_to))


def run(row: RunRow) -> Run:
    """A run's public view."""
    return Run.model_validate(documents.run(row))


# What a run's answer leaves out for a page to write itself (:func:`run_head`).
RUN_PARAMS = {"W", "b", "params"}
_LEFT_OUT = {"initial": RUN_PARAMS, "final": RUN_PARAMS}


def run_head(row: RunRow, has_final: bool) -> bytes:
    """A run's JSON without its params (their stored form not read): ``"initial":{}`` and
    ``"final":{"loss":..,"metrics":..}`` (or ``null``) for a page to write them into."""
    return Run.model_validate(documents.run(row, has_final)).model_dump_json(
        exclude=_LEFT_OUT).encode()


def history_row(row: EpochRow) -> HistoryRow:
    """One epoch of history."""
    W, b, params = None, None, None
    if row.params is not None:
        arrays = unpack_params(row.params)
        W, b = v1_fields(arrays)
        params = arrays_json(arrays)
    return HistoryRow.model_construct(
        epoch=row.epoch,
        W=W,
        b=b,
        loss=row.loss,
        metrics=row.metrics,
        params=params,
        elapsed_ms=row.elapsed_ms,
        run_id=row.run_id,
        step=row.step,
    )


def rendered(model: BaseModel, status_code: int = 200) -> Response:
    """``model`` as a JSON answer, serialised by the caller (a route's worker thread, or inside
    the transaction that stored it) instead of by FastAPI on the event loop."""
    return Response(model.model_dump_json(), status_code=status_code,
                    media_type="application/json")
