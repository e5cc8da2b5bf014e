"""The epoch loop: the tutorial's ``training_loop``, with mini-batches and divergence checks."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np

from service import engine as tg
from service.training.models import LinearModel, mean_squared_error
from service.training.optimizers import Optimizer
from service.training.records import EpochRecord, Outcome


class Diverged(ArithmeticError):
    """The loss or a parameter stopped being finite."""

    def __init__(self, epoch: int, detail: str) -> None:
        super().__init__(detail)
        self.epoch = epoch
        self.detail = detail


def _check_finite(epoch: int, W: list[float], b: float, loss: float) -> None:
    if not np.isfinite(loss):
        raise Diverged(epoch, f"the loss became {loss} at epoch {epoch}")
    if not (np.all(np.isfinite(W)) and np.isfinite(b)):
        raise Diverged(epoch, f"the parameters stopped being finite at epoch {epoch}")


def fit(
    model: LinearModel,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    optimizer: Optimizer,
    batch_size: int | None = None,
    shuffle_seed: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[EpochRecord | Outcome]:
    """Train ``model`` epoch by epoch, yielding an :class:`EpochRecord` per epoch and then one
    :class:`Outcome`; raises :class:`Diverged` when numbers stop being finite.

    Full batch (``batch_size`` None or >= examples) is exactly the tutorial: one gradient step
    an epoch, logging the loss the step's own tape computed. Mini-batches visit the examples
    in an order shuffled each epoch by ``shuffle_seed``.
    """
    dtype = model.W.dtype
    xs, ys = tg.constant(x, dtype=dtype), tg.constant(y, dtype=dtype)
    n = x.shape[0]
    full_batch = batch_size is None or batch_size >= n
    rng = np.random.default_rng(shuffle_seed)
    variables = model.variables
    with np.errstate(all="ignore"):
        for epoch in range(epochs):
            if should_stop():
                W, b = model.parameters()
                yield Outcome(True, W, b, float(mean_squared_error(ys, model(xs)).numpy()))
                return
            start = time.perf_counter()
            W, b = model.parameters()
            if full_batch:
                with tg.GradientTape() as tape:
                    loss_t = mean_squared_error(ys, model(xs))
                loss = float(loss_t.numpy())
                _check_finite(epoch, W, b, loss)
                optimizer.apply(tape.gradient(loss_t, variables), variables)
            else:
                assert batch_size is not None
                loss = float(mean_squared_error(ys, model(xs)).numpy())
                _check_finite(epoch, W, b, loss)
                order = rng.permutation(n)
                for lo in range(0, n, batch_size):
                    idx = order[lo : lo + batch_size]
                    xb, yb = tg.constant(x[idx], dtype=dtype), tg.constant(y[idx], dtype=dtype)
                    with tg.GradientTape() as tape:
                        batch_loss = mean_squared_error(yb, model(xb))
                    optimizer.apply(tape.gradient(batch_loss, variables), variables)
            yield EpochRecord(epoch, W, b, loss, (time.perf_counter() - start) * 1000.0)
        W, b = model.parameters()
        loss = float(mean_squared_error(ys, model(xs)).numpy())
        _check_finite(epochs, W, b, loss)
        yield Outcome(False, W, b, loss)
