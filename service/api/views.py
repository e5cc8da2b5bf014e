"""Stored rows as API schemas.

Stored rows are trusted: views build the schemas with ``model_construct`` (no validation),
which keeps reading long histories cheap; the answer is still serialised by its schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from fastapi import Response
from pydantic import BaseModel, TypeAdapter

from service.api.schemas.datasets import Dataset, DatasetSummary, SyntheticMade
from service.api.schemas.history import HistoryRow
from service.api.schemas.models import KIND_SCHEMAS
from service.api.schemas.runs import (
    SGD,
    Adam,
    EarlyStoppingSpec,
    FinalParams,
    Momentum,
    OptimizerSpec,
    Params,
    Regularization,
    Run,
    RunError,
    StoppedEarly,
    ValidationDataset,
    ValidationFraction,
)
from service.store import repo
from service.store.annotations import etag
from service.store.codec import unpack_params
from service.store.tables import DatasetRow, EpochRow, ModelRow, RunRow, RunStatus
from service.training import specs
from service.training.specs import RunSpec, stored_kind

_optimizer = TypeAdapter[SGD | Momentum | Adam](OptimizerSpec)
_synthetic: TypeAdapter[Any] = TypeAdapter(SyntheticMade)
MODEL_VIEWS: dict[str, Any] = {
    name: schemas.resource for name, schemas in KIND_SCHEMAS.items()
}


def arrays_json(params: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Named arrays as JSON-ready nested lists (a number for a scalar)."""
    return {name: value.tolist() for name, value in params.items()}


def v1_fields(params: Mapping[str, np.ndarray]) -> tuple[list[float] | None, float | None]:
    """The tutorial's W (a vector) and b (a number), for the kinds that have them (linear,
    2-class logistic); (None, None) for the others."""
    W, b = params.get("W"), params.get("b")
    if W is None or b is None or W.ndim != 1 or b.ndim != 0:
        return None, None
    return W.tolist(), float(b)


def _params(blob: bytes) -> dict[str, Any]:
    params = unpack_params(blob)
    W, b = v1_fields(params)
    return {"W": W, "b": b, "params": arrays_json(params)}


def dataset(row: DatasetRow) -> Dataset:
    """A dataset's public metadata."""
    synthetic = None
    if row.synthetic:
        synthetic = _synthetic.validate_python({"kind": "linear", **row.synthetic})
    return Dataset(
        id=row.id,
        name=row.name,
        num_examples=row.num_examples,
        features=row.features,
        dtype=row.dtype,
        created_at=row.created_at,
        source=row.source,  # type: ignore[arg-type]
        summary=DatasetSummary(**repo.dataset_summary(row)),
        synthetic=synthetic,
        classes=row.classes,
        description=row.description,
        tags=row.tags or {},
        etag=etag(row),
    )


def model(row: ModelRow, training: bool, params_up_to: int | None = None) -> Any:
    """A model's public view (its kind's schema); ``training`` says whether it has an active
    run. ``params`` are left out (null) for models of more than ``params_up_to``."""
    count = stored_kind(row).param_count()
    params = unpack_params(row.params) if params_up_to is None or count <= params_up_to else {}
    W, b = v1_fields(params)
    return MODEL_VIEWS[row.kind].model_construct(**{
        "id": row.id,
        "name": row.name,
        "kind": row.kind,
        **row.config,
        "W": W,
        "b": b,
        "params": arrays_json(params) if params else None,
        "param_count": count,
        "random_seed": row.random_seed,
        "class_names": row.class_names,
        "epochs_trained": row.epochs_trained,
        "last_loss": row.last_loss,
        "status": "training" if training else "idle",
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "description": row.description,
        "tags": row.tags or {},
        "etag": etag(row),
    })


def run(row: RunRow) -> Run:
    """A run's public view."""
    final = None
    if row.final_params is not None and row.final_loss is not None:
        final = FinalParams.model_construct(**_params(row.final_params), loss=row.final_loss,
                                              metrics=row.final_metrics or {})
    error = None
    if row.error_reason is not None:
        error = RunError.model_construct(
            reason=row.error_reason, detail=row.error_detail or "", epoch=row.error_epoch
        )
    stopped = None
    if row.stopped_epoch is not None and row.best_epoch is not None:
        stopped = StoppedEarly.model_construct(epoch=row.stopped_epoch,
                                                 best_epoch=row.best_epoch)
    spec = RunSpec.from_columns(row)
    validation: ValidationFraction | ValidationDataset | None = None
    if isinstance(spec.validation, specs.ValidationFraction):
        validation = ValidationFraction.model_construct(fraction=spec.validation.fraction)
    elif isinstance(spec.validation, specs.ValidationDataset):
        validation = ValidationDataset.model_construct(dataset_id=spec.validation.dataset_id)
    stopping = spec.early_stopping
    return Run.model_construct(
        id=row.id,
        name=row.name,
        model_id=row.model_id,
        dataset_id=row.dataset_id,
        status=RunStatus(row.status),
        epochs=spec.epochs,
        epochs_completed=row.epochs_completed,
        optimizer=_optimizer.validate_python(spec.optimizer),
        batch_size=spec.batch_size,
        shuffle_seed=spec.shuffle_seed,
        dtype=spec.dtype,
        loss=spec.loss,
        huber_delta=spec.huber_delta,
        regularization=Regularization.model_construct(l1=spec.regularization.l1,
                                                      l2=spec.regularization.l2),
        validation=validation,
        early_stopping=None if stopping is None else EarlyStoppingSpec.model_construct(
            monitor=stopping.monitor, patience=stopping.patience,
            min_delta=stopping.min_delta, restore_best=stopping.restore_best),
        shuffle=spec.shuffle,
        record_params=spec.record_params,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        initial=Params.model_construct(**_params(row.initial_params)),
        final=final,
        stopped_early=stopped,
        error=error,
        duration_ms=row.duration_ms,
        description=row.description,
        tags=row.tags or {},
        etag=etag(row),
    )


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
