"""Optimizers with Keras' update rules, written with engine ops on Variables.

An optimizer keeps its state in engine Variables of its own: the step count, and for
momentum and Adam one flat vector per slot (velocity; first and second moments) holding
every trained variable's elements end to end. An update is engine ops and ``assign_*`` calls
only, with no NumPy on gradients and nothing read back to Python; an optimizer with state
updates all variables in one pass over the flat vectors (a dozen ops a step, not a dozen per
variable; elementwise ops give each element the same result either way). ``state()`` and
``load_state()`` move the state in and out as named NumPy arrays, so a run's loop can be
checkpointed and resumed exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from service import engine as tg


class Optimizer:
    """Base: the step count, and the slot vectors created on the first update."""

    slots: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self._step = tg.Variable(np.int64(0), trainable=False, name="step")
        self._slots: dict[str, tg.Variable] = {}

    def build(self, variables: Sequence[tg.Variable]) -> None:
        """Create the slot vectors (zeros) for these variables, unless they exist: before the
        first update, since a compiled step may not create variables."""
        if self.slots and not self._slots:
            size = sum(math.prod(v.shape) for v in variables)
            self._slots = {slot: tg.Variable(np.zeros(size, variables[0].dtype),
                                             trainable=False, name=slot)
                           for slot in self.slots}

    def apply(self, grads: Sequence[tg.Tensor], variables: Sequence[tg.Variable]) -> None:
        """Update each variable from its gradient."""
        self.build(variables)
        self._step.assign_add(1)
        self._update(grads, variables)

    def _update(self, grads: Sequence[tg.Tensor], variables: Sequence[tg.Variable]) -> None:
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray]:
        """The optimizer's state as named arrays: ``step`` and each slot vector."""
        state = {"step": np.array(self._step.numpy())}
        return state | {name: np.array(slot.numpy()) for name, slot in self._slots.items()}

    def load_state(self, state: Mapping[str, np.ndarray],
                   variables: Sequence[tg.Variable]) -> None:
        """Continue from a state written by :meth:`state` for the same variables (an empty
        one is a fresh start)."""
        if not state:
            return
        self._step.assign(np.asarray(state["step"], dtype=np.int64))
        self._slots = {slot: tg.Variable(np.asarray(state[slot], dtype=variables[0].dtype),
                                         trainable=False, name=slot)
                       for slot in self.slots if slot in state}


def flat(grads: Sequence[tg.Tensor]) -> tg.Tensor:
    """Every gradient's elements end to end, in the variables' order."""
    return tg.concat([tg.reshape(grad, (math.prod(grad.shape),)) for grad in grads], axis=0)


def add_to(variables: Sequence[tg.Variable], delta: tg.Tensor, sign: int = 1) -> None:
    """Add (``sign`` -1: subtract) each variable's stretch of a flat ``delta`` to it."""
    start = 0
    for var in variables:
        size = math.prod(var.shape)
        piece = tg.reshape(delta[start:start + size], var.shape)
        if sign > 0:
            var.assign_add(piece)
        else:
            var.assign_sub(piece)
        start += size


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
        velocity = self._slots["velocity"]
        step = lr * flat(grads)
        velocity.assign(mu * velocity - step)
        add_to(variables, mu * velocity - step if self.nesterov else velocity.value())


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
        m, v = self._slots["m"], self._slots["v"]
        g = flat(grads)
        m.assign_add((g - m) * keep_m)
        v.assign_add((g * g - v) * keep_v)
        add_to(variables, alpha * m / (tg.sqrt(v) + eps), sign=-1)


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "momentum": Momentum, "adam": Adam}


def make_optimizer(spec: Mapping[str, Any]) -> Optimizer:
    """Build an optimizer from its spec, e.g. ``{"kind": "adam", "learning_rate": 0.01}``."""
    params = {k: v for k, v in spec.items() if k != "kind"}
    try:
        cls = OPTIMIZERS[spec["kind"]]
    except KeyError as error:
        raise ValueError(f"unknown optimizer kind {spec.get('kind')!r}") from error
    return cls(**params)
