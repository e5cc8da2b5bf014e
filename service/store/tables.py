"""The schema: SQLAlchemy tables of datasets, models, runs and their per-epoch history.

Arrays live in binary columns (see ``codec``): dataset arrays as ``.npy``, a model's
named parameters as one safetensors blob; a kind's config and a run's options are JSON.
Every resource carries an ``owner``: the tenant it belongs to. API keys (stored as hashes)
and per-tenant quotas have tables of their own; so do webhook endpoints and the outbox of
events with their deliveries and attempts. ``seq`` columns give a stable creation order
for cursors.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DEFAULT_OWNER = "default"


class RunStatus(StrEnum):
    """A run's state: queued -> running -> succeeded | failed | cancelled | diverged, through
    cancelling when asked to stop while running. A queued or running run may be paused
    (queued -> paused at once, running -> paused at an epoch's end, its checkpoint holding
    its state) and resumed (paused -> queued); a paused run may be cancelled. More values may
    be added: clients must accept one they do not know."""

    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DIVERGED = "diverged"


# Runs that want or hold a worker: what the active-run quota counts, and what a stop or
# crash of the service interrupts.
ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.CANCELLING)
# Runs not yet ended: the active ones and the paused ones. Such a run holds its model (its
# model is training: one per model, no delete) and its datasets (no delete).
OPEN_STATUSES = (*ACTIVE_STATUSES, RunStatus.PAUSED)
FINAL_STATUSES = tuple(status for status in RunStatus if status not in OPEN_STATUSES)
OPEN_SQL = f"status IN ({', '.join(repr(str(s)) for s in OPEN_STATUSES)})"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored timezone-aware and always read back as UTC (SQLite forgets zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# SQLite only auto-increments an INTEGER PRIMARY KEY; BIGINT elsewhere.
SeqType = BigInteger().with_variant(Integer(), "sqlite")
# A resource's tags (a flat map of strings): JSONB on PostgreSQL, which a GIN index searches.
TagsType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    """Declarative base of every table."""


class DatasetRow(Base):
    """A stored dataset: ``x`` (examples x features) and ``y`` as ``.npy`` blobs."""

    __tablename__ = "datasets"

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    owner: Mapped[str] = mapped_column(String(64), default=DEFAULT_OWNER, index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[dict[str, str]] = mapped_column(TagsType, default=dict)
    source: Mapped[str] = mapped_column(String(16))
    num_examples: Mapped[int] = mapped_column(Integer)
    features: Mapped[int] = mapped_column(Integer)
    dtype: Mapped[str] = mapped_column(String(16))
    x: Mapped[bytes] = mapped_column(LargeBinary, deferred=True, deferred_group="arrays")
    y: Mapped[bytes] = mapped_column(LargeBinary, deferred=True, deferred_group="arrays")
    summary: Mapped[bytes] = mapped_column(LargeBinary)
    synthetic: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Class names when y held strings (y then holds their indices), and y's range, for
    # checking a classifier's labels without loading y.
    classes: Mapped[list[str] | None] = mapped_column(JSON)
    y_min: Mapped[float] = mapped_column(Float(precision=53))
    y_max: Mapped[float] = mapped_column(Float(precision=53))
    y_integral: Mapped[bool] = mapped_column(Boolean)
    # The size of the x and y blobs: what a tenant's byte quota counts.
    stored_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ModelRow(Base):
    """A model: its kind and config, its current parameters, and what training did to it."""

    __tablename__ = "models"

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    owner: Mapped[str] = mapped_column(String(64), default=DEFAULT_OWNER, index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[dict[str, str]] = mapped_column(TagsType, default=dict)
    kind: Mapped[str] = mapped_column(String(32))
    features: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    params: Mapped[bytes] = mapped_column(LargeBinary)
    random_seed: Mapped[int | None] = mapped_column(BigInteger)
    class_names: Mapped[list[str] | None] = mapped_column(JSON)
    # The provenance of the file an imported model was read from (None: made here).
    imported_from: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    epochs_trained: Mapped[int] = mapped_column(Integer, default=0)
    history_rows: Mapped[int] = mapped_column(Integer, default=0)
    last_loss: Mapped[float | None] = mapped_column(Float(precision=53))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RunRow(Base):
    """One training run of a model on a dataset."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_model_seq", "model_id", "seq"),
        # At most one open (queued, running, cancelling or paused) run per model, enforced by
        # the database.
        Index(
            "ux_runs_one_active_per_model",
            "model_id",
            unique=True,
            sqlite_where=text(OPEN_SQL),
            postgresql_where=text(OPEN_SQL),
        ),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    owner: Mapped[str] = mapped_column(String(64), default=DEFAULT_OWNER, index=True)
    model_id: Mapped[str] = mapped_column(String(40), ForeignKey("models.id", ondelete="CASCADE"))
    # Annotations (migration 0007): what PATCH changes, and what the ETag covers.
    name: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[dict[str, str]] = mapped_column(TagsType, default=dict)
    dataset_id: Mapped[str] = mapped_column(String(40), index=True)
    validation_dataset_id: Mapped[str | None] = mapped_column(String(40), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    epochs: Mapped[int] = mapped_column(Integer)
    epochs_completed: Mapped[int] = mapped_column(Integer, default=0)
    optimizer: Mapped[dict[str, Any]] = mapped_column(JSON)
    batch_size: Mapped[int | None] = mapped_column(Integer)
    shuffle_seed: Mapped[int | None] = mapped_column(BigInteger)
    dtype: Mapped[str] = mapped_column(String(16))
    # loss, huber_delta, regularization, validation, early_stopping, shuffle
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Whether history rows keep params (decided from the model's size when the run is made).
    record_params: Mapped[bool] = mapped_column(Boolean)
    history_base: Mapped[int] = mapped_column(Integer, default=0)
    initial_params: Mapped[bytes] = mapped_column(LargeBinary)
    final_params: Mapped[bytes | None] = mapped_column(LargeBinary)
    final_loss: Mapped[float | None] = mapped_column(Float(precision=53))
    final_metrics: Mapped[dict[str, float] | None] = mapped_column(JSON)
    stopped_epoch: Mapped[int | None] = mapped_column(Integer)
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    error_reason: Mapped[str | None] = mapped_column(String(32))
    error_detail: Mapped[str | None] = mapped_column(String(1000))
    error_epoch: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # From started_at to finished_at, set when the run ends (searched and sorted on).
    duration_ms: Mapped[float | None] = mapped_column(Float(precision=53))
    # Scale-out (migration 0004): the current attempt (every write of a run names it), the
    # worker holding it and when that worker last showed it was alive.
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    worker: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Attempts that ended by handing the run back (a worker draining), not by a loss.
    handbacks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Bounds (migration 0006): the bytes the run stores (initial and final params, history
    # rows; its checkpoint is counted apart), and whether its tenant's byte quota applies.
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    stored_quota: Mapped[bool] = mapped_column(Boolean, default=False,
                                               server_default=text("false"))
    # Pause and resume (migration 0009): the run pauses at the first epoch boundary where its
    # epochs completed reach ``pause_at`` (0: the next one), unless that is its end; null:
    # no pause asked for. A pause, a finish or a resume without one clears it.
    pause_at: Mapped[int | None] = mapped_column(Integer)


class EpochRow(Base):
    """The model at the start of one epoch: its params (null for large models), the
    objective and metrics there, and the epoch's wall time."""

    __tablename__ = "epochs"
    __table_args__ = (Index("ix_epochs_model_step", "model_id", "step", unique=True),)

    run_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[str] = mapped_column(String(40))
    step: Mapped[int] = mapped_column(Integer)
    params: Mapped[bytes | None] = mapped_column(LargeBinary)
    loss: Mapped[float] = mapped_column(Float(precision=53))
    metrics: Mapped[dict[str, float]] = mapped_column(JSON)
    elapsed_ms: Mapped[float] = mapped_column(Float(precision=53))


class ApiKeyRow(Base):
    """An API key of a tenant: only its hash is stored, with a short prefix to recognise it."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class QuotaRow(Base):
    """A tenant's own limits; a null one falls back to the settings' default."""

    __tablename__ = "quotas"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    max_active_runs: Mapped[int | None] = mapped_column(Integer)
    max_stored_bytes: Mapped[int | None] = mapped_column(BigInteger)
    rate_limit: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CheckpointRow(Base):
    """A run's last checkpoint: the loop's state at the start of epoch ``epoch`` (params,
    optimizer slots, shuffling RNG, early stopping), written by attempt ``attempt``; at a
    pause, with the model's objective (``loss``) and ``metrics`` there as the attempt
    measured them (null for a periodic checkpoint: nobody measured it)."""

    __tablename__ = "run_checkpoints"

    run_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    state: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    loss: Mapped[float | None] = mapped_column(Float(precision=53))
    metrics: Mapped[dict[str, float] | None] = mapped_column(JSON)


class WebhookRow(Base):
    """An endpoint events are delivered to: its URL, the event types it subscribes to, and
    its signing secrets, encrypted under the server's key (the previous one keeps signing
    beside the current one until ``previous_secret_until`` after a rotation)."""

    __tablename__ = "webhooks"

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(500))
    events: Mapped[list[str]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean)
    # Why the service disabled it: "gone" (it answered 410) or "failing" (3 days of failures).
    disabled_reason: Mapped[str | None] = mapped_column(String(16))
    secret: Mapped[str] = mapped_column(String(400))
    previous_secret: Mapped[str | None] = mapped_column(String(400))
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookEventRow(Base):
    """An event of the outbox, written in the transaction of the change that made it: its id
    (the ``webhook-id`` of every delivery of it), its type, the resource it is about (events
    of one resource are delivered in ``seq`` order) and the exact body every attempt sends."""

    __tablename__ = "webhook_events"

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    type: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class DeliveryRow(Base):
    """One event to one endpoint: ``pending`` until an attempt succeeds (``succeeded``) or the
    endpoint is given up on (``failed``). ``next_attempt_at`` is when it is due, and while an
    attempt is in flight, the end of that attempt's lease (another dispatcher may take it after,
    so a dispatcher that died mid-attempt loses nothing)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_chain", "webhook_id", "resource", "status", "seq"),
        Index("ix_webhook_deliveries_log", "webhook_id", "seq"),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    webhook_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    first_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class AttemptRow(Base):
    """One HTTP attempt of a delivery: when, the answer's status code (none when there was
    no answer), how long it took, the error, and the first KiB of the answer."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float(precision=53))
    error: Mapped[str | None] = mapped_column(String(500))
    response: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))


class WebhookCounterRow(Base):
    """Attempts by outcome, counted with each attempt: what the metrics report, across every
    process that delivers (rows of the log are pruned, these counts are not)."""

    __tablename__ = "webhook_counters"

    outcome: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class StudyStatus(StrEnum):
    """A study's state: running until its last batch is decided (``completed``), it is
    cancelled, or it cannot go on (``failed``)."""

    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


class TrialStatus(StrEnum):
    """A trial's state, from its run's and the scheduler's decisions."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    PRUNED = "pruned"
    COMPLETED = "completed"
    FAILED = "failed"


class StudyRow(Base):
    """A study: its spec (validated once, as the API took it), its state, and what its driver
    last recorded (best trial, epochs trained, the number of its last event). ``version`` goes
    up with every change the driver makes (under the study's row lock)."""

    __tablename__ = "studies"

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[dict[str, str]] = mapped_column(TagsType, default=dict)
    dataset_id: Mapped[str] = mapped_column(String(40), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    best: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    epochs_trained: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(String(1000))
    events: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TrialRow(Base):
    """Trial ``number`` of a study: the point sampled for it, its model and run, its status,
    the epochs its run trained and the objective at each rung it reached. The primary key
    makes each number's trial once, whichever driver gets there first."""

    __tablename__ = "study_trials"

    study_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    model_id: Mapped[str | None] = mapped_column(String(40), index=True)
    run_id: Mapped[str | None] = mapped_column(String(40), index=True)
    epochs: Mapped[int] = mapped_column(Integer, default=0)
    rungs: Mapped[list[float]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StudyEventRow(Base):
    """Event ``seq`` of a study's stream (1, 2, ...): what happened, with its data."""

    __tablename__ = "study_events"

    study_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
