"""The epoch loop: the tutorial's ``training_loop`` generalised to every model kind, loss and
optimizer, with mini-batches, validation, early stopping and divergence checks.

Row e of the history is the model at the START of epoch e, measured over the training rows
(and the validation rows), as the tutorial logs W, b and the loss before each update. One
step function (forward pass, tape, optimizer) serves the full batch and every mini-batch; at
full batch its own forward pass gives the row, exactly as the tutorial computes the loss it
logs. Everything the loop carries between epochs is a :class:`LoopState`.

The step and the forward pass over a whole split run compiled with ``tg.function`` unless
``TAPELINE_COMPILE`` is false: each batch shape (the full batch, the mini-batches, the last
short batch) runs eagerly its first ``COMPILE_AFTER`` times, is then traced once and replayed
after, with the same bits as eager calls throughout. A mini-batch step takes the whole split
and the batch's row indices, and gathers the rows itself: compiled, into buffers of its own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from service import engine as tg
from service.config import get_settings
from service.training import metrics as m
from service.training.kinds import Model
from service.training.losses import objective
from service.training.optimizers import make_optimizer
from service.training.records import (
    Best,
    EpochRecord,
    FitSpec,
    LoopState,
    Outcome,
    Params,
    StoppedEarly,
)

# Calls of one batch shape run eagerly before it is compiled. Tracing a step costs ~5-20
# eager calls of it and a replay saves most of one, so a short run (the tutorial's 10
# full-batch epochs) never pays for a trace, and a long one compiles within its first epochs.
COMPILE_AFTER = 16
# A forward pass over a whole split (the logged row) runs the model on blocks of this many rows,
# so that its activations are a block's, not the split's. Eager and compiled calls block alike.
# A row's numbers are those of one pass over every row when the BLAS computes a row's products
# alike whatever the rows of the call, as OpenBLAS does for bench/mlp.py's MLPs; for some
# shapes (a few features, a few outputs) it picks its kernels by the call's size, and the
# row's loss and metrics then differ from one pass's in their last bits.
ROW_BLOCK = 1024

Batch = Callable[..., Any]  # a function of tensors: a batch's inputs and targets, ...


class Compiling:
    """``function`` of tensors (..., and last a row per example of the batch: its targets, or
    its row indices), called eagerly until the same shapes have come ``COMPILE_AFTER`` times,
    then through ``tg.function`` (the same bits either way). A batch of ``2 * ROW_BLOCK`` rows
    or more is compiled at once: its NumPy work outweighs a trace, and its plan's buffers
    spare it an eager call's fresh arrays."""

    def __init__(self, function: Batch) -> None:
        self.eager = function
        self.compiled = tg.function(function)
        self.calls: dict[tuple[tuple[int, ...], ...], int] = {}  # shapes -> eager calls
        self.released_traces = 0

    @property
    def trace_count(self) -> int:
        """Traces so far, released ones included."""
        return self.released_traces + int(self.compiled.trace_count)

    def release(self) -> None:
        """Drop the plans and their buffers now (the function and its loop refer to each
        other, so they would otherwise wait for the cyclic garbage collector)."""
        self.released_traces = self.trace_count
        self.compiled = tg.function(self.eager)
        self.calls.clear()

    def __call__(self, *tensors: tg.Tensor) -> Any:
        shapes = tuple(tensor.shape for tensor in tensors)
        seen = self.calls.get(shapes, 0)
        if seen < COMPILE_AFTER and shapes[-1][0] < 2 * ROW_BLOCK:
            self.calls[shapes] = seen + 1
            return self.eager(*tensors)
        return self.compiled(*tensors)


class Diverged(ArithmeticError):
    """The loss, a metric or a parameter stopped being finite."""

    def __init__(self, epoch: int, detail: str) -> None:
        super().__init__(detail)
        self.epoch = epoch
        self.detail = detail


