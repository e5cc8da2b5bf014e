"""The repository: every read and write of datasets, models, runs and history that the API
makes, bound to one tenant (the training side's writes are in ``lifecycle``).

A :class:`Repository` holds an open :class:`~sqlalchemy.orm.Session` (the caller owns the
transaction) and the tenant it acts for; every query it makes filters by that tenant in SQL,
so another tenant's id is exactly as unknown as an id that does not exist. Errors the API
must report are :class:`NotFound` and :class:`Conflict`. Each create and delete (and the
cancel of a queued run) writes its event to the outbox in the same transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import chain
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import bindparam, delete, exists, false, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer
from sqlalchemy.orm.attributes import set_committed_value

from service.store import blobs, documents, outbox, usage
from service.store.budget import RowBudget, sizes
from service.store.codec import (
    npy_parts,
    pack_params,
    pack_vector,
    unpack_array,
)
from service.store.sampling import minmax_rows
from service.store.tables import (
    ACTIVE_STATUSES,
    OPEN_STATUSES,
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


def load_arrays(session: Session, dataset_id: str) -> tuple[np.ndarray, np.ndarray]:
    """A dataset's ``x`` and ``y`` arrays, in one query, whoever owns it: for the training
    side, which runs what the API (bound to the run's tenant) queued."""
    found = session.execute(_ANY_ARRAYS, {"id": dataset_id}).one_or_none()
    if found is None:
        raise NotFound("dataset", dataset_id)
    return unpack_array(found.x), unpack_array(found.y)


def epochs_trained(session: Session) -> int:
    """Epochs trained by every run of every tenant (what the metrics report)."""
    return int(session.scalar(select(func.coalesce(func.sum(RunRow.epochs_completed), 0))) or 0)


# The PostgreSQL advisory lock that serialises queueing runs (any fixed number: "tape").
QUEUE_LOCK = 0x74617065
# The class of the per-tenant advisory locks that serialise storing a tenant's datasets.
TENANT_LOCK = 0x74656E74


def _take_write_lock(session: Session) -> None:
    """SQLite's one write lock, at once: a write that changes nothing."""
    session.execute(
        update(RunRow)
        .where(false())
        .values(status=RunRow.status)
        .execution_options(synchronize_session=False)
    )


# The hottest queries, built once with their parameters bound at each call: SQLAlchemy then
# neither rebuilds the statement nor recomputes its cache key on every request.
_BY_ID: dict[type[Any], Any] = {
    table: select(table).where(table.id == bindparam("id"), table.owner == bindparam("owner"))
    for table in (DatasetRow, ModelRow, RunRow)
}
_ACTIVE = RunRow.status.in_(ACTIVE_STATUSES)
_OPEN = RunRow.status.in_(OPEN_STATUSES)
_ACTIVE_RUN_ID = select(RunRow.id).where(
    RunRow.model_id == bindparam("model_id"), RunRow.owner == bindparam("owner"), _OPEN)
_ACTIVE_RUNS = select(func.count()).where(RunRow.owner == bindparam("owner"), _ACTIVE)
_QUEUED = select(func.count()).where(RunRow.status == RunStatus.QUEUED)
_PRODUCING_RUN_ID = (
    select(RunRow.id)
    .where(RunRow.model_id == bindparam("model_id"), RunRow.owner == bindparam("owner"),
           RunRow.status == RunStatus.SUCCEEDED)
    .order_by(RunRow.seq.desc())
    .limit(1)
)
_TRAINING_MODEL_IDS = select(RunRow.model_id).where(
    RunRow.model_id.in_(bindparam("ids", expanding=True)), RunRow.owner == bindparam("owner"),
    _OPEN)
_ANY_ARRAYS = select(DatasetRow.x, DatasetRow.y).where(DatasetRow.id == bindparam("id"))
_ARRAYS = select(DatasetRow.x, DatasetRow.y).where(
    DatasetRow.id == bindparam("id"), DatasetRow.owner == bindparam("owner"))
_MODEL_HISTORY = (
    select(EpochRow)
    .where(EpochRow.model_id == bindparam("model_id"), EpochRow.step > bindparam("after"),
           exists().where(ModelRow.id == bindparam("model_id"),
                          ModelRow.owner == bindparam("owner")))
    .order_by(EpochRow.step)
    .limit(bindparam("limit"))
)
_RUN_HISTORY = (
    select(EpochRow)
    .where(EpochRow.run_id == bindparam("run_id"), EpochRow.epoch > bindparam("after"),
           exists().where(RunRow.id == bindparam("run_id"), RunRow.owner == bindparam("owner")))
    .order_by(EpochRow.epoch)
    .limit(bindparam("limit"))
)


class Repository:
    """The datasets, models, runs and history of one tenant, read and written in ``session``.
    Every query filters by the tenant; nothing of another tenant can be found, listed, used or
    changed through it."""

    def __init__(self, session: Session, tenant: str) -> None:
        self.session = session
        self.tenant = tenant

    @property
    def dialect(self) -> str:
        """The database's dialect: ``sqlite`` or ``postgresql``."""
        return self.session.get_bind().dialect.name

    # ------------------------------------------------------------ datasets

    def create_dataset(
        self,
        *,
        x: np.ndarray,
        y: np.ndarray,
        source: str,
        name: str | None = None,
        synthetic: dict[str, Any] | None = None,
        classes: list[str] | None = None,
        description: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> DatasetRow:
        """Store a dataset; ``x`` is (examples, features), ``y`` is (examples,): values, or
        class indices into ``classes`` when the labels had names."""
        stored = sum(len(header) + len(data) for header, data in map(npy_parts, (x, y)))
        row = DatasetRow(
            id=new_id("ds"),
            owner=self.tenant,
            name=name,
            description=description,
            tags=tags or {},
            source=source,
            num_examples=int(x.shape[0]),
            features=int(x.shape[1]),
            dtype=str(x.dtype),
            x=blobs.value(self.session, x),
            y=blobs.value(self.session, y),
            summary=_summary(x, y),
            synthetic=synthetic,
            classes=classes,
            y_min=float(y.min()),
            y_max=float(y.max()),
            y_integral=bool(np.all(y == np.round(y))),
            stored_bytes=stored,
            created_at=now(),
        )
        self.session.add(row)
        self.session.flush()
        blobs.write(self.session, DatasetRow, row.id, {"x": x, "y": y})
        self._event("dataset.created", row.id, lambda: documents.dataset(row))
        return row

    def _event(self, event_type: str, resource_id: str,
               render: Callable[[], documents.Document]) -> None:
        """Record the event of a change made in this transaction (the outbox)."""
        family = event_type.split(".", 1)[0]
        outbox.record(self.session, self.tenant, event_type, f"{family}:{resource_id}", render)

    def _by_id(self, table: type[Row], kind: str, resource_id: str) -> Row:
        row = self.session.scalar(_BY_ID[table], {"id": resource_id, "owner": self.tenant})
        if row is None:
            raise NotFound(kind, resource_id)
        return row

    def get_dataset(self, dataset_id: str) -> DatasetRow:
        """The tenant's dataset with this id, or :class:`NotFound`."""
        return self._by_id(DatasetRow, "dataset", dataset_id)

    def load_arrays(self, dataset_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The tenant's dataset's ``x`` and ``y`` arrays, in one query."""
        found = self.session.execute(_ARRAYS, {"id": dataset_id,
                                               "owner": self.tenant}).one_or_none()
        if found is None:
            raise NotFound("dataset", dataset_id)
        return unpack_array(found.x), unpack_array(found.y)

    def delete_dataset(self, dataset_id: str) -> None:
        """Delete a dataset, or :class:`Conflict` while an active or paused run uses it (to
        train or to validate)."""
        row = self.get_dataset(dataset_id)
        uses = (RunRow.dataset_id == dataset_id) | (RunRow.validation_dataset_id == dataset_id)
        busy = self.session.scalar(
            select(RunRow.id).where(uses, _OPEN).limit(1)
        )
        if busy is not None:
            raise Conflict(f"dataset {dataset_id!r} is in use by active run {busy!r}")
        self._event("dataset.deleted", row.id, lambda: documents.dataset(row))
        self.session.delete(row)

    def stored_bytes(self) -> int:
        """The bytes the tenant stores: datasets, models' params, runs' histories and
        checkpoints (:mod:`~service.store.usage`)."""
        return sum(usage.stored(self.session, self.tenant).values())

    def usage(self) -> dict[str, Any]:
        """What the tenant uses now: active runs, stored bytes (in all, and by what holds
        them), datasets and models."""
        count = func.count()
        stored = usage.stored(self.session, self.tenant)
        return {
            "active_runs": self.active_runs(),
            "stored_bytes": sum(stored.values()),
            "stored": stored,
            "datasets": self.session.scalar(
                select(count).where(DatasetRow.owner == self.tenant)) or 0,
            "models": self.session.scalar(select(count).where(ModelRow.owner == self.tenant)) or 0,
        }

    def lock_tenant(self) -> None:
        """Hold, until the transaction ends, a lock that serialises the tenant's quota-checked
        writes across processes: a per-tenant advisory lock on PostgreSQL, the database's
        write lock on SQLite."""
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(
                select(func.pg_advisory_xact_lock(TENANT_LOCK, func.hashtext(self.tenant)))
            )
        else:
            _take_write_lock(self.session)

    def page(
        self,
        table: type[Any],
        limit: int,
        after_seq: int | None,
        *where: Any,
        newest_first: bool = False,
        options: Sequence[Any] = (),
        fitting: Callable[[Sequence[Any]], int] | None = None,
    ) -> tuple[Sequence[Any], int | None]:
        """One page of the tenant's rows of ``table`` in creation order (or newest first) and
        the ``seq`` to continue after, if any; loaded with ``options`` (such as deferred
        columns). ``fitting`` says how many of the page's rows (from the first) fit an
        answer: the page ends after them, and the ``seq`` continues from there."""
        order = table.seq.desc() if newest_first else table.seq
        query = (
            select(table).where(table.owner == self.tenant, *where).order_by(order).limit(limit + 1)
        )
        if after_seq is not None:
            query = query.where(table.seq < after_seq if newest_first else table.seq > after_seq)
        rows = self.session.scalars(query.options(*options)).all()
        keep = min(limit, len(rows))
        if fitting is not None:
            keep = min(keep, fitting(rows[:keep]))
        if keep < len(rows):
            return rows[:keep], rows[keep - 1].seq
        return rows, None

    # -------------------------------------------------------------- models

    def create_model(
        self,
        *,
        kind: str,
        config: dict[str, Any],
        params: dict[str, np.ndarray],
        name: str | None,
        random_seed: int | None = None,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        class_names: list[str] | None = None,
        imported_from: dict[str, Any] | None = None,
    ) -> ModelRow:
        """Store a new model: its kind, the kind's config and its initial parameters (and, for
        an imported one, its class names and where its file came from)."""
        stamp = now()
        row = ModelRow(
            id=new_id("mdl"),
            owner=self.tenant,
            name=name,
            description=description,
            tags=tags or {},
            kind=kind,
            features=config["features"],
            config=config,
            params=pack_params(params),
            random_seed=random_seed,
            class_names=class_names,
            imported_from=imported_from,
            epochs_trained=0,
            history_rows=0,
            last_loss=None,
            created_at=stamp,
            updated_at=stamp,
        )
        self.session.add(row)
        self.session.flush()
        self._event("model.created", row.id, lambda: documents.model(row, training=False))
        return row

    def load_params(self, rows: Sequence[ModelRow]) -> None:
        """Read the params of models loaded without them (deferred), in one query."""
        if not rows:
            return
        by_id = {row.id: row for row in rows}
        for model_id, params in self.session.execute(
                select(ModelRow.id, ModelRow.params).where(
                    ModelRow.id.in_(list(by_id)), ModelRow.owner == self.tenant)):
            set_committed_value(by_id[model_id], "params", params)

    def model_kinds(self, model_ids: Sequence[str]) -> dict[str, ModelRow]:
        """The tenant's models with these ids, without their params (their kind and config:
        what :func:`~service.training.specs.stored_kind` reads)."""
        if not model_ids:
            return {}
        rows = self.session.scalars(select(ModelRow).where(
            ModelRow.id.in_(list(set(model_ids))), ModelRow.owner == self.tenant).options(
            defer(ModelRow.params)))
        return {row.id: row for row in rows}

    def run_params(self, run_ids: Sequence[str]) -> dict[str, tuple[bytes, bytes | None]]:
        """The stored initial and final params of the tenant's runs with these ids."""
        if not run_ids:
            return {}
        return {run_id: (initial, final) for run_id, initial, final in self.session.execute(
            select(RunRow.id, RunRow.initial_params, RunRow.final_params).where(
                RunRow.id.in_(list(run_ids)), RunRow.owner == self.tenant))}

    def get_model(self, model_id: str) -> ModelRow:
        """The tenant's model with this id, or :class:`NotFound`."""
        return self._by_id(ModelRow, "model", model_id)

    def active_run_id(self, model_id: str) -> str | None:
        """The id of the model's queued, running, cancelling or paused run, if it has one."""
        return self.session.scalar(_ACTIVE_RUN_ID, {"model_id": model_id, "owner": self.tenant})

    def training_model_ids(self, model_ids: Sequence[str]) -> set[str]:
        """Which of these models have an active or paused run (they are ``training``)."""
        if not model_ids:
            return set()
        return set(self.session.scalars(_TRAINING_MODEL_IDS, {"ids": list(model_ids),
                                                              "owner": self.tenant}))

    def delete_model(self, model_id: str) -> None:
        """Delete a model with its runs and history, or :class:`Conflict` while it trains.
        The queue's lock is taken first, the one every run's creation holds: no run can be
        queued for the model between the check and the delete, in any process."""
        self.lock_queue()
        row = self.get_model(model_id)
        active = self.active_run_id(model_id)
        if active is not None:
            raise Conflict(f"model {model_id!r} is training (run {active!r})")
        self._event("model.deleted", row.id, lambda: documents.model(row, training=False))
        self.session.execute(delete(EpochRow).where(EpochRow.model_id == row.id))
        self.session.execute(delete(RunRow).where(RunRow.model_id == row.id))
        self.session.delete(row)

    # ---------------------------------------------------------------- runs

    def create_run(
        self,
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
        stored_quota: bool = False,
        name: str | None = None,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        pause_at: int | None = None,
    ) -> RunRow:
        """Queue a run of ``model`` on ``dataset`` (both the tenant's, found through this
        repository); :class:`Conflict` if the model has one active or paused. ``options`` are
        the run's loss, penalty, validation, early stopping and shuffling; ``stored_quota``
        says whether the tenant's byte quota applies to what it stores; ``name``,
        ``description`` and ``tags`` are its annotations. ``pause_at`` (a number of epochs,
        1 or more; ``None``: no pause) makes the run pause once it has completed that many
        epochs, with a checkpoint, unless that is all its epochs (it then ends as usual); see
        :func:`service.store.lifecycle.resume_run` to resume it. The caller holds the queue's
        lock (:meth:`lock_queue`), as :meth:`delete_model` does, and hands the run to the
        executor once the transaction commits."""
        if pause_at is not None and pause_at < 1:
            raise ValueError(f"pause_at must be 1 or more, not {pause_at}")
        active = self.active_run_id(model.id)
        if active is not None:
            raise Conflict(f"model {model.id!r} already has an active run {active!r}")
        row = RunRow(
            id=new_id("run"),
            owner=self.tenant,
            model_id=model.id,
            name=name,
            description=description,
            tags=tags or {},
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
            stored_bytes=len(model.params),
            stored_quota=stored_quota,
            pause_at=pause_at,
            created_at=now(),
        )
        self.session.add(row)
        try:
            self.session.flush()
        except IntegrityError as error:  # lost a race against another request for this model
            self.session.rollback()
            raise Conflict(f"model {model.id!r} already has an active run") from error
        self._event("run.created", row.id, lambda: documents.run(row))
        return row

    def lock_queue(self) -> int:
        """How many runs are queued (every tenant's), counted under a lock the transaction
        holds until it ends, so no other transaction (in any process) queues a run between
        this count and the caller's own: an advisory lock on PostgreSQL, the database's write
        lock on SQLite."""
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(select(func.pg_advisory_xact_lock(QUEUE_LOCK)))
        else:
            _take_write_lock(self.session)
        return self.session.scalar(_QUEUED) or 0

    def active_runs(self) -> int:
        """How many of the tenant's runs are queued, running or cancelling (what the
        active-run quota counts: paused runs are not)."""
        return self.session.scalar(_ACTIVE_RUNS, {"owner": self.tenant}) or 0

    def get_run(self, run_id: str) -> RunRow:
        """The tenant's run with this id, or :class:`NotFound`."""
        return self._by_id(RunRow, "run", run_id)

    def producing_run_id(self, model_id: str) -> str | None:
        """The run whose final params the model holds now: its latest succeeded run, if any."""
        return self.session.scalar(_PRODUCING_RUN_ID, {"model_id": model_id,
                                                       "owner": self.tenant})

    def request_cancel(self, run_id: str) -> RunRow:
        """Ask a run to stop: a queued run is cancelled at once, a running one becomes
        cancelling."""
        row = self.get_run(run_id)
        if row.status == RunStatus.QUEUED:
            row.status = RunStatus.CANCELLED
            row.finished_at = now()
            row.error_reason, row.error_detail = "cancelled", "cancelled before it started"
            self.session.flush()
            self._event("run.cancelled", row.id, lambda: documents.run(row))
        elif row.status == RunStatus.RUNNING:
            row.status = RunStatus.CANCELLING
        self.session.flush()
        return row

    # ------------------------------------------------------------- history

    def _run_rows(self, run_id: str) -> Any:
        """The condition "a history row of the tenant's run ``run_id``"."""
        owned = exists().where(RunRow.id == run_id, RunRow.owner == self.tenant)
        return (EpochRow.run_id == run_id) & owned

    def _model_rows(self, model_id: str) -> Any:
        """The condition "a history row of the tenant's model ``model_id``"."""
        owned = exists().where(ModelRow.id == model_id, ModelRow.owner == self.tenant)
        return (EpochRow.model_id == model_id) & owned

    def run_history(
        self, run_id: str, after: int | None, limit: int, budget: RowBudget | None = None
    ) -> tuple[Sequence[EpochRow], bool]:
        """A run's history rows with ``epoch > after``, and whether more follow; no more rows
        than fit ``budget``'s bytes."""
        if budget is not None and not budget.holds(limit):
            limit = _fitting(self.session, self._run_rows(run_id), EpochRow.epoch, after,
                             limit, budget)
        rows = self.session.scalars(_RUN_HISTORY, {
            "run_id": run_id, "owner": self.tenant, "after": -1 if after is None else after,
            "limit": limit + 1}).all()
        return rows[:limit], len(rows) > limit

    def model_history(
        self, model_id: str, after: int | None, limit: int, budget: RowBudget | None = None
    ) -> tuple[Sequence[EpochRow], bool]:
        """Every run's history of a model in order, rows with ``step > after``, and whether
        more follow; no more rows than fit ``budget``'s bytes."""
        if budget is not None and not budget.holds(limit):
            limit = _fitting(self.session, self._model_rows(model_id), EpochRow.step, after,
                             limit, budget)
        rows = self.session.scalars(_MODEL_HISTORY, {
            "model_id": model_id, "owner": self.tenant, "after": -1 if after is None else after,
            "limit": limit + 1}).all()
        return rows[:limit], len(rows) > limit

    def run_history_sample(
        self, run_id: str, after: int | None, max_points: int, budget: RowBudget | None = None
    ) -> Sequence[EpochRow]:
        """A run's history after ``after`` in at most ``max_points`` rows, keeping the first
        and last epoch and the loss's extremes (``sampling.minmax_rows``); fewer when their
        bytes would pass ``budget``'s."""
        return _sampled_history(self.session, self._run_rows(run_id), EpochRow.epoch, after,
                                max_points, budget)

    def model_history_sample(
        self, model_id: str, after: int | None, max_points: int,
        budget: RowBudget | None = None
    ) -> Sequence[EpochRow]:
        """A model's history (every run, by ``step``) after ``after`` in at most
        ``max_points`` rows, as :meth:`run_history_sample` reduces a run's."""
        return _sampled_history(self.session, self._model_rows(model_id), EpochRow.step, after,
                                max_points, budget)


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


def _fitting(session: Session, where: Any, key: Any, after: int | None, limit: int,
             budget: RowBudget) -> int:
    """How many of the next ``limit`` history rows after ``after`` fit ``budget``: one scan of
    their params' sizes, not of the params."""
    query = select(func.length(EpochRow.params)).where(where).order_by(key).limit(limit)
    if after is not None:
        query = query.where(key > after)
    found = session.scalars(query).all()
    return budget.fitting(sizes(list(found))) if found else limit


def _sampled_history(
    session: Session, where: Any, key: Any, after: int | None, max_points: int,
    budget: RowBudget | None = None,
) -> Sequence[EpochRow]:
    """History rows after ``after`` reduced to at most ``max_points`` by min/max buckets of the
    loss (fewer when ``budget`` says so): one scan of (key, loss, params' size), then the
    chosen rows only."""
    query = select(key, EpochRow.loss, func.coalesce(func.length(EpochRow.params), 0)).where(
        where).order_by(key)
    if after is not None:
        query = query.where(key > after)
    scanned = _fetch_raw(session, query)
    if not scanned:
        return []
    triples = np.fromiter(chain.from_iterable(scanned), np.float64, 3 * len(scanned))
    keys, losses, param_bytes = triples[0::3], triples[1::3], triples[2::3]
    rows = (minmax_rows(losses, max_points) if budget is None or budget.holds(max_points)
            else budget.sample(losses, param_bytes, max_points))
    chosen = keys[rows].astype(np.int64).tolist()
    return session.scalars(select(EpochRow).where(where, key.in_(chosen)).order_by(key)).all()
