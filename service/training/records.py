"""What the epoch loop reports: plain records with no engine or NumPy types in them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EpochRecord:
    """W and b at the start of an epoch, the full-data loss there, and the epoch's wall time."""

    epoch: int
    W: list[float]
    b: float
    loss: float
    elapsed_ms: float


@dataclass(frozen=True)
class Outcome:
    """How the loop ended: the final parameters and full-data loss, or cancellation."""

    cancelled: bool
    W: list[float]
    b: float
    loss: float
