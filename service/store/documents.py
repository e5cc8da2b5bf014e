"""Stored rows rendered as the API's resources, in JSON values: what ``GET`` answers for a
dataset, a model or a run, and what an event's snapshot holds. The one rendering of each: the
API's views validate these documents into their schemas, and the outbox stores them with the
events of the moment (so a late delivery still tells what happened then).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np

from service.store.annotations import etag
from service.store.codec import unpack_params, unpack_vector
from service.store.tables import DatasetRow, ModelRow, RunRow
from service.training.kinds import KINDS
from service.training.specs import RunSpec, stored_kind

Document = dict[str, Any]


def rfc3339(moment: datetime) -> str:
    """A UTC timestamp as the API writes it: ISO 8601 with ``Z``."""
    return moment.isoformat().replace("+00:00", "Z")


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else rfc3339(moment)


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


def _params(blob: bytes) -> Document:
    params = unpack_params(blob)
    W, b = v1_fields(params)
    return {"W": W, "b": b, "params": arrays_json(params)}


def dataset_summary(row: DatasetRow) -> Document:
    """``{"x_mean": [..], "x_std": [..], "y_mean", "y_std"}`` of a stored dataset."""
    stats = unpack_vector(row.summary)
    f = row.features
    return {
        "x_mean": stats[:f],
        "x_std": stats[f : 2 * f],
        "y_mean": stats[2 * f],
        "y_std": stats[2 * f + 1],
    }


def dataset(row: DatasetRow) -> Document:
    """A dataset's public metadata."""
    return {
        "id": row.id,
        "name": row.name,
        "num_examples": row.num_examples,
        "features": row.features,
        "dtype": row.dtype,
        "created_at": rfc3339(row.created_at),
        "summary": dataset_summary(row),
        "source": row.source,
        "synthetic": {"kind": "linear", **row.synthetic} if row.synthetic else None,
        "classes": row.classes,
        "description": row.description,
        "tags": row.tags or {},
        "etag": etag(row),
    }


def model(row: ModelRow, training: bool, params_up_to: int | None = None) -> Document:
    """A model's public view: every config field of its kind (null when its config has none:
    an MLP regressor's ``classes``); ``training`` says whether it has an active run. ``params``
    are left out (null) for models of more than ``params_up_to``."""
    count = stored_kind(row).param_count()
    params = unpack_params(row.params) if params_up_to is None or count <= params_up_to else {}
    W, b = v1_fields(params)
    return {
        "id": row.id,
        "name": row.name,
        "kind": row.kind,
        **{field.name: row.config.get(field.name) for field in KINDS[row.kind].schema.fields},
        "W": W,
        "b": b,
        "params": arrays_json(params) if params else None,
        "param_count": count,
        "random_seed": row.random_seed,
        "class_names": row.class_names,
        "epochs_trained": row.epochs_trained,
        "last_loss": row.last_loss,
        "status": "training" if training else "idle",
        "created_at": rfc3339(row.created_at),
        "updated_at": rfc3339(row.updated_at),
        "description": row.description,
        "tags": row.tags or {},
        "etag": etag(row),
    }


# A run's params left out (:func:`run` with ``has_final``): empty, for a page to write them.
NO_PARAMS: Document = {"W": None, "b": None, "params": {}}


def shows_final(row: RunRow, final_params: bool) -> bool:
    """Whether a run's view has a ``final``: it has final params (``final_params``) and a
    final loss (a NaN loss is stored as NULL by SQLite: such a run shows none)."""
    return final_params and row.final_loss is not None


def run(row: RunRow, has_final: bool | None = None) -> Document:
    """A run's public view. With ``has_final`` (whether it has final params), its params are
    left empty and not read: a page of runs writes them itself (``initial_params`` and
    ``final_params`` may be deferred then)."""
    final = None
    if has_final is None:
        initial = _params(row.initial_params)
        if row.final_params is not None and shows_final(row, True):
            final = {**_params(row.final_params), "loss": row.final_loss,
                     "metrics": row.final_metrics or {}}
    else:
        initial = NO_PARAMS
        if shows_final(row, has_final):
            final = {**NO_PARAMS, "loss": row.final_loss, "metrics": row.final_metrics or {}}
    error = None
    if row.error_reason is not None:
        error = {"reason": row.error_reason, "detail": row.error_detail or "",
                 "epoch": row.error_epoch}
    stopped = None
    if row.stopped_epoch is not None and row.best_epoch is not None:
        stopped = {"epoch": row.stopped_epoch, "best_epoch": row.best_epoch}
    spec = RunSpec.from_columns(row)
    return {
        "id": row.id,
        "name": row.name,
        "model_id": row.model_id,
        "dataset_id": row.dataset_id,
        "status": row.status,
        "epochs": spec.epochs,
        "epochs_completed": row.epochs_completed,
        "optimizer": dict(spec.optimizer),
        "batch_size": spec.batch_size,
        "shuffle_seed": spec.shuffle_seed,
        "dtype": spec.dtype,
        **spec.options(),  # loss, huber_delta, regularization, validation, early_stopping, ...
        "record_params": spec.record_params,  # ... and always record_params (options() may not)
        "created_at": rfc3339(row.created_at),
        "started_at": _when(row.started_at),
        "finished_at": _when(row.finished_at),
        "initial": initial,
        "final": final,
        "stopped_early": stopped,
        "error": error,
        "duration_ms": row.duration_ms,
        "description": row.description,
        "tags": row.tags or {},
        "etag": etag(row),
    }
