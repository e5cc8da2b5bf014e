"""The epoch loop compiles its step and its forward passes (TAPELINE_COMPILE, on by default):
whole runs give the same bits compiled and eager — every history row's loss, metrics and
params, the outcome (early stopping and restore_best included), the optimizer's state — for
every model kind, loss, optimizer, regularization, full batch and mini-batches (the last short
batch its own signature), with validation; and a compiled run resumed from its LoopState is
the same as one eager run straight through."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from service.config import get_settings
from service.training import loop as loop_module
from service.training.data import blobs, synthesize
from service.training.kinds import MLP, Kind, Linear, Logistic, Model
from service.training.loop import Compiling, Examples, Fit, validation_split
from service.training.records import EarlyStopping, EpochRecord, FitSpec, LoopState, Outcome
from tests.training.test_loop import _roundtrip, train

SGD = {"kind": "sgd", "learning_rate": 0.05}
MOMENTUM = {"kind": "momentum", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True}
ADAM = {"kind": "adam", "learning_rate": 0.05}

# (kind, dtype, spec, validation fraction): every kind, loss and optimizer, l1/l2, full batch
# and mini-batches (60 training rows: batch 16 leaves a short batch of 12), shuffled or not,
# early stopping that stops (a min_delta nothing meets) with and without restore_best.
CASES: list[tuple[Kind, str, dict[str, Any], float | None]] = [
    (Linear(2), "float32", {"loss": "mse", "optimizer": SGD}, None),
    (Linear(2), "float32", {"loss": "huber", "huber_delta": 0.5, "optimizer": MOMENTUM,
                            "batch_size": 16, "l1": 0.01, "l2": 0.02}, 0.25),
    (Linear(2), "float64", {"loss": "mae", "optimizer": ADAM, "batch_size": 16,
                            "early_stopping": EarlyStopping("val_loss", 2, 10.0, True)}, 0.25),
    (Logistic(2), "float32", {"loss": "cross_entropy", "optimizer": ADAM, "batch_size": 7,
                              "shuffle": False, "l2": 0.01}, None),
    (Logistic(2, 3), "float32", {"loss": "cross_entropy", "optimizer": SGD, "l1": 0.01,
                                 "early_stopping": EarlyStopping("accuracy", 2, 1.0, False)},
     0.25),
    (MLP(2, (8,), "tanh", "classification", 3), "float32",
     {"loss": "cross_entropy", "optimizer": ADAM, "batch_size": 16, "shuffle_seed": 4,
      "early_stopping": EarlyStopping("val_accuracy", 3, 0.0, True)}, 0.25),
    (MLP(2, (6, 5), "relu"), "float32", {"loss": "mae", "optimizer": MOMENTUM, "l1": 0.001},
     0.25),
    (MLP(2, (4,), "sigmoid"), "float64", {"loss": "mse", "optimizer": SGD, "batch_size": 16,
                                          "l2": 0.01}, None),
]


def data_for(kind: Kind) -> Examples:
    if kind.task == "classification":
        x, y = blobs(80, 2, kind.num_classes or 2, spread=2.5, seed=5)
        return Examples(x, y)
    x, y = synthesize(80, seed=5)
    x2 = np.hstack([x, np.cos(x)])
    return Examples(x2, y.astype(np.float64) + 0.5 * x2[:, 1])


def fingerprint(items: list[EpochRecord | Outcome], loop: Fit) -> list[Any]:
    """Everything a run reports, as bytes where it is numbers."""
    seen: list[Any] = []
    for item in items:
        params = item.params or {}
        seen.append((type(item).__name__, getattr(item, "epoch", None), item.loss.hex(),
                     {k: v.hex() for k, v in item.metrics.items()},
                     {k: (v.dtype.str, v.tobytes()) for k, v in params.items()},
                     getattr(item, "stopped_early", None)))
    seen.append({k: np.asarray(v).tobytes() for k, v in loop.optimizer.state().items()})
    return seen


def whole_run(kind: Kind, dtype: str, spec: dict[str, Any], fraction: float | None,
              compiled: bool, epochs: int = 6) -> tuple[list[EpochRecord | Outcome], Fit]:
    data, held = data_for(kind), None
    if fraction is not None:
        data, held = validation_split(data, fraction)
    spec = {"shuffle_seed": 7, **spec}
    loop = Fit(Model(kind, kind.initial(1), dtype), data, FitSpec(epochs=epochs, **spec), held,
               compiled=compiled)
    return list(loop.run()), loop


@pytest.mark.parametrize("compile_after", [0, 3])
@pytest.mark.parametrize(("kind", "dtype", "spec", "fraction"), CASES,
                         ids=[f"{k.name}-{d}-{s['loss']}-{s['optimizer']['kind']}-"
                              f"{s.get('batch_size', 'full')}" for k, d, s, _ in CASES])
def test_whole_runs_are_bit_identical_compiled_and_eager(kind: Kind, dtype: str,
                                                         spec: dict[str, Any],
                                                         fraction: float | None,
                                                         compile_after: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiled from the first call of each batch shape, and after 3 eager calls (the switch
    in the middle of the run)."""
    monkeypatch.setattr(loop_module, "COMPILE_AFTER", compile_after)
    eager, eager_loop = whole_run(kind, dtype, spec, fraction, compiled=False)
    compiled, compiled_loop = whole_run(kind, dtype, spec, fraction, compiled=True)
    assert fingerprint(compiled, compiled_loop) == fingerprint(eager, eager_loop)
    assert not eager_loop.compiled and not isinstance(eager_loop._step, Compiling)
    assert isinstance(compiled_loop._step, Compiling) and compiled_loop.compiled
    outcome = compiled[-1]
    assert isinstance(outcome, Outcome)
    if "early_stopping" in spec:  # the rule ended these runs early
        assert outcome.stopped_early is not None
    # each batch shape traced once: the full batch, or the mini-batches and the short last one
    # (a run that early stopping ends soon may not reach the calls that compile one)
    n = math.ceil(80 * (1 - fraction)) if fraction else 80
    batch = spec.get("batch_size")
    shapes = 1 if batch is None else len({min(batch, n - lo) for lo in range(0, n, batch)})
    traces = compiled_loop._step.trace_count  # type: ignore[attr-defined]
    if "early_stopping" in spec:
        assert traces <= shapes
    else:
        assert traces == shapes
    # the run released its plans (and their buffers) when it ended
    assert compiled_loop._step.compiled.plans() == []  # type: ignore[attr-defined]
    assert compiled_loop._forward.compiled.plans() == []  # type: ignore[attr-defined]
    for model_params in (eager_loop.model.params(), compiled_loop.model.params()):
        assert model_params.keys() == outcome.params.keys()
    assert all(np.array_equal(compiled_loop.model.params()[k], eager_loop.model.params()[k])
               for k in outcome.params)


