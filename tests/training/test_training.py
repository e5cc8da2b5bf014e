"""The training layer: the tutorial reproduced, optimizers against hand-written references."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from service.training.data import synthesize
from service.training.loop import Diverged, fit
from service.training.models import LinearModel
from service.training.optimizers import SGD, Adam, Momentum, make_optimizer
from service.training.records import EpochRecord, Outcome


def run(model: LinearModel, x: np.ndarray, y: np.ndarray, **kwargs: Any
        ) -> tuple[list[EpochRecord], Outcome]:
    items = list(fit(model, x, y, **kwargs))
    records, outcome = items[:-1], items[-1]
    assert isinstance(outcome, Outcome)
    assert all(isinstance(r, EpochRecord) for r in records)
    return records, outcome  # type: ignore[return-value]


@pytest.mark.parametrize("case", ["seed_defaults", "small_lr_long"])
def test_fit_reproduces_tensorflow(tf_cases: dict[str, Any], case: str) -> None:
    ref = tf_cases[case]
    x = np.asarray(ref["x"], dtype=np.float32).reshape(-1, 1)
    y = np.asarray(ref["y"], dtype=np.float32)
    model = LinearModel([ref["initial"]["W"]], ref["initial"]["b"])
    records, outcome = run(model, x, y, epochs=ref["epochs"],
                           optimizer=SGD(ref["learning_rate"]))
    history = ref["history"]
    assert [r.epoch for r in records] == history["epoch"]
    np.testing.assert_allclose([r.W[0] for r in records], history["W"], rtol=1e-5)
    np.testing.assert_allclose([r.b for r in records], history["b"], rtol=1e-5)
    np.testing.assert_allclose([r.loss for r in records], history["loss"], rtol=1e-5)
    np.testing.assert_allclose([outcome.W[0], outcome.b],
                               [ref["final"]["W"], ref["final"]["b"]], rtol=1e-5)
    assert not outcome.cancelled
    final_pred = x[:, 0] * np.float32(outcome.W[0]) + np.float32(outcome.b)
    assert outcome.loss == pytest.approx(float(np.mean((y - final_pred) ** 2)), rel=1e-5)


def _grads(W: np.ndarray, b: float, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    residual = x @ W + b - y
    return 2 * x.T @ residual / len(y), float(2 * residual.mean())


def reference(opt: str, steps: int, x: np.ndarray, y: np.ndarray, **p: float
              ) -> tuple[np.ndarray, float]:
    """Keras' update rules written out by hand in float64."""
    W, b = np.zeros(x.shape[1]), 0.0
    vW, vb, mW, mb, sW, sb = np.zeros_like(W), 0.0, np.zeros_like(W), 0.0, np.zeros_like(W), 0.0
    lr = p["learning_rate"]
    for t in range(1, steps + 1):
        gW, gb = _grads(W, b, x, y)
        if opt == "momentum":
            mu = p["momentum"]
            vW, vb = mu * vW - lr * gW, mu * vb - lr * gb
            if p.get("nesterov"):
                W, b = W + mu * vW - lr * gW, b + mu * vb - lr * gb
            else:
                W, b = W + vW, b + vb
        else:
            b1, b2, eps = p["beta_1"], p["beta_2"], p["epsilon"]
            mW, mb = b1 * mW + (1 - b1) * gW, b1 * mb + (1 - b1) * gb
            sW, sb = b2 * sW + (1 - b2) * gW**2, b2 * sb + (1 - b2) * gb**2
            alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
            W, b = W - alpha * mW / (np.sqrt(sW) + eps), b - alpha * mb / (np.sqrt(sb) + eps)
    return W, b


