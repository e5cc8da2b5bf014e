"""Schemas of history: per-epoch rows, pages of rows or columns, and the items of live streams."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from service.api.schemas.common import NamedArrays, ParamArray, Public
from service.api.schemas.runs import Run


class HistoryRow(Public):
    """The model at the start of an epoch: the objective (``loss``) and metrics there over
    the training rows (``val_*`` over the validation rows), the params (on the rows the run's
    ``record_params`` selects: epochs 0, k, 2k, ...; never for models of more than
    TAPELINE_HISTORY_PARAMS_MAX parameters), W and b where the kind has them."""

    epoch: int
    W: list[float] | None = None
    b: float | None = None
    loss: float
    metrics: dict[str, float]
    params: NamedArrays | None = None
    elapsed_ms: float
    run_id: str
    step: int = Field(description="Position of this row in the model's whole history.")


class HistoryPage(Public):
    """History as rows; pass ``next_cursor`` as ``after`` for the next page."""

    items: list[HistoryRow]
    next_cursor: str | None


class HistoryColumns(Public):
    """History as columns, one list per field (``metrics`` and ``params`` one per name); pass
    ``next_cursor`` as ``after``. A row without params (``record_params`` left them out) is
    null in ``params``, ``W`` and ``b``; those are null when no row has them."""

    epoch: list[int]
    W: list[list[float] | None] | None = None
    b: list[float | None] | None = None
    loss: list[float]
    metrics: dict[str, list[float | None]]
    params: dict[str, list[ParamArray | None]] | None = None
    elapsed_ms: list[float]
    run_id: list[str]
    step: list[int]
    next_cursor: str | None


class EpochEvent(HistoryRow):
    """A stream item: one history row."""

    type: Literal["epoch"] = "epoch"


class EndEvent(Run):
    """The last stream item: the run in its final state."""

    type: Literal["end"] = "end"


class PausedEvent(Run):
    """A stream item: the run paused after its last epoch sent (the stream stays open and its
    epochs follow once the run is resumed)."""

    type: Literal["paused"] = "paused"


StreamItem = Annotated[EpochEvent | EndEvent | PausedEvent, Field(discriminator="type")]
