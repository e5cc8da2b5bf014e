"""The run lifecycle as the training side sees it: start a queued run, append its epochs,
finish it, settle runs a stop or crash left active, and count runs for the metrics.

These functions act for the service itself, not for a caller: they are not bound to a
tenant. Each takes an open :class:`~sqlalchemy.orm.Session`; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ClauseElement, Table, delete, func, insert, literal, select, update
from sqlalchemy.orm import Session

from service.store.codec import pack_params
from service.store.repo import NotFound, now
from service.store.tables import (
    ACTIVE_STATUSES,
    DatasetRow,
    EpochRow,
    ModelRow,
    RunRow,
    RunStatus,
)
from service.training.records import EpochRecord, Outcome

EPOCHS: Table = EpochRow.__table__  # type: ignore[assignment]
RUNS: Table = RunRow.__table__  # type: ignore[assignment]
MODELS: Table = ModelRow.__table__  # type: ignore[assignment]


def _typed(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """An UPDATE's values as binds of their columns' types. A plain value becomes a bind of a
    new NullType, whose cache key SQLAlchemy derives afresh on every statement by inspecting
    the type's constructors; a column's own type computes it once. (With Core tables, not the
    ORM's bulk UPDATE path, which rebuilds each value's bind.)"""
    return {name: value if isinstance(value, ClauseElement)
            else literal(value, table.c[name].type) for name, value in values.items()}


def queued_run_ids(session: Session) -> list[str]:
    """Ids of every queued run, oldest first."""
    return list(
        session.scalars(
            select(RunRow.id).where(RunRow.status == RunStatus.QUEUED).order_by(RunRow.seq)
        )
    )


@dataclass(frozen=True)
class Started:
    """A run that has just started, with its model's kind and config."""

    run: RunRow
    kind: str
    config: dict[str, Any]


def start_run(session: Session, run_id: str) -> Started | None:
    """Mark a queued run running, taking its initial parameters and history position from its
    model now; ``None`` if it is no longer queued (cancelled meanwhile). One atomic UPDATE,
    which also returns the model's kind and config."""
    of_model = ModelRow.id == RunRow.model_id
    started = (
        update(RunRow)
        .where(RunRow.id == run_id, RunRow.status == RunStatus.QUEUED)
        .values(_typed(RUNS, {
            "status": RunStatus.RUNNING,
            "started_at": now(),
            "history_base": select(ModelRow.history_rows).where(of_model).scalar_subquery(),
            "initial_params": select(ModelRow.params).where(of_model).scalar_subquery(),
        }))
        .returning(
            RunRow,
            select(ModelRow.kind).where(of_model).scalar_subquery(),
            select(ModelRow.config).where(of_model).scalar_subquery(),
        )
        .execution_options(synchronize_session=False)
    )
    found = session.execute(started).one_or_none()
    return None if found is None else Started(found[0], found[1], found[2])


def run_status(session: Session, run_id: str) -> str | None:
    """The run's current status (``None`` if it was deleted)."""
    return session.scalar(select(RunRow.status).where(RunRow.id == run_id))


def append_epochs(session: Session, run: RunRow, records: Sequence[EpochRecord],
                  *, count: bool = True) -> None:
    """Add history rows to a run and count them as completed epochs (a Core INSERT: the
    rows need none of the ORM's bookkeeping); ``count=False`` leaves the count to the
    caller (:func:`finish_run` sets it in the same transaction)."""
    if not records:
        return
    session.execute(
        insert(EPOCHS),
        [
            {
                "run_id": run.id,
                "epoch": r.epoch,
                "model_id": run.model_id,
                "step": run.history_base + r.epoch,
                "params": None if r.params is None else pack_params(r.params),
                "loss": r.loss,
                "metrics": r.metrics,
                "elapsed_ms": r.elapsed_ms,
            }
            for r in records
        ],
    )
    if count:
        session.execute(
            update(RUNS).where(RUNS.c.id == run.id)
            .values(_typed(RUNS, {"epochs_completed": records[-1].epoch + 1}))
        )


def finish_run(
    session: Session,
    run_id: str,
    status: str,
    *,
    final: Outcome | None = None,
    error: tuple[str, str, int | None] | None = None,
    completed: int | None = None,
) -> None:
    """End a run; a succeeded run's final params and loss become its model's (with the class
    names of its dataset, if its labels had names). ``completed`` is the number of history
    rows the run has (counted when not given)."""
    found = session.execute(
        select(RunRow.model_id, RunRow.history_base, DatasetRow.classes)
        .outerjoin(DatasetRow, DatasetRow.id == RunRow.dataset_id)
        .where(RunRow.id == run_id)
    ).one_or_none()
    if found is None:
        raise NotFound("run", run_id)
    if completed is None:
        completed = session.scalar(select(func.count()).where(EpochRow.run_id == run_id)) or 0
    stamp = now()
    run: dict[str, Any] = {"status": status, "finished_at": stamp, "epochs_completed": completed}
    model: dict[str, Any] = {"history_rows": found.history_base + completed, "updated_at": stamp}
    if final is not None:
        params = pack_params(final.params)
        run |= {"final_params": params, "final_loss": final.loss, "final_metrics": final.metrics}
        if final.stopped_early is not None:
            run |= {"stopped_epoch": final.stopped_early.epoch,
                    "best_epoch": final.stopped_early.best_epoch}
        if status == RunStatus.SUCCEEDED:
            model |= {
                "params": params,
                "last_loss": final.loss,
                "epochs_trained": MODELS.c.epochs_trained + completed,
            }
            if found.classes is not None:
                model["class_names"] = found.classes
    if error is not None:
        run |= {"error_reason": error[0], "error_detail": error[1], "error_epoch": error[2]}
    session.execute(update(RUNS).where(RUNS.c.id == run_id).values(_typed(RUNS, run)))
    session.execute(update(MODELS).where(MODELS.c.id == found.model_id)
                    .values(_typed(MODELS, model)))


def resolve_interrupted(
    session: Session, policy: str, only: Sequence[str] | None = None
) -> list[str]:
    """Active runs that a stop or crash interrupted (all of them, or ``only`` these): fail them
    (``fail``), or re-queue them from scratch (``requeue``); returns the re-queued ids."""
    query = select(RunRow).where(RunRow.status.in_(ACTIVE_STATUSES)).order_by(RunRow.seq)
    if only is not None:
        query = query.where(RunRow.id.in_(only))
    rows = session.scalars(query).all()
    requeued: list[str] = []
    for row in rows:
        if policy == "requeue" and row.status != RunStatus.CANCELLING:
            session.execute(delete(EpochRow).where(EpochRow.run_id == row.id))
            row.status, row.started_at, row.epochs_completed = RunStatus.QUEUED, None, 0
            requeued.append(row.id)
        else:
            finish_run(
                session,
                row.id,
                RunStatus.FAILED if row.status != RunStatus.CANCELLING else RunStatus.CANCELLED,
                error=(
                    "interrupted",
                    "the service stopped while this run was active",
                    row.epochs_completed,
                ),
            )
    session.flush()
    return requeued


def count_runs_by_status(session: Session) -> dict[str, int]:
    """How many runs are in each status."""
    return dict(session.execute(select(RunRow.status, func.count()).group_by(RunRow.status)).all())
