"""Repository functions: every read and write of datasets, models, runs and history that the
API makes (the training side's writes are in ``lifecycle``).

Each function takes an open :class:`~sqlalchemy.orm.Session`; the caller owns the
transaction. Errors the API must report are :class:`NotFound` and :class:`Conflict`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import chain
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import delete, false, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.store import blobs
from service.store.codec import (
    pack_params,
    pack_vector,
    unpack_array,
    unpack_vector,
)
from service.store.sampling import minmax_rows
from service.store.tables import (
    ACTIVE_STATUSES,
    DatasetRow,
    EpochRow,
    ModelRow,
    RunRow,
    RunStatus,
)

Row = TypeVar("Row", DatasetRow, ModelRow, RunRow)


class NotFound(LookupError):
    """No resource of this kind has that id."""

    def __init__(self, kind: str, resource_id: str) -> None:
        super().__init__(f"no {kind} with id {resource_id!r}")
        self.kind = kind
        self.resource_id = resource_id


class Conflict(RuntimeError):
    """The request clashes with the resource's current state."""


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """An opaque, unguessable id such as ``ds_3kq9...``."""
    return f"{prefix}_{secrets.token_hex(10)}"


# ---------------------------------------------------------------- datasets


def _summary(x: np.ndarray, y: np.ndarray) -> bytes:
    stats = np.concatenate(
        [
            x.mean(axis=0, dtype=np.float64),
            x.std(axis=0, dtype=np.float64),
            [y.mean(dtype=np.float64), y.std(dtype=np.float64)],
        ]
    )
    return pack_vector(stats)


def dataset_summary(row: DatasetRow) -> dict[str, Any]:
    """``{"x_mean": [..], "x_std": [..], "y_mean", "y_std"}`` of a stored dataset."""
    stats = unpack_vector(row.summary)
    f = row.features
    return {
        "x_mean": stats[:f],
        "x_std": stats[f : 2 * f],
        "y_mean": stats[2 * f],
        "y_std": stats[2 * f + 1],
    }


def create_dataset(
    session: Session,
    *,
    x: np.ndarray,
    y: np.ndarray,
    source: str,
    name: str | None = None,
    synthetic: dict[str, Any] | None = None,
    classes: list[str] | None = None,
) -> DatasetRow:
    """Store a dataset; ``x`` is (examples, features), ``y`` is (examples,): values, or class
    indices into ``classes`` when the labels had names."""
    row = DatasetRow(
        id=new_id("ds"),
        name=name,
        source=source,
        num_examples=int(x.shape[0]),
        features=int(x.shape[1]),
        dtype=str(x.dtype),
        x=blobs.value(session, x),
        y=blobs.value(session, y),
        summary=_summary(x, y),
        synthetic=synthetic,
        classes=classes,
        y_min=float(y.min()),
        y_max=float(y.max()),
        y_integral=bool(np.all(y == np.round(y))),
        created_at=now(),
    )
    session.add(row)
    session.flush()
    blobs.write(session, DatasetRow, row.id, {"x": x, "y": y})
    return row


def _by_id(session: Session, table: type[Row], kind: str, resource_id: str) -> Row:
    row = session.scalar(select(table).where(table.id == resource_id))  # type: ignore[attr-defined]
    if row is None:
        raise NotFound(kind, resource_id)
    return row


def get_dataset(session: Session, dataset_id: str) -> DatasetRow:
    """The dataset with this id, or :class:`NotFound`."""
    return _by_id(session, DatasetRow, "dataset", dataset_id)


def load_arrays(session: Session, dataset_id: str) -> tuple[np.ndarray, np.ndarray]:
    """A dataset's ``x`` and ``y`` arrays, in one query."""
    found = session.execute(
        select(DatasetRow.x, DatasetRow.y).where(DatasetRow.id == dataset_id)
    ).one_or_none()
    if found is None:
        raise NotFound("dataset", dataset_id)
    return unpack_array(found.x), unpack_array(found.y)


def delete_dataset(session: Session, dataset_id: str) -> None:
    """Delete a dataset, or :class:`Conflict` while an active run uses it (to train or to
    validate)."""
    row = get_dataset(session, dataset_id)
    uses = (RunRow.dataset_id == dataset_id) | (RunRow.validation_dataset_id == dataset_id)
    busy = session.scalar(
        select(RunRow.id).where(uses, RunRow.status.in_(ACTIVE_STATUSES)).limit(1)
    )
    if busy is not None:
        raise Conflict(f"dataset {dataset_id!r} is in use by active run {busy!r}")
    session.delete(row)


