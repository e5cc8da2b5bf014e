"""Gradients of large tensors, which carry scalar factors lazily (tape.Scaled): same results."""

from __future__ import annotations

import numpy as np

from service import engine as tg
from service.engine.tensor import LARGE

N = LARGE + 7  # large enough for gradients to be left scaled


def _data(dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.standard_normal(N).astype(dtype), rng.standard_normal(N).astype(dtype)


def test_the_tutorial_step_on_large_data_matches_the_hand_derived_gradient() -> None:
    x, y = _data()
    W, b = tg.Variable(np.float64(5.0)), tg.Variable(np.float64(0.5))
    with tg.GradientTape() as tape:
        loss = tg.reduce_mean(tg.square(tg.constant(y) - (W * tg.constant(x) + b)))
    dW, db = tape.gradient(loss, [W, b])
    error = y - (5.0 * x + 0.5)
    np.testing.assert_allclose(float(dW), -2 * np.mean(error * x), rtol=1e-10)
    np.testing.assert_allclose(float(db), -2 * np.mean(error), rtol=1e-10)


def test_a_scaled_gradient_reaching_a_source_is_multiplied_out() -> None:
    x = tg.constant(_data()[0])
    with tg.GradientTape() as tape:
        tape.watch(x)
        loss = tg.reduce_sum(tg.exp(-tg.square(x)) * 0.5)
    grad = tape.gradient(loss, x)
    expected = -x.numpy() * np.exp(-np.square(x.numpy()))
    assert grad.shape == x.shape
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-12)


def test_scaled_gradients_of_a_tensor_used_twice_add_up() -> None:
    x = tg.constant(_data()[0])
    with tg.GradientTape() as tape:
        tape.watch(x)
        loss = tg.reduce_mean(tg.square(x)) - tg.reduce_sum(x - 3.0)
    grad = tape.gradient(loss, x)
    np.testing.assert_allclose(grad.numpy(), 2 * x.numpy() / N - 1, rtol=1e-12)


def test_a_factor_crosses_a_cast_in_the_gradient_dtype() -> None:
    x = tg.constant(_data(np.float32)[0])
    with tg.GradientTape() as tape:
        tape.watch(x)
        loss = tg.reduce_sum(-tg.square(tg.cast(x, tg.float64)))
    grad = tape.gradient(loss, x)
    assert grad.dtype == tg.float32
    np.testing.assert_allclose(grad.numpy(), -2 * x.numpy(), rtol=1e-6)


def test_scaled_gradients_differentiate_again() -> None:
    x = tg.constant(_data()[0])
    with tg.GradientTape() as outer:
        outer.watch(x)
        with tg.GradientTape() as inner:
            inner.watch(x)
            loss = tg.reduce_sum(-tg.square(x))
        grad = inner.gradient(loss, x)
        total = tg.reduce_sum(grad * x)
    np.testing.assert_allclose(grad.numpy(), -2 * x.numpy(), rtol=1e-12)
    np.testing.assert_allclose(outer.gradient(total, x).numpy(), -4 * x.numpy(), rtol=1e-12)


def test_an_intermediate_source_gets_its_scaled_gradient_multiplied_out() -> None:
    x = tg.constant(_data()[0])
    with tg.GradientTape() as tape:
        tape.watch(x)
        z = -x
        loss = tg.reduce_sum(tg.square(z))
    dz, dx = tape.gradient(loss, [z, x])
    np.testing.assert_allclose(dz.numpy(), -2 * x.numpy(), rtol=1e-12)
    np.testing.assert_allclose(dx.numpy(), 2 * x.numpy(), rtol=1e-12)


def test_a_persistent_tape_gives_the_same_scaled_gradients_twice() -> None:
    x = tg.constant(_data()[0])
    with tg.GradientTape(persistent=True) as tape:
        tape.watch(x)
        loss = tg.reduce_mean(-tg.square(x - 1.0))
    first, second = tape.gradient(loss, x), tape.gradient(loss, x)
    np.testing.assert_array_equal(first.numpy(), second.numpy())
    np.testing.assert_allclose(first.numpy(), -2 * (x.numpy() - 1.0) / N, rtol=1e-12)
