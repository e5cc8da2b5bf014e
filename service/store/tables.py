"""The schema: SQLAlchemy tables of datasets, models, runs and their per-epoch history.

Arrays live in binary columns (see ``codec``). Every resource carries an ``owner`` so that
API-key tenants slot in without a schema change. ``seq`` columns give a stable creation
order for cursors.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DEFAULT_OWNER = "default"
ACTIVE_STATUSES = ("queued", "running", "cancelling")
FINAL_STATUSES = ("succeeded", "failed", "cancelled", "diverged")
ACTIVE_SQL = "status IN ('queued', 'running', 'cancelling')"


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


class Base(DeclarativeBase):
    """Declarative base of every table."""


class DatasetRow(Base):
    """A stored dataset: ``x`` (examples x features) and ``y`` as ``.npy`` blobs."""

    __tablename__ = "datasets"

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    owner: Mapped[str] = mapped_column(String(64), default=DEFAULT_OWNER, index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(16))
    num_examples: Mapped[int] = mapped_column(Integer)
    features: Mapped[int] = mapped_column(Integer)
    dtype: Mapped[str] = mapped_column(String(16))
    x: Mapped[bytes] = mapped_column(LargeBinary, deferred=True, deferred_group="arrays")
    y: Mapped[bytes] = mapped_column(LargeBinary, deferred=True, deferred_group="arrays")
    summary: Mapped[bytes] = mapped_column(LargeBinary)
    synthetic: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ModelRow(Base):
    """A model and its current parameters."""

    __tablename__ = "models"

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    owner: Mapped[str] = mapped_column(String(64), default=DEFAULT_OWNER, index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    features: Mapped[int] = mapped_column(Integer)
    W: Mapped[bytes] = mapped_column(LargeBinary)
    b: Mapped[float] = mapped_column(Float(precision=53))
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
        # At most one queued/running/cancelling run per model, enforced by the database.
        Index(
            "ux_runs_one_active_per_model",
            "model_id",
            unique=True,
            sqlite_where=text(ACTIVE_SQL),
            postgresql_where=text(ACTIVE_SQL),
        ),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    owner: Mapped[str] = mapped_column(String(64), default=DEFAULT_OWNER, index=True)
    model_id: Mapped[str] = mapped_column(String(40), ForeignKey("models.id", ondelete="CASCADE"))
    dataset_id: Mapped[str] = mapped_column(String(40), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    epochs: Mapped[int] = mapped_column(Integer)
    epochs_completed: Mapped[int] = mapped_column(Integer, default=0)
    optimizer: Mapped[dict[str, Any]] = mapped_column(JSON)
    batch_size: Mapped[int | None] = mapped_column(Integer)
    shuffle_seed: Mapped[int | None] = mapped_column(BigInteger)
    dtype: Mapped[str] = mapped_column(String(16))
    history_base: Mapped[int] = mapped_column(Integer, default=0)
    initial_W: Mapped[bytes] = mapped_column(LargeBinary)
    initial_b: Mapped[float] = mapped_column(Float(precision=53))
    final_W: Mapped[bytes | None] = mapped_column(LargeBinary)
    final_b: Mapped[float | None] = mapped_column(Float(precision=53))
    final_loss: Mapped[float | None] = mapped_column(Float(precision=53))
    error_reason: Mapped[str | None] = mapped_column(String(32))
    error_detail: Mapped[str | None] = mapped_column(String(1000))
    error_epoch: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EpochRow(Base):
    """W and b at the start of one epoch, the loss there, and the epoch's wall time."""

    __tablename__ = "epochs"
    __table_args__ = (Index("ix_epochs_model_step", "model_id", "step", unique=True),)

    run_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[str] = mapped_column(String(40))
    step: Mapped[int] = mapped_column(Integer)
    W: Mapped[bytes] = mapped_column(LargeBinary)
    b: Mapped[float] = mapped_column(Float(precision=53))
    loss: Mapped[float] = mapped_column(Float(precision=53))
    elapsed_ms: Mapped[float] = mapped_column(Float(precision=53))
