"""Model kinds. Each holds engine Variables and maps ``x`` (examples, features) to predictions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service import engine as tg


class LinearModel:
    """``f(x) = x @ W + b``: the tutorial's model with one weight per feature."""

    kind = "linear"

    def __init__(self, W: Sequence[float] | np.ndarray, b: float, dtype: str = "float32") -> None:
        self.W = tg.Variable(np.asarray(W, dtype=dtype).reshape(-1), name="W", dtype=dtype)
        self.b = tg.Variable(np.asarray(b, dtype=dtype), name="b", dtype=dtype)

    @property
    def variables(self) -> list[tg.Variable]:
        """The trainable parameters, in the order optimizers see them."""
        return [self.W, self.b]

    def __call__(self, x: tg.Tensor) -> tg.Tensor:
        return tg.matmul(x, self.W) + self.b

    def parameters(self) -> tuple[list[float], float]:
        """W as a list and b as a float, for records and storage."""
        weights: list[float] = self.W.numpy().astype(np.float64).tolist()
        return weights, float(self.b.numpy())


def mean_squared_error(target: tg.Tensor, predicted: tg.Tensor) -> tg.Tensor:
    """The tutorial's loss: ``reduce_mean(square(target - predicted))``."""
    return tg.reduce_mean(tg.square(target - predicted))
