"""Reductions of long histories and large datasets to what a chart can draw."""

from __future__ import annotations

import numpy as np

# Each bucket keeps up to four rows: its first, last, smallest and largest.
ROWS_PER_BUCKET = 4


def bucket_starts(n: int, max_points: int) -> np.ndarray:
    """Where each of the ``max_points // 4`` buckets of ``n`` rows starts: equal sizes (the
    first ones one shorter when it does not divide), bucket i = rows [i*n//B, (i+1)*n//B)."""
    count = max(1, min(n, max_points // ROWS_PER_BUCKET))
    return (np.arange(count, dtype=np.int64) * n) // count


def minmax_rows(values: np.ndarray, max_points: int) -> np.ndarray:
    """Indexes (ascending) of the rows to keep so that at most ``max_points`` remain: every row
    when they fit, else each bucket's first, last, smallest and largest value (the first one
    on ties), so the first and last row and every bucket's extremes survive."""
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    starts = bucket_starts(n, max_points)
    sizes = np.diff(np.append(starts, n))
    ends = starts + sizes - 1
    keep = [starts, ends]
    for extreme in (np.minimum, np.maximum):
        per_bucket = np.repeat(extreme.reduceat(values, starts), sizes)
        hits = np.flatnonzero(values == per_bucket)
        keep.append(hits[np.searchsorted(hits, starts)])
    return np.unique(np.concatenate(keep))


def sample_rows(n: int, size: int, seed: int) -> np.ndarray:
    """Indexes (ascending) of ``size`` of ``n`` rows drawn without replacement with ``seed``;
    every row when ``size >= n``."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
