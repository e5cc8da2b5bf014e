"""Synthetic data: the tutorial's noisy line, generalised to any number of features."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def synthesize(
    num_examples: int = 1000,
    true_W: Sequence[float] = (3.0,),
    true_b: float = 2.0,
    noise_stddev: float = 1.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``x ~ N(0, 1)`` of shape (num_examples, features) and ``y = x @ true_W + true_b + noise``,
    float32 like the tutorial, fully determined by ``seed``."""
    rng = np.random.default_rng(seed)
    with np.errstate(over="ignore", invalid="ignore"):  # callers check finiteness
        weights = np.asarray(true_W, dtype=np.float32)
        x = rng.standard_normal((num_examples, weights.shape[0]), dtype=np.float32)
        noise = rng.standard_normal(num_examples, dtype=np.float32) * np.float32(noise_stddev)
        y = x @ weights + np.float32(true_b) + noise
    return x, y.astype(np.float32)
