"""Optimizers with Keras' update rules, applied to engine Variables outside any tape."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from service import engine as tg


class SGD:
    """Plain gradient descent: ``w -= learning_rate * g`` (the tutorial's ``assign_sub``)."""

    def __init__(self, learning_rate: float = 0.1) -> None:
        self.learning_rate = learning_rate

    def apply(self, grads: Sequence[tg.Tensor], variables: Sequence[tg.Variable]) -> None:
        """Update each variable from its gradient."""
        for grad, var in zip(grads, variables, strict=True):
            var.assign_sub(self.learning_rate * np.asarray(grad.numpy()))


class Momentum:
    """SGD with (optionally Nesterov) momentum, as ``keras.optimizers.SGD(momentum=...)``."""

    def __init__(
        self, learning_rate: float = 0.1, momentum: float = 0.9, nesterov: bool = False
    ) -> None:
        self.learning_rate, self.momentum, self.nesterov = learning_rate, momentum, nesterov
        self._velocity: list[np.ndarray] | None = None

    def apply(self, grads: Sequence[tg.Tensor], variables: Sequence[tg.Variable]) -> None:
        """Update each variable from its gradient and its running velocity."""
        if self._velocity is None:
            self._velocity = [np.zeros_like(v.numpy()) for v in variables]
        dtype = variables[0].numpy().dtype
        lr, mu = dtype.type(self.learning_rate), dtype.type(self.momentum)
        for i, (grad, var) in enumerate(zip(grads, variables, strict=True)):
            g = np.asarray(grad.numpy())
            velocity = mu * self._velocity[i] - lr * g
            self._velocity[i] = velocity
            var.assign_add(mu * velocity - lr * g if self.nesterov else velocity)


class Adam:
    """Adam with bias correction folded into the step size, as ``keras.optimizers.Adam``."""

    def __init__(
        self,
        learning_rate: float = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
    ) -> None:
        self.learning_rate, self.beta_1, self.beta_2 = learning_rate, beta_1, beta_2
        self.epsilon = epsilon
        self._m: list[np.ndarray] | None = None
        self._v: list[np.ndarray] | None = None
        self._t = 0

    def apply(self, grads: Sequence[tg.Tensor], variables: Sequence[tg.Variable]) -> None:
        """Update each variable from its gradient's running first and second moments."""
        if self._m is None or self._v is None:
            self._m = [np.zeros_like(v.numpy()) for v in variables]
            self._v = [np.zeros_like(v.numpy()) for v in variables]
        self._t += 1
        dtype = variables[0].numpy().dtype.type
        b1, b2 = dtype(self.beta_1), dtype(self.beta_2)
        alpha = dtype(
            self.learning_rate * math.sqrt(1 - self.beta_2**self._t) / (1 - self.beta_1**self._t)
        )
        eps = dtype(self.epsilon)
        for i, (grad, var) in enumerate(zip(grads, variables, strict=True)):
            g = np.asarray(grad.numpy())
            self._m[i] = self._m[i] + (g - self._m[i]) * (1 - b1)
            self._v[i] = self._v[i] + (g * g - self._v[i]) * (1 - b2)
            var.assign_sub(alpha * self._m[i] / (np.sqrt(self._v[i]) + eps))


Optimizer = SGD | Momentum | Adam


def make_optimizer(spec: dict[str, Any]) -> Optimizer:
    """Build an optimizer from its spec, e.g. ``{"kind": "adam", "learning_rate": 0.01}``."""
    params = {k: v for k, v in spec.items() if k != "kind"}
    kinds: dict[str, type[Optimizer]] = {"sgd": SGD, "momentum": Momentum, "adam": Adam}
    try:
        return kinds[spec["kind"]](**params)
    except KeyError as error:
        raise ValueError(f"unknown optimizer kind {spec.get('kind')!r}") from error
