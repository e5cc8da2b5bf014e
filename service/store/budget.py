"""The bytes an answer of history rows may take, judged before the rows are read: each row
costs a fixed part plus a multiple of its stored params' bytes (read with ``length()``, not
the params themselves), so a page is cut where the next row would pass the bound, and a
downsampled answer keeps fewer points."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.store.sampling import ROWS_PER_BUCKET, minmax_rows


@dataclass(frozen=True)
class RowBudget:
    """An answer of history rows takes at most ``max_bytes``; a row costs ``base`` bytes plus
    ``per_param_byte`` for each byte of its stored params (an upper bound of its JSON), which
    are never more than ``param_bytes`` (the model's, stored)."""

    max_bytes: int
    base: int
    per_param_byte: float
    param_bytes: int

    def holds(self, rows: int) -> bool:
        """Whether ``rows`` rows fit whatever they hold (no need to look at them)."""
        return rows * (self.base + self.per_param_byte * self.param_bytes) <= self.max_bytes

    def costs(self, param_bytes: np.ndarray) -> np.ndarray:
        """What each row costs, from its params' stored bytes (0 for a row without)."""
        return self.base + self.per_param_byte * param_bytes

    def fitting(self, param_bytes: np.ndarray) -> int:
        """How many rows from the first fit within the bound (one at least, if any)."""
        total = np.cumsum(self.costs(param_bytes))
        return max(int(np.searchsorted(total, self.max_bytes, side="right")),
                   min(1, len(param_bytes)))

    def sample(self, losses: np.ndarray, param_bytes: np.ndarray,
               max_points: int) -> np.ndarray:
        """The rows :func:`~service.store.sampling.minmax_rows` keeps of at most
        ``max_points``, fewer when their bytes would pass the bound (the buckets then
        widen, so the rows still span the whole history), and only the leading ones that fit
        if even the fewest buckets would not."""
        costs = self.costs(param_bytes)
        chosen = minmax_rows(losses, max_points)
        total = float(costs[chosen].sum())
        while total > self.max_bytes and max_points > ROWS_PER_BUCKET:
            max_points = max(ROWS_PER_BUCKET, min(max_points - ROWS_PER_BUCKET,
                                                  int(max_points * self.max_bytes / total)))
            chosen = minmax_rows(losses, max_points)
            total = float(costs[chosen].sum())
        return chosen[: self.fitting(param_bytes[chosen])]


def sizes(values: list[int | None]) -> np.ndarray:
    """Stored params' bytes as a float array (a row without params: 0)."""
    return np.array([0 if v is None else v for v in values], dtype=np.float64)