def test_a_compiled_run_resumes_to_the_eager_run_straight_through(
        compile_setting: None) -> None:
    x, y = blobs(150, 2, 3, spread=2.0, seed=9)
    data, held = validation_split(Examples(x, y), 0.2)
    kind = MLP(2, (8,), "tanh", "classification", 3)
    spec = {"epochs": 8, "batch_size": 16, "shuffle_seed": 3,
            "optimizer": {"kind": "adam", "learning_rate": 0.05},
            "early_stopping": EarlyStopping("val_loss", patience=50)}
    with compile_env("false"):
        whole, final, eager = train(kind, kind.initial(2), data, validation=held, **spec)
    assert not eager.compiled
    with compile_env("true"):
        first, paused, loop = train(kind, kind.initial(2), data, validation=held,
                                    stop_after=3, **spec)
        assert loop.compiled and paused.cancelled and len(first) == 3
        state: LoopState = _roundtrip(loop.state())
        rest, resumed, again = train(kind, paused.params, data, validation=held, state=state,
                                     **spec)
    assert again.compiled and [r.epoch for r in rest] == [3, 4, 5, 6, 7]
    # both halves switched from eager calls to a compiled step (batches of 16) on the way
    assert loop._step.trace_count == again._step.trace_count == 1  # type: ignore[attr-defined]
    for a, b in zip(whole, [*first, *rest], strict=True):
        assert a.loss.hex() == b.loss.hex() and a.metrics == b.metrics
        assert a.params is not None and b.params is not None
        assert all(a.params[k].tobytes() == b.params[k].tobytes() for k in a.params)
    assert all(final.params[k].tobytes() == resumed.params[k].tobytes() for k in final.params)


@pytest.fixture
def compile_setting() -> Iterator[None]:
    """get_settings() reads the environment afresh in the test, and again after it."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


class compile_env:
    """TAPELINE_COMPILE set to ``value`` for a block (the settings re-read on entry and exit)."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __enter__(self) -> None:
        self.patch = pytest.MonkeyPatch()
        self.patch.setenv("TAPELINE_COMPILE", self.value)
        get_settings.cache_clear()

    def __exit__(self, *exc: object) -> None:
        self.patch.undo()
        get_settings.cache_clear()


def test_the_setting_turns_compilation_off_and_on(compile_setting: None) -> None:
    kind = Linear(2)
    data = data_for(kind)
    for value, expected in (("false", False), ("0", False), ("true", True)):
        with compile_env(value):
            loop = Fit(Model(kind, kind.initial(0), "float32"), data,
                       FitSpec(epochs=1, optimizer=SGD, loss="mse"))
            assert loop.compiled is expected
            assert isinstance(loop._step, Compiling) is expected
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("TAPELINE_COMPILE", raising=False)
        get_settings.cache_clear()
        loop = Fit(Model(kind, kind.initial(0), "float32"), data,
                   FitSpec(epochs=1, optimizer=SGD, loss="mse"))
    assert loop.compiled  # the default
