"""Whole training steps (forward pass, tape, gradient, optimizer assignments) compiled with
tg.function give the same bits as eager, step after step, without tracing again."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service import engine as tg

FIXTURE = Path(__file__).parent.parent / "fixtures" / "tf_reference_trajectories.json"
CASES = json.loads(FIXTURE.read_text())["cases"]


def bits(value: Any) -> bytes:
    return np.asarray(value).tobytes()


class LinearModel:
    """The tutorial's model."""

    def __init__(self, W: float, b: float) -> None:
        self.W = tg.Variable(W)
        self.b = tg.Variable(b)

    def __call__(self, x: tg.Tensor) -> tg.Tensor:
        return self.W * x + self.b


def loss(target_y: tg.Tensor, predicted_y: tg.Tensor) -> tg.Tensor:
    return tg.reduce_mean(tg.square(target_y - predicted_y))


def train(model: LinearModel, x: tg.Tensor, y: tg.Tensor, learning_rate: float) -> tg.Tensor:
    with tg.GradientTape() as t:
        current_loss = loss(y, model(x))
    dw, db = t.gradient(current_loss, [model.W, model.b])
    model.W.assign_sub(learning_rate * dw)
    model.b.assign_sub(learning_rate * db)
    return current_loss


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_tutorial_compiled_reproduces_eager_bit_for_bit(name: str) -> None:
    case = CASES[name]
    x, y = tg.constant(case["x"]), tg.constant(case["y"])
    runs = {}
    for compiled in (False, True):
        model = LinearModel(case["initial"]["W"], case["initial"]["b"])

        def logged_loss(x: tg.Tensor, y: tg.Tensor, model: LinearModel = model) -> tg.Tensor:
            return loss(y, model(x))

        step = tg.function(train) if compiled else train
        logged = tg.function(logged_loss) if compiled else logged_loss
        history = []
        for _ in range(case["epochs"]):
            history.append((model.W.numpy(), model.b.numpy(), logged(x, y).numpy()))
            step(model, x, y, learning_rate=case["learning_rate"])
        runs[compiled] = (np.array(history), model.W.numpy(), model.b.numpy())
        if compiled:
            assert step.trace_count == 1 and logged.trace_count == 1
    assert [bits(v) for v in runs[True]] == [bits(v) for v in runs[False]]
    history, W, b = runs[True]
    assert history.dtype == np.float32
    np.testing.assert_allclose(history[:, 0], case["history"]["W"], rtol=1e-5)
    np.testing.assert_allclose(history[:, 1], case["history"]["b"], rtol=1e-5)
    np.testing.assert_allclose(history[:, 2], case["history"]["loss"], rtol=1e-5)
    np.testing.assert_allclose([W, b], [case["final"]["W"], case["final"]["b"]], rtol=1e-5)


def minibatch_epochs(step: Callable[..., Any], x: np.ndarray, y: np.ndarray, batch: int,
                     epochs: int) -> list[bytes]:
    """Run mini-batch epochs (shuffled, the last batch short); the losses' bytes."""
    rng, losses = np.random.default_rng(0), []
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for lo in range(0, len(x), batch):
            idx = order[lo : lo + batch]
            losses.append(bits(step(tg.constant(x[idx]), tg.constant(y[idx])).numpy()))
    return losses


def test_tutorial_minibatches_compiled_reproduce_eager() -> None:
    case = CASES["seed_defaults"]
    x, y = np.array(case["x"], np.float32), np.array(case["y"], np.float32)
    runs = {}
    for compiled in (False, True):
        model = LinearModel(5.0, 0.0)

        def step(xb: tg.Tensor, yb: tg.Tensor, model: LinearModel = model) -> tg.Tensor:
            return train(model, xb, yb, learning_rate=0.05)

        fn = tg.function(step) if compiled else step
        runs[compiled] = (minibatch_epochs(fn, x, y, batch=32, epochs=3),
                          bits(model.W.numpy()), bits(model.b.numpy()))
        if compiled:
            assert fn.trace_count == 2  # batches of 32, and the last one of 8
    assert runs[True] == runs[False]


