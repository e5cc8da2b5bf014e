"""Random tensors, as tg.random.normal and tg.random.uniform.

With a seed, an op draws from its own generator seeded with it, so the same
seed gives the same numbers on every call; without one, ops share a generator
that set_seed() makes reproducible. Inside tg.function a draw is replayed on
every call, from the same generator an eager call would use.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from service.engine.dtypes import float32
from service.engine.ops import as_shape
from service.engine.tensor import DTypeLike, Shape, Tensor, apply, draw

_generator = np.random.default_rng()


def set_seed(seed: int) -> None:
    """Make the unseeded random ops reproducible from here on."""
    global _generator
    _generator = np.random.default_rng(seed)


def normal(
    shape: Any,
    mean: float = 0.0,
    stddev: float = 1.0,
    dtype: DTypeLike = float32,
    seed: int | None = None,
) -> Tensor:
    """Samples from a normal distribution."""
    dtype = _floating(dtype)
    values = draw(_standard_normal, as_shape(shape), dtype, seed)
    return apply(operator.add, apply(operator.mul, values, dtype.type(stddev)), dtype.type(mean))


def uniform(
    shape: Any,
    minval: float = 0,
    maxval: float | None = None,
    dtype: DTypeLike = float32,
    seed: int | None = None,
) -> Tensor:
    """Samples from [minval, maxval): maxval defaults to 1, and must be given for integers."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        if maxval is None:
            raise ValueError("uniform needs maxval for an integer dtype")
        return draw(_integers, int(minval), int(maxval), as_shape(shape), dtype, seed)
    dtype = _floating(dtype)
    low, high = dtype.type(minval), dtype.type(1 if maxval is None else maxval)
    values = draw(_random, as_shape(shape), dtype, seed)
    return apply(operator.add, apply(operator.mul, values, high - low), low)


def _standard_normal(shape: Shape, dtype: np.dtype, seed: int | None,
                     out: np.ndarray | None = None) -> Any:
    return _rng(seed).standard_normal(shape, dtype, out=out)


def _random(shape: Shape, dtype: np.dtype, seed: int | None,
            out: np.ndarray | None = None) -> Any:
    return _rng(seed).random(shape, dtype, out=out)


def _integers(low: int, high: int, shape: Shape, dtype: np.dtype, seed: int | None) -> Any:
    return _rng(seed).integers(low, high, shape, dtype)


def _floating(dtype: DTypeLike) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"random floats come as float32 or float64, not {dtype}")
    return dtype


def _rng(seed: int | None) -> np.random.Generator:
    return _generator if seed is None else np.random.default_rng(seed)
