"""Optimizers with Keras' update rules, written with engine ops on Variables.

An optimizer keeps its state (momentum velocities, Adam's moments and step) in
engine Variables of its own, so an update is engine ops and ``assign_*`` calls
only: no NumPy on gradients, nothing read back to Python. ``state()`` and
``load_state()`` move that state in and out as named NumPy arrays, so a run's
loop can be checkpointed and resumed exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from service import engine as tg


class Optimizer:
    """Base: slot variables created per trained variable on the first update."""

    slots: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self._slots: dict[str, list[tg.Variable]] = {}
        self._step: tg.Variable | None = None

    def build(self, variables: Sequence[tg.Variable]) -> None:
        """Create the state for these variables (zeros), once."""
        if self._step is not None:
            return
        self._step = tg.Variable(np.int64(0), trainable=False, name="step")
        for slot in self.slots:
            self._slots[slot] = [
                tg.Variable(np.zeros(v.shape, v.dtype), trainable=False, name=f"{slot}/{v.name}")
                for v in variables
            ]

    def apply(self, grads: Sequence[tg.Tensor], variables: Sequence[tg.Variable]) -> None:
        """Update each variable from its gradient."""
        self.build(variables)
        assert self._step is not None
        self._step.assign_add(1)
        self._update(grads, variables)

    def _update(self, grads: Sequence[tg.Tensor], variables: Sequence[tg.Variable]) -> None:
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray]:
        """The optimizer's state as named arrays (``step``, ``<slot>/<variable>``)."""
        if self._step is None:
            return {}
        state = {"step": np.array(self._step.numpy())}
        for variables in self._slots.values():
            state |= {v.name: np.array(v.numpy()) for v in variables}
        return state

    def load_state(self, state: Mapping[str, np.ndarray],
                   variables: Sequence[tg.Variable]) -> None:
        """Continue from a state written by :meth:`state` for the same variables."""
        if not state:
            return
        self.build(variables)
        assert self._step is not None
        self._step.assign(np.asarray(state["step"], dtype=np.int64))
        for slot_variables in self._slots.values():
            for v in slot_variables:
                v.assign(state[v.name])


class SGD(Optimizer):
    """Plain gradient descent: ``w -= learning_rate * g`` (the tutorial's ``assign_sub``)."""

    def __init__(self, learning_rate: float = 0.1) -> None:
        super().__init__()
        self.learning_rate = learning_rate

    def _update(self, grads: Sequence[tg.Tensor], variables: Sequence[tg.Variable]) -> None:
        for grad, var in zip(grads, variables, strict=True):
            var.assign_sub(grad * self.learning_rate)


class Momentum(Optimizer):
    """SGD with (optionally Nesterov) momentum, as ``keras.optimizers.SGD(momentum=...)``:
    ``v = momentum v - lr g``, then ``w += v`` (Nesterov: ``w += momentum v - lr g``)."""

    slots = ("velocity",)

    def __init__(
        self, learning_rate: float = 0.1, momentum: float = 0.9, nesterov: bool = False
    ) -> None:
        super().__init__()
        self.learning_rate, self.momentum, self.nesterov = learning_rate, momentum, nesterov

    def _update(self, grads: Sequence[tg.Tensor], variables: Sequence[tg.Variable]) -> None:
        dtype = variables[0].dtype.type
        lr, mu = dtype(self.learning_rate), dtype(self.momentum)
        for grad, var, velocity in zip(grads, variables, self._slots["velocity"], strict=True):
            step = lr * grad
            velocity.assign(mu * velocity - step)
            var.assign_add(mu * velocity - step if self.nesterov else velocity.value())


class Adam(Optimizer):
    """Adam as ``keras.optimizers.Adam``: moments ``m += (g - m)(1 - beta_1)``,
    ``v += (g² - v)(1 - beta_2)``, and ``w -= alpha m / (sqrt(v) + epsilon)`` with the bias
    correction folded into ``alpha = lr sqrt(1 - beta_2^t) / (1 - beta_1^t)``."""

    slots = ("m", "v")

    def __init__(
        self,
        learning_rate: float = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
    ) -> None:
        super().__init__()
        self.learning_rate, self.beta_1, self.beta_2 = learning_rate, beta_1, beta_2
        self.epsilon = epsilon

    def _update(self, grads: Sequence[tg.Tensor], variables: Sequence[tg.Variable]) -> None:
        assert self._step is not None
        dtype = variables[0].dtype.type
        one = dtype(1)
        keep_m, keep_v = one - dtype(self.beta_1), one - dtype(self.beta_2)
        eps = dtype(self.epsilon)
        # alpha in float64 (then rounded once to the variables' dtype), from the step variable.
        t = tg.cast(self._step, tg.float64)
        alpha = tg.cast(
            self.learning_rate * tg.sqrt(1.0 - tg.pow(self.beta_2, t))
            / (1.0 - tg.pow(self.beta_1, t)),
            variables[0].dtype,
        )
        for grad, var, m, v in zip(grads, variables, self._slots["m"], self._slots["v"],
                                   strict=True):
            m.assign(m + (grad - m) * keep_m)
            v.assign(v + (grad * grad - v) * keep_v)
            var.assign_sub(alpha * m / (tg.sqrt(v) + eps))


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "momentum": Momentum, "adam": Adam}


def make_optimizer(spec: Mapping[str, Any]) -> Optimizer:
    """Build an optimizer from its spec, e.g. ``{"kind": "adam", "learning_rate": 0.01}``."""
    params = {k: v for k, v in spec.items() if k != "kind"}
    try:
        cls = OPTIMIZERS[spec["kind"]]
    except KeyError as error:
        raise ValueError(f"unknown optimizer kind {spec.get('kind')!r}") from error
    return cls(**params)