def page(
    session: Session,
    table: type[Any],
    limit: int,
    after_seq: int | None,
    *where: Any,
    newest_first: bool = False,
) -> tuple[Sequence[Any], int | None]:
    """One page of ``table`` in creation order (or newest first) and the ``seq`` to continue
    after, if any."""
    order = table.seq.desc() if newest_first else table.seq
    query = select(table).where(*where).order_by(order).limit(limit + 1)
    if after_seq is not None:
        query = query.where(table.seq < after_seq if newest_first else table.seq > after_seq)
    rows = session.scalars(query).all()
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].seq
    return rows, None


# ------------------------------------------------------------------ models


def create_model(
    session: Session,
    *,
    kind: str,
    config: dict[str, Any],
    params: dict[str, np.ndarray],
    name: str | None,
    random_seed: int | None = None,
) -> ModelRow:
    """Store a new model: its kind, the kind's config and its initial parameters."""
    stamp = now()
    row = ModelRow(
        id=new_id("mdl"),
        name=name,
        kind=kind,
        features=config["features"],
        config=config,
        params=pack_params(params),
        random_seed=random_seed,
        epochs_trained=0,
        history_rows=0,
        last_loss=None,
        created_at=stamp,
        updated_at=stamp,
    )
    session.add(row)
    session.flush()
    return row


def get_model(session: Session, model_id: str) -> ModelRow:
    """The model with this id, or :class:`NotFound`."""
    return _by_id(session, ModelRow, "model", model_id)


def active_run_id(session: Session, model_id: str) -> str | None:
    """The id of the model's queued, running or cancelling run, if it has one."""
    return session.scalar(
        select(RunRow.id).where(RunRow.model_id == model_id, RunRow.status.in_(ACTIVE_STATUSES))
    )


def training_model_ids(session: Session, model_ids: Sequence[str]) -> set[str]:
    """Which of these models have an active run."""
    if not model_ids:
        return set()
    return set(
        session.scalars(
            select(RunRow.model_id).where(
                RunRow.model_id.in_(model_ids), RunRow.status.in_(ACTIVE_STATUSES)
            )
        )
    )


def delete_model(session: Session, model_id: str) -> None:
    """Delete a model with its runs and history, or :class:`Conflict` while it trains."""
    row = get_model(session, model_id)
    active = active_run_id(session, model_id)
    if active is not None:
        raise Conflict(f"model {model_id!r} is training (run {active!r})")
    session.execute(delete(EpochRow).where(EpochRow.model_id == model_id))
    session.execute(delete(RunRow).where(RunRow.model_id == model_id))
    session.delete(row)


# -------------------------------------------------------------------- runs