class Adam:
    """Keras' Adam written with engine ops on variables, its state created up front."""

    def __init__(self, variables: list[tg.Variable], learning_rate: float = 0.01,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7) -> None:
        self.variables = variables
        self.m = [tg.Variable(tg.zeros_like(v), trainable=False) for v in variables]
        self.v = [tg.Variable(tg.zeros_like(v), trainable=False) for v in variables]
        self.iterations = tg.Variable(0, dtype=tg.int64, trainable=False)
        self.learning_rate, self.beta_1, self.beta_2 = learning_rate, beta_1, beta_2
        self.epsilon = epsilon

    def apply(self, grads: list[tg.Tensor]) -> None:
        self.iterations.assign_add(1)
        t = tg.cast(self.iterations, self.variables[0].dtype)
        alpha = self.learning_rate * tg.sqrt(1 - self.beta_2**t) / (1 - self.beta_1**t)
        for var, g, m, v in zip(self.variables, grads, self.m, self.v, strict=True):
            m.assign(m + (g - m) * (1 - self.beta_1))
            v.assign(v + (tg.square(g) - v) * (1 - self.beta_2))
            var.assign_sub(alpha * m / (tg.sqrt(v) + self.epsilon))


class Momentum:
    """Keras' SGD with (Nesterov) momentum, written with engine ops on variables."""

    def __init__(self, variables: list[tg.Variable], learning_rate: float = 0.05,
                 momentum: float = 0.9, nesterov: bool = True) -> None:
        self.variables = variables
        self.velocity = [tg.Variable(tg.zeros_like(v), trainable=False) for v in variables]
        self.learning_rate, self.momentum, self.nesterov = learning_rate, momentum, nesterov

    def apply(self, grads: list[tg.Tensor]) -> None:
        for var, g, velocity in zip(self.variables, grads, self.velocity, strict=True):
            velocity.assign(self.momentum * velocity - self.learning_rate * g)
            if self.nesterov:
                var.assign_add(self.momentum * velocity - self.learning_rate * g)
            else:
                var.assign_add(velocity)


def mlp(dtype: Any, optimizer: type) -> tuple[Callable[..., tg.Tensor], list[tg.Variable]]:
    """A 2-16-16-2 ReLU network with softmax cross-entropy, and its training step."""
    rng, params = np.random.default_rng(1), []
    for fan_in, fan_out in ((2, 16), (16, 16), (16, 2)):
        params.append(tg.Variable(rng.normal(size=(fan_in, fan_out)) * 0.5, dtype=dtype))
        params.append(tg.Variable(np.zeros(fan_out), dtype=dtype))
    opt = optimizer(params)

    def step(x: tg.Tensor, onehot: tg.Tensor) -> tg.Tensor:
        with tg.GradientTape() as tape:
            h = tg.relu(x @ params[0] + params[1])
            h = tg.relu(h @ params[2] + params[3])
            logits = h @ params[4] + params[5]
            z = logits - tg.reduce_max(logits, axis=1, keepdims=True)
            log_p = z - tg.log(tg.reduce_sum(tg.exp(z), axis=1, keepdims=True))
            current_loss = -tg.reduce_mean(tg.reduce_sum(onehot * log_p, axis=1))
        opt.apply(tape.gradient(current_loss, params))
        return current_loss

    state = [*params, *(getattr(opt, "m", [])), *(getattr(opt, "v", [])),
             *(getattr(opt, "velocity", []))]
    return step, state


@pytest.mark.parametrize("optimizer", [Adam, Momentum])
@pytest.mark.parametrize("dtype", [tg.float32, tg.float64])
def test_an_mlp_step_with_an_optimizer_compiled_reproduces_eager(dtype: Any,
                                                                 optimizer: type) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)).astype(dtype)
    onehot = np.eye(2, dtype=dtype)[(x[:, 0] * x[:, 1] > 0).astype(int)]
    runs = {}
    for compiled in (False, True):
        step, state = mlp(dtype, optimizer)
        fn = tg.function(step) if compiled else step
        losses = minibatch_epochs(fn, x, onehot, batch=32, epochs=3)
        runs[compiled] = (losses, [bits(v.numpy()) for v in state])
        if compiled:
            assert fn.trace_count == 2
    assert runs[True] == runs[False]
    first, last = (np.frombuffer(runs[True][0][i], dtype)[0] for i in (0, -1))
    assert last < first  # and it learns
