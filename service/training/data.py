"""Synthetic data: the tutorial's noisy line (any number of features) and the classic
classification sets (blobs, moons, circles), each fully determined by its seed."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


def blobs(
    num_examples: int = 300,
    features: int = 2,
    classes: int = 3,
    spread: float = 1.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs: ``classes`` centers drawn uniformly in [-10, 10]^features, examples
    spread around them with standard deviation ``spread``, about equally many per class,
    shuffled; labels are the class indices (scikit-learn's ``make_blobs``)."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10.0, 10.0, (classes, features))
    y = np.arange(num_examples) % classes
    rng.shuffle(y)
    x = centers[y] + rng.standard_normal((num_examples, features)) * spread
    return x.astype(np.float32), y.astype(np.int64)


def moons(num_examples: int = 200, noise: float = 0.1, seed: int = 0
          ) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles in 2-D (class 0 above, class 1 below), with Gaussian
    noise of standard deviation ``noise``, shuffled (scikit-learn's ``make_moons``)."""
    rng = np.random.default_rng(seed)
    outer = num_examples // 2
    inner = num_examples - outer
    top = np.linspace(0.0, np.pi, outer)
    bottom = np.linspace(0.0, np.pi, inner)
    x = np.concatenate([
        np.column_stack([np.cos(top), np.sin(top)]),
        np.column_stack([1.0 - np.cos(bottom), 0.5 - np.sin(bottom)]),
    ])
    y = np.concatenate([np.zeros(outer, np.int64), np.ones(inner, np.int64)])
    return _shuffled(rng, x + rng.standard_normal(x.shape) * noise, y)


CIRCLES_FACTOR = 0.5  # the inner circle's radius, the outer one's being 1


def circles(num_examples: int = 200, noise: float = 0.1, seed: int = 0
            ) -> tuple[np.ndarray, np.ndarray]:
    """A circle of radius 1 (class 0) around one of radius 0.5 (class 1) in 2-D, with
    Gaussian noise of standard deviation ``noise``, shuffled (``make_circles``)."""
    rng = np.random.default_rng(seed)
    outer = num_examples // 2
    inner = num_examples - outer
    angles_out = np.linspace(0.0, 2 * np.pi, outer, endpoint=False)
    angles_in = np.linspace(0.0, 2 * np.pi, inner, endpoint=False)
    x = np.concatenate([
        np.column_stack([np.cos(angles_out), np.sin(angles_out)]),
        np.column_stack([np.cos(angles_in), np.sin(angles_in)]) * CIRCLES_FACTOR,
    ])
    y = np.concatenate([np.zeros(outer, np.int64), np.ones(inner, np.int64)])
    return _shuffled(rng, x + rng.standard_normal(x.shape) * noise, y)


def _shuffled(rng: np.random.Generator, x: np.ndarray, y: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(len(y))
    return x[order].astype(np.float32), y[order]


# Every kind of synthetic data by name; each takes its parameters and a seed as keywords.
SYNTHETIC: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "linear": synthesize,
    "blobs": blobs,
    "moons": moons,
    "circles": circles,
}
