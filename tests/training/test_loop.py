"""The epoch loop: optimizers exactly as their NumPy form, validation, early stopping as
Keras' rule, mini-batches in row order, and a run resumed exactly from its saved state."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load, save

from service.training.data import blobs, synthesize
from service.training.kinds import MLP, Kind, Linear, Logistic, Model
from service.training.loop import Examples, Fit, validation_split
from service.training.records import (
    Best,
    EarlyStopping,
    EpochRecord,
    FitSpec,
    LoopState,
    Outcome,
)


def train(kind: Kind, params: dict[str, np.ndarray], data: Examples, dtype: str = "float32",
          validation: Examples | None = None, state: LoopState | None = None,
          stop_after: int | None = None, **spec: Any
          ) -> tuple[list[EpochRecord], Outcome, Fit]:
    spec.setdefault("loss", kind.default_loss)
    loop = Fit(Model(kind, params, dtype), data, FitSpec(**spec), validation, state)
    calls = iter(range(10**6))
    items = list(loop.run(lambda: stop_after is not None and next(calls) >= stop_after))
    assert isinstance(items[-1], Outcome)
    return items[:-1], items[-1], loop  # type: ignore[return-value]


def numpy_linear(x: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.float32, spec: dict[str, Any],
                 epochs: int) -> list[tuple[np.ndarray, np.float32]]:
    """v1's optimizers, as NumPy on float32 gradients: the states at the start of each epoch
    and the final one."""
    n = np.float32(len(y))
    lr = np.float32(spec["learning_rate"])
    m = [np.zeros_like(W), np.zeros_like(b)]
    v = [np.zeros_like(W), np.zeros_like(b)]
    states = []
    for t in range(1, epochs + 1):
        states.append((W.copy(), b))
        error = (y - (x @ W + b)).astype(np.float32)  # the tape's gradients of mean((y - f)^2)
        grads = [-(np.float32(2) * error / n) @ x, -np.sum(np.float32(2) * error / n)]
        params = [W, b]
        for i, g in enumerate(grads):
            if spec["kind"] == "sgd":
                params[i] = params[i] - spec["learning_rate"] * g
            elif spec["kind"] == "momentum":
                mu = np.float32(spec["momentum"])
                m[i] = mu * m[i] - lr * g
                params[i] = params[i] + (mu * m[i] - lr * g if spec["nesterov"] else m[i])
            else:
                b1, b2 = np.float32(0.9), np.float32(0.999)
                alpha = np.float32(spec["learning_rate"] * math.sqrt(1 - 0.999**t) / (1 - 0.9**t))
                m[i] = m[i] + (g - m[i]) * (1 - b1)
                v[i] = v[i] + (g * g - v[i]) * (1 - b2)
                params[i] = params[i] - alpha * m[i] / (np.sqrt(v[i]) + np.float32(1e-7))
        W, b = params[0], np.float32(params[1])
    states.append((W, b))
    return states


@pytest.mark.parametrize("spec", [
    {"kind": "sgd", "learning_rate": 0.1},
    {"kind": "momentum", "learning_rate": 0.05, "momentum": 0.9, "nesterov": False},
    {"kind": "momentum", "learning_rate": 0.05, "momentum": 0.8, "nesterov": True},
    {"kind": "adam", "learning_rate": 0.1},
], ids=lambda s: f"{s['kind']}{'-nesterov' if s.get('nesterov') else ''}")
def test_optimizers_keep_their_numpy_numbers(spec: dict[str, Any]) -> None:
    """Engine-op optimizers on float32 give the same float32 numbers, bit for bit, as the
    same rules written in NumPy."""
    x, y = synthesize(64, [1.5], 0.3, 0.5, seed=3)
    records, outcome, _ = train(Linear(1), {"W": np.zeros(1), "b": np.array(0.0)},
                                Examples(x, y), epochs=12, optimizer=spec)
    expected = numpy_linear(x, y, np.zeros(1, np.float32), np.float32(0), spec, 12)
    got = [(r.params["W"], r.params["b"]) for r in records if r.params is not None]
    got.append((outcome.params["W"], outcome.params["b"]))
    for (W, b), (W_ref, b_ref) in zip(got, expected, strict=True):
        assert W.tolist() == W_ref.astype(np.float64).tolist() and float(b) == float(b_ref)


def test_validation_is_the_last_rows_and_measured_like_training() -> None:
    x, y = synthesize(10, [2.0], 1.0, 0.5, seed=1)
    train_part, held = validation_split(Examples(x, y), 0.25)
    assert len(train_part.y) == math.ceil(10 * 0.75) == 8
    assert np.array_equal(held.x, x[8:]) and np.array_equal(train_part.y, y[:8])
    records, outcome, _ = train(Linear(1), {"W": np.array([1.0]), "b": np.array(0.5)},
                                train_part, validation=held, epochs=3,
                                optimizer={"kind": "sgd", "learning_rate": 0.1})
    for row in [*records, outcome]:
        assert row.params is not None
        predicted = held.x[:, 0].astype(np.float64) * row.params["W"][0] + row.params["b"]
        residual = predicted - held.y
        assert row.metrics["val_mse"] == pytest.approx(np.mean(residual**2), rel=1e-6)
        assert row.metrics["val_loss"] == pytest.approx(np.mean(residual**2), rel=1e-6)
        assert row.metrics["val_mae"] == pytest.approx(np.mean(np.abs(residual)), rel=1e-6)
        assert set(row.metrics) == {"mse", "rmse", "mae", "r2", "val_loss", "val_mse",
                                    "val_rmse", "val_mae", "val_r2"}


def keras_stop(values: list[float], patience: int, min_delta: float,
               higher: bool) -> tuple[int, int] | None:
    """Keras' EarlyStopping over monitored values of states 0, 1, ...: (stop, best) or None."""
    best, best_at, wait = None, 0, 0
    for state, value in enumerate(values):
        better = best is None or (value - min_delta > best if higher
                                  else value + min_delta < best)
        if better:
            best, best_at, wait = value, state, 0
        else:
            wait += 1
            if wait >= patience:
                return state, best_at
    return None


