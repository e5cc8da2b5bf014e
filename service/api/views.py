"""Stored rows as API schemas."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import Response
from pydantic import BaseModel, TypeAdapter

from service.api import schemas as s
from service.store import repo
from service.store.codec import unpack_vector
from service.store.tables import DatasetRow, EpochRow, ModelRow, RunRow

_optimizer = TypeAdapter[s.SGD | s.Momentum | s.Adam](s.OptimizerSpec)


def dataset(row: DatasetRow) -> s.Dataset:
    """A dataset's public metadata."""
    return s.Dataset(
        id=row.id,
        name=row.name,
        num_examples=row.num_examples,
        features=row.features,
        dtype=row.dtype,
        created_at=row.created_at,
        source=row.source,  # type: ignore[arg-type]
        summary=s.DatasetSummary(**repo.dataset_summary(row)),
        synthetic=s.SyntheticParams(**row.synthetic) if row.synthetic else None,
    )


def model(row: ModelRow, training: bool) -> s.Model:
    """A model's public view; ``training`` says whether it has an active run."""
    return s.Model(
        id=row.id,
        name=row.name,
        kind="linear",
        features=row.features,
        W=unpack_vector(row.W),
        b=row.b,
        epochs_trained=row.epochs_trained,
        last_loss=row.last_loss,
        status="training" if training else "idle",
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def run(row: RunRow) -> s.Run:
    """A run's public view."""
    final = None
    if row.final_W is not None and row.final_b is not None and row.final_loss is not None:
        final = s.FinalParams(W=unpack_vector(row.final_W), b=row.final_b, loss=row.final_loss)
    error = None
    if row.error_reason is not None:
        error = s.RunError(
            reason=row.error_reason, detail=row.error_detail or "", epoch=row.error_epoch
        )
    return s.Run(
        id=row.id,
        model_id=row.model_id,
        dataset_id=row.dataset_id,
        status=row.status,  # type: ignore[arg-type]
        epochs=row.epochs,
        epochs_completed=row.epochs_completed,
        optimizer=_optimizer.validate_python(row.optimizer),
        batch_size=row.batch_size,
        shuffle_seed=row.shuffle_seed,
        dtype=row.dtype,  # type: ignore[arg-type]
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        initial=s.Params(W=unpack_vector(row.initial_W), b=row.initial_b),
        final=final,
        error=error,
    )


def history_row(row: EpochRow) -> s.HistoryRow:
    """One epoch of history."""
    return s.HistoryRow(
        epoch=row.epoch,
        W=unpack_vector(row.W),
        b=row.b,
        loss=row.loss,
        elapsed_ms=row.elapsed_ms,
        run_id=row.run_id,
        step=row.step,
    )


def history(
    rows: Sequence[EpochRow], more: bool, fmt: str, cursor_of: str
) -> s.HistoryPage | s.HistoryColumns:
    """A page of history as rows or columns; the cursor is the last row's ``epoch`` or
    ``step`` (``cursor_of``)."""
    next_cursor = str(getattr(rows[-1], cursor_of)) if more and rows else None
    if fmt == "columns":
        return s.HistoryColumns(
            epoch=[r.epoch for r in rows],
            W=[unpack_vector(r.W) for r in rows],
            b=[r.b for r in rows],
            loss=[r.loss for r in rows],
            elapsed_ms=[r.elapsed_ms for r in rows],
            run_id=[r.run_id for r in rows],
            step=[r.step for r in rows],
            next_cursor=next_cursor,
        )
    return s.HistoryPage(items=[history_row(r) for r in rows], next_cursor=next_cursor)


def rendered(model: BaseModel) -> Response:
    """``model`` as a JSON answer, serialised by the caller (a route's worker thread) instead of
    by FastAPI on the event loop: a page of history can hold a million numbers."""
    return Response(model.model_dump_json(), media_type="application/json")