@dataclass(frozen=True)
class Examples:
    """Inputs (examples, features) and their true values or class indices."""

    x: np.ndarray
    y: np.ndarray


def validation_split(examples: Examples, fraction: float) -> tuple[Examples, Examples]:
    """The first ceil(n (1 - fraction)) rows to train on and the rest to validate on, in
    order (as Keras' ``validation_split``, which takes the last rows)."""
    cut = math.ceil(len(examples.y) * (1 - fraction))
    return (Examples(examples.x[:cut], examples.y[:cut]),
            Examples(examples.x[cut:], examples.y[cut:]))


class _Prepared:
    """A split as the loop uses it: engine tensors of the inputs and targets (sharing their
    memory: the loop never writes them), and the true values in float64 for the metrics."""

    def __init__(self, model: Model, examples: Examples) -> None:
        self.x = np.asarray(examples.x, dtype=model.dtype)
        self.targets = model.kind.targets(examples.y, model.dtype)
        self.xs = tg.from_numpy(self.x)
        self.ts = tg.from_numpy(self.targets)
        self.y = np.asarray(examples.y, dtype=np.float64)
        self.n = self.x.shape[0]


class Fit:
    """Trains ``model`` on ``train`` as ``spec`` says; iterate :meth:`run` for the records."""

    def __init__(
        self,
        model: Model,
        train: Examples,
        spec: FitSpec,
        validation: Examples | None = None,
        state: LoopState | None = None,
        *,
        compiled: bool | None = None,
    ) -> None:
        self.model, self.spec = model, spec
        kind = model.kind
        self.task = kind.task
        self.train = _Prepared(model, train)
        self.validation = _Prepared(model, validation) if validation is not None else None
        self.objective = objective(spec.loss, spec.huber_delta, kind.kernels, spec.l1, spec.l2)
        self.optimizer = make_optimizer(spec.optimizer)
        self.rng = np.random.default_rng(spec.shuffle_seed)
        self.epoch, self.best = 0, None
        if state is not None:
            self.epoch, self.best = state.epoch, state.best
            self.optimizer.load_state(state.optimizer, model.variables)
            if state.rng is not None:
                self.rng.bit_generator.state = state.rng
        self.optimizer.build(model.variables)
        # ``compiled``: None reads TAPELINE_COMPILE. Compiled or not, the same NumPy calls run
        # in the same order, so every number is the same.
        self.compiled = get_settings().compile if compiled is None else compiled
        self._step: Batch = Compiling(self.batch_step) if self.compiled else self.batch_step
        self._forward: Batch = Compiling(self.forward) if self.compiled else self.forward

    def state(self) -> LoopState:
        """What the loop carries into its next epoch, as plain data."""
        return LoopState(
            epoch=self.epoch,
            optimizer=self.optimizer.state(),
            rng=dict(self.rng.bit_generator.state),
            best=None if self.best is None else replace(self.best),
        )

    def step(self, x: tg.Tensor, targets: tg.Tensor) -> tuple[tg.Tensor, tg.Tensor]:
        """One gradient step on a batch: the objective and outputs before the update."""
        model = self.model
        with tg.GradientTape() as tape:
            outputs = model(x)
            loss = self.objective(model.named, targets, outputs)
        self.optimizer.apply(tape.gradient(loss, model.variables), model.variables)
        return loss, outputs

    def batch_step(self, xs: tg.Tensor, ts: tg.Tensor,
                   rows: tg.Tensor | None = None) -> tuple[tg.Tensor, tg.Tensor] | None:
        """The loop's step: on inputs ``xs`` and targets ``ts`` whole (a full batch, its own
        logged row), :meth:`step`; or on the mini-batch of their ``rows``, gathered here (so a
        compiled step gathers into buffers of its own), returning nothing (no record logs a
        mini-batch's loss, so a compiled step does not compute it)."""
        if rows is None:
            return self.step(xs, ts)
        self.step(tg.gather(xs, rows), tg.gather(ts, rows))
        return None

    def forward(self, x: tg.Tensor, targets: tg.Tensor) -> tuple[tg.Tensor, tg.Tensor]:
        """The objective and outputs on a batch, with no tape and no update. Past
        ``2 * ROW_BLOCK`` rows the model runs on blocks of ``ROW_BLOCK`` rows (the last one
        longer), so that its layers' activations are a block's, not the whole split's; the
        objective then sees every row's outputs at once, as without blocks."""
        n = x.shape[0]
        if n < 2 * ROW_BLOCK:
            outputs = self.model(x)
        else:
            starts = range(0, n - ROW_BLOCK + 1, ROW_BLOCK)
            ends = [*starts[1:], n]
            outputs = tg.concat([self.model(x[lo:hi]) for lo, hi in zip(starts, ends, strict=True)],
                                axis=0)
        return self.objective(self.model.named, targets, outputs), outputs

    def evaluate(self, split: _Prepared) -> tuple[tg.Tensor, tg.Tensor]:
        """The objective and outputs over a whole split (compiled unless the loop is not)."""
        return self._forward(split.xs, split.ts)  # type: ignore[no-any-return]

    def _measure(self, loss: tg.Tensor, outputs: tg.Tensor, split: _Prepared,
                 prefix: str = "") -> dict[str, float]:
        found = {f"{prefix}{k}": v for k, v in m.measure(self.task, outputs.numpy(),
                                                          split.y).items()}
        if prefix:
            found = {f"{prefix}loss": float(loss.numpy()), **found}
        return found

    def _validation(self) -> dict[str, float]:
        if self.validation is None:
            return {}
        return self._measure(*self.evaluate(self.validation), self.validation, "val_")

    def _snapshot(self, epoch: int) -> Params | None:
        """The params at the start of ``epoch`` when something keeps them; raises
        :class:`Diverged` when they are not finite."""
        keep = self.spec.records_params(epoch) or self.spec.early_stopping is not None
        params = self.model.params() if keep else None
        _check_params(epoch, params.values() if params is not None else
                      [v.numpy() for v in self.model.variables])
        return params

    def _check(self, epoch: int, loss: float, metrics: dict[str, float]) -> None:
        if not np.isfinite(loss):
            raise Diverged(epoch, f"the loss became {loss} at epoch {epoch}")
        bad = [name for name, value in metrics.items() if not np.isfinite(value)]
        if bad:
            raise Diverged(epoch, f"{bad[0]} became {metrics[bad[0]]} at epoch {epoch}")

    def _stops(self, epoch: int, params: Params | None, loss: float,
               metrics: dict[str, float]) -> bool:
        """Early stopping's bookkeeping for the state at the start of ``epoch``; True when the
        run should end there."""
        rule = self.spec.early_stopping
        if rule is None or params is None:
            return False
        value = loss if rule.monitor == "loss" else metrics[rule.monitor]
        best = self.best
        if m.higher_is_better(rule.monitor):
            improved = best is None or value - rule.min_delta > best.value
        else:
            improved = best is None or value + rule.min_delta < best.value
        if improved:
            self.best = Best(value, epoch, params, loss, metrics)
            return False
        assert best is not None
        best.wait += 1
        return best.wait >= rule.patience

    def _end(self, epoch: int, params: Params, loss: float,
             metrics: dict[str, float]) -> Outcome:
        rule, best = self.spec.early_stopping, self.best
        if rule is None or best is None or best.wait < rule.patience:
            return Outcome(False, params, loss, metrics)
        stopped = StoppedEarly(epoch, best.epoch)
        if rule.restore_best:
            self.model.assign(best.params)
            return Outcome(False, best.params, best.loss, best.metrics, stopped)
        return Outcome(False, params, loss, metrics, stopped)

    def _state_now(self) -> tuple[Params, float, dict[str, float]]:
        """The params, objective and metrics of the model as it is, with no update."""
        params = self.model.params()
        validation = self._validation()
        loss_t, outputs = self.evaluate(self.train)
        loss = float(loss_t.numpy())
        return params, loss, {**self._measure(loss_t, outputs, self.train), **validation}

    def measured(self) -> tuple[Params, float, dict[str, float]]:
        """The params, objective and metrics of the model as it is now: what the run's final
        record would say if it ended here (a study's rung reads them from a checkpoint)."""
        try:
            return self._state_now()
        finally:
            for function in (self._step, self._forward):
                if isinstance(function, Compiling):
                    function.release()

    def run(self, should_stop: Callable[[], bool] = lambda: False
            ) -> Iterator[EpochRecord | Outcome]:
        """Yield an :class:`EpochRecord` per epoch trained, then one :class:`Outcome`; raises
        :class:`Diverged` when numbers stop being finite. ``should_stop`` is asked at every
        epoch boundary (then the outcome says ``cancelled``)."""
        try:
            yield from self._epochs(should_stop)
        finally:  # the compiled plans' buffers go with the run
            for function in (self._step, self._forward):
                if isinstance(function, Compiling):
                    function.release()

    def _epochs(self, should_stop: Callable[[], bool]) -> Iterator[EpochRecord | Outcome]:
        spec, train = self.spec, self.train
        full_batch = spec.batch_size is None or spec.batch_size >= train.n
        with np.errstate(all="ignore"):
            while self.epoch < spec.epochs:
                epoch = self.epoch
                if should_stop():
                    now, loss, metrics = self._state_now()
                    yield Outcome(True, now, loss, metrics)
                    return
                start = time.perf_counter()
                params = self._snapshot(epoch)
                validation = self._validation()
                loss, metrics = self._row(full_batch)
                metrics = {**metrics, **validation}
                self._check(epoch, loss, metrics)
                if self._stops(epoch, params, loss, metrics):
                    assert params is not None
                    yield self._end(epoch, params, loss, metrics)
                    return
                if not full_batch:
                    self._minibatches()
                self.epoch += 1
                yield EpochRecord(epoch, loss, metrics,
                                  params if spec.records_params(epoch) else None,
                                  (time.perf_counter() - start) * 1000.0)
            params, loss, metrics = self._state_now()
            _check_params(spec.epochs, params.values())
            self._check(spec.epochs, loss, metrics)
            self._stops(spec.epochs, params, loss, metrics)
            yield self._end(spec.epochs, params, loss, metrics)

    def _row(self, full_batch: bool) -> tuple[float, dict[str, float]]:
        """The logged row's loss and metrics on the training split (at full batch, from the
        epoch's step); its outputs go with it, rather than live on through the epoch."""
        train = self.train
        if full_batch:
            loss_t, outputs = self._step(train.xs, train.ts)
        else:
            loss_t, outputs = self.evaluate(train)
        return float(loss_t.numpy()), self._measure(loss_t, outputs, train)

    def _minibatches(self) -> None:
        spec, train = self.spec, self.train
        assert spec.batch_size is not None
        step, xs, ts = self._step, train.xs, train.ts
        order = self.rng.permutation(train.n) if spec.shuffle else np.arange(train.n)
        for lo in range(0, train.n, spec.batch_size):
            step(xs, ts, tg.constant(order[lo:lo + spec.batch_size]))


def _check_params(epoch: int, arrays: Iterable[np.ndarray]) -> None:
    if not all(np.isfinite(a).all() for a in arrays):
        raise Diverged(epoch, f"the parameters stopped being finite at epoch {epoch}")


def fit(
    model: Model,
    train: Examples,
    spec: FitSpec,
    validation: Examples | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[EpochRecord | Outcome]:
    """Train ``model`` as ``spec`` says: the records of :meth:`Fit.run`."""
    return Fit(model, train, spec, validation).run(should_stop)