def create_run(
    session: Session,
    *,
    model: ModelRow,
    dataset: DatasetRow,
    epochs: int,
    optimizer: dict[str, Any],
    batch_size: int | None,
    shuffle_seed: int | None,
    dtype: str,
    options: dict[str, Any],
    record_params: bool = True,
    validation_dataset_id: str | None = None,
) -> RunRow:
    """Queue a run of ``model`` on ``dataset``; :class:`Conflict` if the model has one active.
    ``options`` are the run's loss, penalty, validation, early stopping and shuffling."""
    active = active_run_id(session, model.id)
    if active is not None:
        raise Conflict(f"model {model.id!r} already has an active run {active!r}")
    row = RunRow(
        id=new_id("run"),
        model_id=model.id,
        dataset_id=dataset.id,
        validation_dataset_id=validation_dataset_id,
        status=RunStatus.QUEUED,
        epochs=epochs,
        epochs_completed=0,
        optimizer=optimizer,
        batch_size=batch_size,
        shuffle_seed=shuffle_seed,
        dtype=dtype,
        options=options,
        record_params=record_params,
        history_base=model.history_rows,
        initial_params=model.params,
        created_at=now(),
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError as error:  # lost a race against another request for this model
        session.rollback()
        raise Conflict(f"model {model.id!r} already has an active run") from error
    return row


# The PostgreSQL advisory lock that serialises queueing runs (any fixed number: "tape").
QUEUE_LOCK = 0x74617065


def lock_queue(session: Session) -> int:
    """How many runs are queued, counted under a lock the transaction holds until it ends, so
    no other transaction (in any process) queues a run between this count and the caller's
    own: an advisory lock on PostgreSQL, the database's write lock on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(QUEUE_LOCK)))
    else:  # a write that changes nothing takes SQLite's one write lock at once
        session.execute(
            update(RunRow)
            .where(false())
            .values(status=RunRow.status)
            .execution_options(synchronize_session=False)
        )
    return session.scalar(select(func.count()).where(RunRow.status == "queued")) or 0


def get_run(session: Session, run_id: str) -> RunRow:
    """The run with this id, or :class:`NotFound`."""
    return _by_id(session, RunRow, "run", run_id)


def request_cancel(session: Session, run_id: str) -> RunRow:
    """Ask a run to stop: a queued run is cancelled at once, a running one becomes cancelling."""
    row = get_run(session, run_id)
    if row.status == RunStatus.QUEUED:
        row.status = RunStatus.CANCELLED
        row.finished_at = now()
        row.error_reason, row.error_detail = "cancelled", "cancelled before it started"
    elif row.status == RunStatus.RUNNING:
        row.status = RunStatus.CANCELLING
    session.flush()
    return row


# ----------------------------------------------------------------- history


def run_history(
    session: Session, run_id: str, after: int | None, limit: int
) -> tuple[Sequence[EpochRow], bool]:
    """A run's history rows with ``epoch > after``, and whether more follow."""
    query = select(EpochRow).where(EpochRow.run_id == run_id)
    if after is not None:
        query = query.where(EpochRow.epoch > after)
    rows = session.scalars(query.order_by(EpochRow.epoch).limit(limit + 1)).all()
    return rows[:limit], len(rows) > limit


def model_history(
    session: Session, model_id: str, after: int | None, limit: int
) -> tuple[Sequence[EpochRow], bool]:
    """Every run's history of a model in order, rows with ``step > after``, and whether more
    follow."""
    query = select(EpochRow).where(EpochRow.model_id == model_id)
    if after is not None:
        query = query.where(EpochRow.step > after)
    rows = session.scalars(query.order_by(EpochRow.step).limit(limit + 1)).all()
    return rows[:limit], len(rows) > limit


def _fetch_raw(session: Session, query: Any) -> list[Any]:
    """Every row of ``query`` as the driver's plain tuples: 100,000 rows come back in a third
    of the time SQLAlchemy's result rows take (what min/max downsampling reads)."""
    connection = session.connection()
    compiled = query.compile(dialect=connection.dialect)
    params = compiled.construct_params()
    arguments = tuple(params[n] for n in compiled.positiontup) if compiled.positional else params
    cursor = connection.connection.cursor()
    try:
        cursor.execute(str(compiled), arguments)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _sampled_history(
    session: Session, where: Any, key: Any, after: int | None, max_points: int
) -> Sequence[EpochRow]:
    """History rows after ``after`` reduced to at most ``max_points`` by min/max buckets of the
    loss: one scan of (key, loss), then the chosen rows only."""
    query = select(key, EpochRow.loss).where(where).order_by(key)
    if after is not None:
        query = query.where(key > after)
    scanned = _fetch_raw(session, query)
    if not scanned:
        return []
    pairs = np.fromiter(chain.from_iterable(scanned), np.float64, 2 * len(scanned))
    keys, losses = pairs[0::2], pairs[1::2]
    chosen = keys[minmax_rows(losses, max_points)].astype(np.int64).tolist()
    return session.scalars(select(EpochRow).where(where, key.in_(chosen)).order_by(key)).all()


def run_history_sample(
    session: Session, run_id: str, after: int | None, max_points: int
) -> Sequence[EpochRow]:
    """A run's history after ``after`` in at most ``max_points`` rows, keeping the first and
    last epoch and the loss's extremes (``sampling.minmax_rows``)."""
    return _sampled_history(session, EpochRow.run_id == run_id, EpochRow.epoch, after, max_points)


def model_history_sample(
    session: Session, model_id: str, after: int | None, max_points: int
) -> Sequence[EpochRow]:
    """A model's history (every run, by ``step``) after ``after`` in at most ``max_points``
    rows, as :func:`run_history_sample` reduces a run's."""
    return _sampled_history(
        session, EpochRow.model_id == model_id, EpochRow.step, after, max_points
    )


def producing_run_id(session: Session, model_id: str) -> str | None:
    """The run whose final params the model holds now: its latest succeeded run, if any."""
    return session.scalar(
        select(RunRow.id)
        .where(RunRow.model_id == model_id, RunRow.status == RunStatus.SUCCEEDED)
        .order_by(RunRow.seq.desc())
        .limit(1)
    )
