"""What a tenant stores, in bytes, as its byte quota counts it: its datasets' arrays, its
models' params, its runs' own bytes (initial and final params and history rows, kept in
``runs.stored_bytes`` as they are written) and the checkpoints of its active runs.

Blob sizes are read with ``length()``, which both databases answer from a value's header
without reading the value.
"""

from __future__ import annotations

from sqlalchemy import BindParameter, Update, bindparam, func, select, update
from sqlalchemy.orm import Session

from service.store.tables import CheckpointRow, DatasetRow, EpochRow, ModelRow, RunRow

# What a history row costs besides its params: its numbers, ids, metrics and index entries
# (an estimate; the params are counted as their blob's bytes).
ROW_BYTES = 128
PARTS = ("datasets", "models", "runs", "checkpoints")

_OWNER: BindParameter[str] = bindparam("owner")
_STORED = select(
    select(func.coalesce(func.sum(DatasetRow.stored_bytes), 0))
    .where(DatasetRow.owner == _OWNER).scalar_subquery(),
    select(func.coalesce(func.sum(func.length(ModelRow.params)), 0))
    .where(ModelRow.owner == _OWNER).scalar_subquery(),
    select(func.coalesce(func.sum(RunRow.stored_bytes), 0))
    .where(RunRow.owner == _OWNER).scalar_subquery(),
    select(func.coalesce(func.sum(func.length(CheckpointRow.state)), 0))
    .join(RunRow, RunRow.id == CheckpointRow.run_id)
    .where(RunRow.owner == _OWNER).scalar_subquery(),
)


def stored(session: Session, tenant: str) -> dict[str, int]:
    """The bytes ``tenant`` stores, by what holds them (:data:`PARTS`), in one query."""
    found = session.execute(_STORED, {"owner": tenant}).one()
    return {part: int(value or 0) for part, value in zip(PARTS, found, strict=True)}


def history_bytes(params: bytes | None) -> int:
    """What one history row costs the quota."""
    return ROW_BYTES + (0 if params is None else len(params))


def recount(run_id: str) -> Update:
    """The UPDATE that counts a run's bytes again from what it holds (after rows of its
    history were deleted)."""
    rows = (
        select(func.coalesce(func.sum(func.coalesce(func.length(EpochRow.params), 0)
                                      + ROW_BYTES), 0))
        .where(EpochRow.run_id == RunRow.id).scalar_subquery()
    )
    return (
        update(RunRow).where(RunRow.id == run_id)
        .values(stored_bytes=func.length(RunRow.initial_params)
                + func.coalesce(func.length(RunRow.final_params), 0) + rows)
        .execution_options(synchronize_session=False)
    )
