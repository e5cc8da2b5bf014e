"""Model kinds, losses and metrics: shapes and defaults, and every forward pass and loss
differentiated by the tape against central differences in float64."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from service import engine as tg
from service.training import losses, metrics
from service.training.kinds import (
    KINDS,
    MLP,
    Kind,
    Linear,
    Logistic,
    Model,
    make_kind,
    probabilities,
)
from tests.engine.gradcheck import check_grads

KIND_CASES: list[Kind] = [
    Linear(3),
    Logistic(3, 2),
    Logistic(3, 4),
    MLP(3, (4, 5), "relu", "regression"),
    MLP(3, (4,), "tanh", "classification", 3),
    MLP(3, (2, 3, 2), "sigmoid", "classification", 2),
]


def test_shapes_and_defaults_follow_the_contract() -> None:
    assert Linear(3).shapes() == {"W": (3,), "b": ()}
    assert Logistic(3).shapes() == {"W": (3,), "b": ()}
    assert Logistic(3, 4).shapes() == {"W": (3, 4), "b": (4,)}
    assert MLP(2, (16, 8), task="classification", classes=3).shapes() == {
        "W1": (2, 16), "b1": (16,), "W2": (16, 8), "b2": (8,), "W3": (8, 3), "b3": (3,)}
    assert MLP(2).shapes() == {"W1": (2, 16), "b1": (16,), "W2": (16, 1), "b2": (1,)}
    linear = Linear(2).initial(None)
    assert linear["W"].tolist() == [5.0, 5.0] and linear["b"].tolist() == 0.0
    assert all(not v.any() for v in Logistic(2, 3).initial(None).values())
    assert MLP(2).param_count() == 2 * 16 + 16 + 16 + 1
    assert (Linear(2).task, Logistic(2).task, MLP(2, task="classification").task) == (
        "regression", "classification", "classification")
    assert Logistic(2, 5).num_classes == 5 and MLP(2).num_classes is None
    assert [k.default_loss for k in (Linear(1), Logistic(1))] == ["mse", "cross_entropy"]
    assert MLP(2, (3,)).kernels == ("W1", "W2") and Linear(2).kernels == ("W",)


def test_glorot_uniform_is_seeded_and_bounded() -> None:
    kind = MLP(20, (30,), task="classification", classes=4)
    first, again, other = kind.initial(7), kind.initial(7), kind.initial(8)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["W1"], other["W1"])
    for name, (fan_in, fan_out) in (("W1", (20, 30)), ("W2", (30, 4))):
        limit = math.sqrt(6 / (fan_in + fan_out))
        assert np.abs(first[name]).max() <= limit
        assert np.abs(first[name]).max() > 0.9 * limit  # uniform over the whole range
    assert not first["b1"].any() and not first["b2"].any()


def test_config_round_trips_through_the_registry() -> None:
    for kind in KIND_CASES:
        assert make_kind(kind.name, kind.config()) == kind
    assert MLP(2).config() == {"features": 2, "hidden": [16], "activation": "relu",
                               "task": "regression"}
    assert set(KINDS) == {"linear", "logistic", "mlp"}


@pytest.mark.parametrize("kind", KIND_CASES, ids=lambda k: f"{k.name}-{k.config()}")
def test_forward_pass_gradients(kind: Kind) -> None:
    rng = np.random.default_rng(0)
    names = list(kind.shapes())
    values = [rng.normal(size=shape) for shape in kind.shapes().values()]
    x = rng.normal(size=(5, kind.features))

    def forward(*args: tg.Tensor) -> tg.Tensor:
        return kind.forward(dict(zip(names, args[:-1], strict=True)), args[-1])

    check_grads(forward, *values, x)


def test_model_runs_the_kinds_forward_pass_on_variables() -> None:
    kind = MLP(2, (3,), "tanh", "classification", 3)
    params = kind.initial(1)
    model = Model(kind, params, "float64")
    x = np.array([[0.5, -1.0], [2.0, 0.0]])
    expected = np.tanh(x @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]
    np.testing.assert_allclose(model(tg.constant(x)).numpy(), expected, rtol=1e-12)
    assert [v.name for v in model.variables] == ["W1", "b1", "W2", "b2"]
    assert all(np.array_equal(model.params()[k], params[k]) for k in params)


def test_probabilities_are_rows_summing_to_one_even_at_huge_logits() -> None:
    many = probabilities(tg.constant(np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])))
    np.testing.assert_allclose(many.numpy().sum(axis=1), 1.0)
    assert many.numpy()[0].tolist() == [1.0, 0.0, 0.0]
    two = probabilities(tg.constant(np.array([0.0, 100.0, -100.0]))).numpy()
    np.testing.assert_allclose(two[:, 1], [0.5, 1.0, 0.0], atol=1e-30)
    np.testing.assert_allclose(two.sum(axis=1), 1.0)


LOSS_CASES: list[tuple[str, Any, Any]] = [
    ("mse", np.array([0.5, -1.0, 2.0, 0.1]), np.array([0.0, 1.0, 1.5, 0.1 + 1e-3])),
    ("mae", np.array([0.5, -1.0, 2.0, 0.3]), np.array([0.0, 1.0, 1.5, -0.2])),
    ("huber", np.array([0.5, -1.0, 2.5, -0.3]), np.array([0.0, 1.0, 0.5, 0.2])),
    ("cross_entropy", np.array([0.5, -1.0, 2.0, 0.0]), np.array([1.0, 0.0, 0.0, 1.0])),
    ("cross_entropy", np.array([80.0, -80.0, 80.0, -80.0]), np.array([1.0, 0.0, 0.0, 1.0])),
    ("cross_entropy", np.array([[0.5, -1.0, 2.0], [80.0, -80.0, 0.0], [0.0, 0.0, 0.0]]),
     np.eye(3)[[0, 1, 2]]),
]


@pytest.mark.parametrize(("name", "outputs", "targets"), LOSS_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(LOSS_CASES)])
def test_loss_gradients(name: str, outputs: np.ndarray, targets: np.ndarray) -> None:
    fn = losses.LOSSES[name].fn

    def loss(out: tg.Tensor) -> tg.Tensor:
        return fn(tg.constant(targets), out, 1.0)

    check_grads(loss, outputs, order=1 if name in ("mae", "huber") else 2)


def test_cross_entropy_is_exact_and_finite_at_large_logits() -> None:
    z = np.array([80.0, -80.0, 80.0, -80.0, 0.0])
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    value = losses.cross_entropy(tg.constant(y), tg.constant(z), 1.0).numpy()
    expected = np.mean([math.log1p(math.exp(-80)), math.log1p(math.exp(-80)), 80 + math.log1p(
        math.exp(-80)), 80 + math.log1p(math.exp(-80)), math.log(2)])
    assert value == pytest.approx(expected, rel=1e-15)
    # At z = 0 the gradient is sigmoid(0) - y, not the -y a bare max(z, 0) would give.
    logits = tg.constant(np.zeros(2))
    with tg.GradientTape() as tape:
        tape.watch(logits)
        loss = losses.cross_entropy(tg.constant(np.array([1.0, 0.0])), logits, 1.0)
    np.testing.assert_allclose(tape.gradient(loss, logits).numpy(), [-0.25, 0.25])
    softmax = losses.cross_entropy(tg.constant(np.eye(2)), tg.constant(
        np.array([[1000.0, -1000.0], [1000.0, -1000.0]])), 1.0).numpy()
    assert softmax == pytest.approx(1000.0)  # (0 + 2000) / 2, no overflow


def test_losses_match_their_definitions() -> None:
    out, y = np.array([0.5, -1.0, 3.0]), np.array([0.0, 1.0, 0.5])
    error = out - y

    def value(name: str, delta: float = 1.0) -> float:
        return float(losses.LOSSES[name].fn(tg.constant(y), tg.constant(out), delta).numpy())

    assert value("mse") == pytest.approx(np.mean(error**2))
    assert value("mae") == pytest.approx(np.mean(np.abs(error)))
    huber = np.where(np.abs(error) <= 1.5, 0.5 * error**2, 1.5 * np.abs(error) - 0.5 * 1.5**2)
    assert value("huber", 1.5) == pytest.approx(np.mean(huber))
    assert {name: loss.task for name, loss in losses.LOSSES.items()} == {
        "mse": "regression", "mae": "regression", "huber": "regression",
        "cross_entropy": "classification"}


def test_penalty_covers_kernels_only() -> None:
    params = {"W1": tg.constant(np.array([[1.0, -2.0]])), "b1": tg.constant(np.array([5.0]))}
    total = losses.penalty(params, ("W1",), l1=0.1, l2=0.01)
    assert total is not None and float(total.numpy()) == pytest.approx(0.1 * 3 + 0.01 * 5)
    assert losses.penalty(params, ("W1",), 0.0, 0.0) is None


def test_metrics_by_hand() -> None:
    out, y = np.array([1.0, 2.0, 4.0]), np.array([1.0, 3.0, 3.0])
    found = metrics.measure("regression", out, y)
    assert found == pytest.approx({"mse": 2 / 3, "rmse": math.sqrt(2 / 3), "mae": 2 / 3,
                                   "r2": 1 - 2 / (8 / 3)})
    assert metrics.measure("regression", np.ones(3), np.ones(3))["r2"] == 1.0  # no 0 / 0
    binary = metrics.measure("classification", np.array([2.0, -1.0, 0.0]), np.array([1, 1, 0]))
    assert binary["accuracy"] == pytest.approx(2 / 3)  # a logit of 0 is class 0 (p = 0.5)
    expected = np.mean([math.log1p(math.exp(-2)), 1 + math.log1p(math.exp(-1)), math.log(2)])
    assert binary["log_loss"] == pytest.approx(expected)
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    multi = metrics.measure("classification", logits, np.array([0, 1]))
    assert multi["accuracy"] == 0.5
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    assert multi["log_loss"] == pytest.approx(-(log_softmax[0, 0] + log_softmax[1, 1]) / 2)
    assert metrics.higher_is_better("val_accuracy") and not metrics.higher_is_better("val_loss")


def test_logits_metrics_in_blocks_are_one_pass() -> None:
    """float32 logits of more rows than a block: the bits of the whole set taken to float64."""
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((2 * metrics.BLOCK_ROWS + 5, 10)) * 20).astype(np.float32)
    y = rng.integers(0, 10, len(logits))
    whole = logits.astype(np.float64)
    shifted = whole - whole.max(axis=1, keepdims=True)
    per_row = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(y)), y]
    assert metrics.measure("classification", logits, y.astype(np.float64)) == {
        "accuracy": float(np.mean(np.argmax(whole, axis=1) == y)),
        "log_loss": float(np.mean(per_row))}
