"""Losses, one row each: the mean per-example loss of outputs against targets, written with
engine ops so the tape differentiates them, and the task each one fits.

Classification losses take logits and apply the sigmoid or softmax themselves, in forms that
neither overflow nor lose the gradient at large logits (TensorFlow's own forms).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from service import engine as tg
from service.training.kinds import Task

LossFn = Callable[[tg.Tensor, tg.Tensor, float], tg.Tensor]


def mean_squared_error(targets: tg.Tensor, outputs: tg.Tensor, delta: float) -> tg.Tensor:
    """The tutorial's loss: ``reduce_mean(square(targets - outputs))``."""
    return tg.reduce_mean(tg.square(targets - outputs))


def mean_absolute_error(targets: tg.Tensor, outputs: tg.Tensor, delta: float) -> tg.Tensor:
    """``reduce_mean(abs(targets - outputs))``."""
    return tg.reduce_mean(tg.abs(targets - outputs))


def huber(targets: tg.Tensor, outputs: tg.Tensor, delta: float) -> tg.Tensor:
    """Squared below ``delta``, linear above: ``0.5 e²`` where ``|e| <= delta``, else
    ``delta |e| - 0.5 delta²`` (Keras' form)."""
    error = outputs - targets
    size = tg.abs(error)
    return tg.reduce_mean(
        tg.where(size <= delta, 0.5 * tg.square(error), delta * size - 0.5 * delta * delta)
    )


def cross_entropy(targets: tg.Tensor, outputs: tg.Tensor, delta: float) -> tg.Tensor:
    """Binary cross-entropy of one logit per example against 0/1 targets, or categorical
    cross-entropy of K logits against one-hot rows, from the logits.

    Binary: ``max(z, 0) - z y + log(1 + e^-|z|)``, with the max and |z| written as selections
    on ``z >= 0`` so that at ``z = 0`` the gradient is ``sigmoid(0) - y`` (as TensorFlow's
    ``sigmoid_cross_entropy_with_logits``). Categorical: ``logsumexp(z) - z[y]``, the log-sum-exp
    taken after subtracting the row maximum (held constant: it cancels out of the gradient).
    """
    if outputs.ndim == 1:
        positive = outputs >= 0
        relu_part = tg.where(positive, outputs, 0.0)
        negative_abs = tg.where(positive, -outputs, outputs)
        return tg.reduce_mean(relu_part - outputs * targets + tg.softplus(negative_abs))
    top = tg.stop_gradient(tg.reduce_max(outputs, axis=1, keepdims=True))
    shifted = outputs - top
    log_sum = tg.log(tg.reduce_sum(tg.exp(shifted), axis=1))
    picked = tg.reduce_sum(shifted * targets, axis=1)
    return tg.reduce_mean(log_sum - picked)


@dataclass(frozen=True)
class Loss:
    """A loss and the task it fits."""

    fn: LossFn
    task: Task


LOSSES: dict[str, Loss] = {
    "mse": Loss(mean_squared_error, "regression"),
    "mae": Loss(mean_absolute_error, "regression"),
    "huber": Loss(huber, "regression"),
    "cross_entropy": Loss(cross_entropy, "classification"),
}


def penalty(params: Mapping[str, Any], kernels: tuple[str, ...], l1: float,
            l2: float) -> tg.Tensor | None:
    """``l1 Σ|w| + l2 Σw²`` over the kernels (None when both are 0), as Keras' L1L2."""
    total: tg.Tensor | None = None
    for name in kernels:
        if l1:
            term = l1 * tg.reduce_sum(tg.abs(params[name]))
            total = term if total is None else total + term
        if l2:
            term = l2 * tg.reduce_sum(tg.square(params[name]))
            total = term if total is None else total + term
    return total


def objective(name: str, delta: float, kernels: tuple[str, ...], l1: float,
              l2: float) -> Callable[[Mapping[str, Any], tg.Tensor, tg.Tensor], tg.Tensor]:
    """The training objective ``(params, targets, outputs) -> mean loss + penalty``."""
    fn = LOSSES[name].fn

    def compute(params: Mapping[str, Any], targets: tg.Tensor, outputs: tg.Tensor) -> tg.Tensor:
        loss = fn(targets, outputs, delta)
        extra = penalty(params, kernels, l1, l2)
        return loss if extra is None else loss + extra

    return compute
