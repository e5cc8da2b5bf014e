"""The training layer: the tutorial reproduced, optimizers against hand-written references."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from service.config import get_settings
from service.training import loop
from service.training.data import synthesize
from service.training.kinds import Linear, Model
from service.training.loop import Diverged, Examples, fit
from service.training.records import EpochRecord, FitSpec, Outcome


def LinearModel(W: Sequence[float], b: float, dtype: str = "float32") -> Model:
    """A linear model starting at W, b (the v1 class's signature)."""
    return Model(Linear(len(W)), {"W": np.asarray(W), "b": np.asarray(b)}, dtype)


def sgd(learning_rate: float) -> dict[str, Any]:
    return {"kind": "sgd", "learning_rate": learning_rate}


def run(model: Model, x: np.ndarray, y: np.ndarray, *, epochs: int,
        optimizer: dict[str, Any], should_stop: Callable[[], bool] = lambda: False,
        **spec: Any) -> tuple[list[EpochRecord], Outcome]:
    items = list(fit(model, Examples(x, y), FitSpec(epochs=epochs, optimizer=optimizer,
                                                    loss=spec.pop("loss", "mse"), **spec),
                     should_stop=should_stop))
    records, outcome = items[:-1], items[-1]
    assert isinstance(outcome, Outcome)
    assert all(isinstance(r, EpochRecord) for r in records)
    return records, outcome  # type: ignore[return-value]


def W_of(item: EpochRecord | Outcome) -> list[float]:
    assert item.params is not None
    return item.params["W"].tolist()


def b_of(item: EpochRecord | Outcome) -> float:
    assert item.params is not None
    return float(item.params["b"])


@pytest.fixture(params=["true", "false"])
def compile_setting(request: pytest.FixtureRequest,
                    monkeypatch: pytest.MonkeyPatch) -> Iterator[bool]:
    """TAPELINE_COMPILE on (the default; here every step compiled, from the first) and off,
    read afresh by the loop."""
    monkeypatch.setenv("TAPELINE_COMPILE", request.param)
    monkeypatch.setattr(loop, "COMPILE_AFTER", 0)
    get_settings.cache_clear()
    yield request.param == "true"
    get_settings.cache_clear()


@pytest.mark.parametrize("case", ["seed_defaults", "small_lr_long"])
def test_fit_reproduces_tensorflow(tf_cases: dict[str, Any], case: str,
                                   compile_setting: bool) -> None:
    """Compiled (the default) and eager (TAPELINE_COMPILE=false) alike."""
    ref = tf_cases[case]
    x = np.asarray(ref["x"], dtype=np.float32).reshape(-1, 1)
    y = np.asarray(ref["y"], dtype=np.float32)
    model = LinearModel([ref["initial"]["W"]], ref["initial"]["b"])
    records, outcome = run(model, x, y, epochs=ref["epochs"],
                           optimizer=sgd(ref["learning_rate"]))
    history = ref["history"]
    assert [r.epoch for r in records] == history["epoch"]
    np.testing.assert_allclose([W_of(r)[0] for r in records], history["W"], rtol=1e-5)
    np.testing.assert_allclose([b_of(r) for r in records], history["b"], rtol=1e-5)
    np.testing.assert_allclose([r.loss for r in records], history["loss"], rtol=1e-5)
    np.testing.assert_allclose([W_of(outcome)[0], b_of(outcome)],
                               [ref["final"]["W"], ref["final"]["b"]], rtol=1e-5)
    assert not outcome.cancelled
    final_pred = x[:, 0] * np.float32(W_of(outcome)[0]) + np.float32(b_of(outcome))
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
    _, outcome = run(model, x64, y64, epochs=25, optimizer=spec)
    params = {k: v for k, v in spec.items() if k != "kind"}
    W, b = reference(kind, 25, x64, y64, **params)
    np.testing.assert_allclose(W_of(outcome), W, rtol=1e-9, atol=1e-12)
    assert b_of(outcome) == pytest.approx(b, rel=1e-9, abs=1e-12)


def test_optimizers_converge_to_the_true_line() -> None:
    x, y = synthesize(2000, [3.0, -1.0], 2.0, 0.1, seed=11)
    for optimizer in (sgd(0.1), {"kind": "momentum", "learning_rate": 0.05},
                      {"kind": "momentum", "learning_rate": 0.05, "nesterov": True},
                      {"kind": "adam", "learning_rate": 0.1}):
        _, outcome = run(LinearModel([0.0, 0.0], 0.0), x, y, epochs=150, optimizer=optimizer)
        np.testing.assert_allclose(W_of(outcome), [3.0, -1.0], atol=0.05)
        assert b_of(outcome) == pytest.approx(2.0, abs=0.05)


def test_minibatches_are_deterministic_per_seed_and_visit_every_example() -> None:
    x, y = synthesize(103, [2.0], 1.0, 0.5, seed=5)

    def history(seed: int) -> list[tuple[list[float], float, float]]:
        records, _ = run(LinearModel([0.0], 0.0, dtype="float64"), x.astype(np.float64),
                         y.astype(np.float64), epochs=3, optimizer=sgd(0.01), batch_size=10,
                         shuffle_seed=seed)
        return [(W_of(r), b_of(r), r.loss) for r in records]

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
                     optimizer=sgd(0.01), batch_size=10, shuffle_seed=1)
    np.testing.assert_allclose(W_of(outcome), W, rtol=1e-12)
    assert b_of(outcome) == pytest.approx(b, rel=1e-12)


def test_divergence_is_detected_with_its_epoch() -> None:
    x, y = synthesize(100, [3.0], 2.0, 1.0, seed=0)
    with pytest.raises(Diverged) as caught:
        run(LinearModel([5.0], 0.0), x, y, epochs=500, optimizer=sgd(5.0))
    assert 0 < caught.value.epoch < 500
    assert "finite" in caught.value.detail or "inf" in caught.value.detail


def test_should_stop_cancels_at_an_epoch_boundary() -> None:
    x, y = synthesize(100, [3.0], 2.0, 1.0, seed=0)
    calls = iter(range(100))
    records, outcome = run(LinearModel([5.0], 0.0), x, y, epochs=10, optimizer=sgd(0.1),
                           should_stop=lambda: next(calls) >= 4)
    assert len(records) == 4 and outcome.cancelled
    assert W_of(outcome) != [5.0]


def test_float64_runs_stay_float64() -> None:
    x, y = synthesize(100, [3.0], 2.0, 1.0, seed=0)
    r32, _ = run(LinearModel([5.0], 0.0), x, y, epochs=3, optimizer=sgd(0.1))
    r64, _ = run(LinearModel([5.0], 0.0, dtype="float64"), x.astype(np.float64),
                 y.astype(np.float64), epochs=3, optimizer=sgd(0.1))
    assert W_of(r32[2]) != W_of(r64[2])
    assert W_of(r32[2])[0] == pytest.approx(W_of(r64[2])[0], rel=1e-5)
    assert float(np.float32(W_of(r32[2])[0])) == W_of(r32[2])[0]