@pytest.mark.parametrize(("spec", "kind"), [
    ({"kind": "momentum", "learning_rate": 0.05, "momentum": 0.9}, "momentum"),
    ({"kind": "momentum", "learning_rate": 0.05, "momentum": 0.8, "nesterov": True}, "momentum"),
    ({"kind": "adam", "learning_rate": 0.1, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
     "adam"),
])
def test_optimizers_follow_keras_rules(spec: dict[str, Any], kind: str) -> None:
    x, y = synthesize(200, [1.5, -0.5], 0.3, 0.5, seed=3)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    model = LinearModel([0.0, 0.0], 0.0, dtype="float64")
    _, outcome = run(model, x64, y64, epochs=25, optimizer=make_optimizer(spec))
    params = {k: v for k, v in spec.items() if k != "kind"}
    W, b = reference(kind, 25, x64, y64, **params)
    np.testing.assert_allclose(outcome.W, W, rtol=1e-9, atol=1e-12)
    assert outcome.b == pytest.approx(b, rel=1e-9, abs=1e-12)


def test_optimizers_converge_to_the_true_line() -> None:
    x, y = synthesize(2000, [3.0, -1.0], 2.0, 0.1, seed=11)
    for optimizer in (SGD(0.1), Momentum(0.05, 0.9), Momentum(0.05, 0.9, nesterov=True),
                      Adam(0.1)):
        _, outcome = run(LinearModel([0.0, 0.0], 0.0), x, y, epochs=150, optimizer=optimizer)
        np.testing.assert_allclose(outcome.W, [3.0, -1.0], atol=0.05)
        assert outcome.b == pytest.approx(2.0, abs=0.05)


def test_minibatches_are_deterministic_per_seed_and_visit_every_example() -> None:
    x, y = synthesize(103, [2.0], 1.0, 0.5, seed=5)

    def history(seed: int) -> list[tuple[list[float], float, float]]:
        records, _ = run(LinearModel([0.0], 0.0, dtype="float64"), x.astype(np.float64),
                         y.astype(np.float64), epochs=3, optimizer=SGD(0.01), batch_size=10,
                         shuffle_seed=seed)
        return [(r.W, r.b, r.loss) for r in records]

    assert history(1) == history(1) and history(1) != history(2)
    # By hand: the same permutations, 11 steps an epoch (10 of 10 and one of 3).
    rng = np.random.default_rng(1)
    W, b = np.zeros(1), 0.0
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    for _ in range(3):
        order = rng.permutation(103)
        for lo in range(0, 103, 10):
            idx = order[lo:lo + 10]
            gW, gb = _grads(W, b, x64[idx], y64[idx])
            W, b = W - 0.01 * gW, b - 0.01 * gb
    _, outcome = run(LinearModel([0.0], 0.0, dtype="float64"), x64, y64, epochs=3,
                     optimizer=SGD(0.01), batch_size=10, shuffle_seed=1)
    np.testing.assert_allclose(outcome.W, W, rtol=1e-12)
    assert outcome.b == pytest.approx(b, rel=1e-12)


def test_divergence_is_detected_with_its_epoch() -> None:
    x, y = synthesize(100, [3.0], 2.0, 1.0, seed=0)
    with pytest.raises(Diverged) as caught:
        list(fit(LinearModel([5.0], 0.0), x, y, epochs=500, optimizer=SGD(5.0)))
    assert 0 < caught.value.epoch < 500
    assert "finite" in caught.value.detail or "inf" in caught.value.detail


def test_should_stop_cancels_at_an_epoch_boundary() -> None:
    x, y = synthesize(100, [3.0], 2.0, 1.0, seed=0)
    calls = iter(range(100))
    records, outcome = run(LinearModel([5.0], 0.0), x, y, epochs=10, optimizer=SGD(0.1),
                           should_stop=lambda: next(calls) >= 4)
    assert len(records) == 4 and outcome.cancelled
    assert outcome.W != [5.0]


def test_float64_runs_stay_float64() -> None:
    x, y = synthesize(100, [3.0], 2.0, 1.0, seed=0)
    r32, _ = run(LinearModel([5.0], 0.0), x, y, epochs=3, optimizer=SGD(0.1))
    r64, _ = run(LinearModel([5.0], 0.0, dtype="float64"), x.astype(np.float64),
                 y.astype(np.float64), epochs=3, optimizer=SGD(0.1))
    assert r32[2].W != r64[2].W
    assert r32[2].W[0] == pytest.approx(r64[2].W[0], rel=1e-5)
    assert float(np.float32(r32[2].W[0])) == r32[2].W[0]