@pytest.mark.parametrize(("monitor", "patience", "min_delta"), [
    ("val_loss", 2, 0.0), ("val_accuracy", 3, 0.0), ("loss", 1, 0.05), ("val_log_loss", 0, 0.0),
])
def test_early_stopping_follows_keras_rule(monitor: str, patience: int, min_delta: float) -> None:
    x, y = blobs(120, 2, 3, spread=3.0, seed=4)
    data, held = validation_split(Examples(x, y), 0.3)
    kind = Logistic(2, 3)
    start = kind.initial(5)
    common = {"epochs": 40, "optimizer": {"kind": "adam", "learning_rate": 0.3}}
    full, final, _ = train(kind, start, data, validation=held, **common)
    values = [(r.loss if monitor == "loss" else r.metrics[monitor]) for r in full]
    values.append(final.loss if monitor == "loss" else final.metrics[monitor])
    expected = keras_stop(values, patience, min_delta, monitor.endswith("accuracy"))
    assert expected is not None, "the case should stop early"
    for restore in (True, False):
        rule = EarlyStopping(monitor, patience, min_delta, restore)
        records, outcome, _ = train(kind, start, data, validation=held, early_stopping=rule,
                                    **common)
        stop, best = expected
        assert outcome.stopped_early is not None
        assert (outcome.stopped_early.epoch, outcome.stopped_early.best_epoch) == (stop, best)
        assert [r.epoch for r in records] == list(range(stop))
        kept = full[best] if restore else (full[stop] if stop < len(full) else final)
        assert kept.params is not None
        assert all(np.array_equal(outcome.params[k], kept.params[k]) for k in kept.params)
        assert outcome.loss == kept.loss and outcome.metrics == kept.metrics


def test_rows_in_order_without_shuffle() -> None:
    x, y = synthesize(23, [2.0, -1.0], 0.5, 0.3, seed=2)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    records, outcome, _ = train(Linear(2), {"W": np.zeros(2), "b": np.array(0.0)},
                                Examples(x64, y64), dtype="float64", epochs=2, batch_size=5,
                                shuffle=False, optimizer={"kind": "sgd", "learning_rate": 0.05})
    W, b = np.zeros(2), 0.0
    for _ in range(2):
        for lo in range(0, 23, 5):
            xb, yb = x64[lo:lo + 5], y64[lo:lo + 5]
            residual = xb @ W + b - yb
            W, b = W - 0.05 * 2 * xb.T @ residual / len(yb), b - 0.05 * 2 * residual.mean()
    np.testing.assert_allclose(outcome.params["W"], W, rtol=1e-12)
    assert float(outcome.params["b"]) == pytest.approx(b, rel=1e-12)
    assert len(records) == 2


def _roundtrip(state: LoopState) -> LoopState:
    """The state through bytes: its arrays as safetensors, the rest as JSON."""
    arrays = save(state.optimizer) if state.optimizer else b""
    best = None
    if state.best is not None:
        best = {"value": state.best.value, "epoch": state.best.epoch, "loss": state.best.loss,
                "metrics": state.best.metrics, "wait": state.best.wait,
                "params": save(state.best.params)}
    text = json.dumps({"epoch": state.epoch, "rng": state.rng,
                       "best": None if best is None else {**best, "params": None}})
    plain = json.loads(text)
    restored_best = None
    if best is not None:
        restored_best = Best(**{**plain["best"], "params": load(best["params"])})
    return LoopState(plain["epoch"], load(arrays) if arrays else {}, plain["rng"], restored_best)


def test_a_run_resumes_exactly_from_its_saved_state() -> None:
    x, y = blobs(150, 2, 3, spread=2.0, seed=9)
    data, held = validation_split(Examples(x, y), 0.2)
    kind = MLP(2, (8,), "tanh", "classification", 3)
    spec = {"epochs": 8, "batch_size": 16, "shuffle_seed": 3,
            "optimizer": {"kind": "adam", "learning_rate": 0.05},
            "early_stopping": EarlyStopping("val_loss", patience=50)}
    whole, final, _ = train(kind, kind.initial(2), data, validation=held, **spec)
    first, paused, loop = train(kind, kind.initial(2), data, validation=held, stop_after=3,
                                **spec)
    assert paused.cancelled and len(first) == 3
    state = _roundtrip(loop.state())
    assert state.epoch == 3 and state.optimizer["step"] == 3 * math.ceil(120 / 16)
    rest, resumed, _ = train(kind, paused.params, data, validation=held, state=state, **spec)
    assert [r.epoch for r in rest] == [3, 4, 5, 6, 7]
    for a, b in zip(whole, [*first, *rest], strict=True):
        assert a.loss == b.loss and a.metrics == b.metrics
        assert a.params is not None and b.params is not None
        assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert all(np.array_equal(final.params[k], resumed.params[k]) for k in final.params)


def test_large_models_keep_no_params_per_row() -> None:
    x, y = blobs(40, 2, 2, seed=1)
    runs = [train(Logistic(2), Logistic(2).initial(None), Examples(x, y), epochs=3,
                  record_params=keep, optimizer={"kind": "sgd", "learning_rate": 0.01})
            for keep in (False, True)]
    (lean, lean_end, _), (full, full_end, _) = runs
    assert [r.params for r in lean] == [None] * 3
    assert [r.loss for r in lean] == [r.loss for r in full] and lean_end.loss == full_end.loss
    assert all(np.array_equal(lean_end.params[k], full_end.params[k]) for k in ("W", "b"))
