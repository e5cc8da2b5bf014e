"""Central-difference gradient checks in float64, for first and second derivatives.

Every check also runs the gradient computation compiled with tg.function (traced on
other values, replayed on these) and requires its results to be bit-identical to eager.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from service import engine as tg

Fn = Callable[..., tg.Tensor]
EPS = 1e-6


def weighted_sum(f: Fn, weights_seed: int = 0) -> Fn:
    """f's output summed with fixed random weights: a scalar whose gradient checks every output."""

    def scalar(*args: tg.Tensor) -> tg.Tensor:
        out = f(*args)
        weights = np.random.default_rng(weights_seed).normal(size=out.shape)
        return tg.reduce_sum(out * tg.constant(weights, dtype=out.dtype))

    return scalar


def numeric_gradients(scalar: Fn, values: Sequence[np.ndarray]) -> list[np.ndarray]:
    """d scalar / d values[i] by central differences."""
    grads = []
    for i, value in enumerate(values):
        grad = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            shifted = []
            for step in (EPS, -EPS):
                moved = [v.copy() for v in values]
                moved[i][index] += step
                shifted.append(float(scalar(*[tg.constant(v) for v in moved])))
            grad[index] = (shifted[0] - shifted[1]) / (2 * EPS)
        grads.append(grad)
    return grads


def tape_gradients(scalar: Fn, values: Sequence[np.ndarray]) -> list[np.ndarray]:
    """d scalar / d values[i] from a tape, as float64 arrays of the values' shapes."""
    tensors = [tg.constant(v) for v in values]
    with tg.GradientTape() as tape:
        tape.watch(tensors)
        out = scalar(*tensors)
    grads = tape.gradient(out, tensors, unconnected_gradients="zero")
    for grad, value in zip(grads, values, strict=True):
        assert grad.shape == value.shape and grad.dtype == tg.float64
    return [grad.numpy() for grad in grads]


def gradient_of(scalar: Fn, n_args: int) -> Fn:
    """scalar's gradients w.r.t. its first n_args arguments, concatenated: f for 2nd order."""

    def first(*args: tg.Tensor) -> tg.Tensor:
        with tg.GradientTape() as tape:
            tape.watch(list(args))
            out = scalar(*args)
        grads = tape.gradient(out, list(args[:n_args]), unconnected_gradients="zero")
        return tg.concat([tg.reshape(g, [-1]) for g in grads], axis=0)

    return first


def check_grads(f: Fn, *values: np.ndarray | float, order: int = 1,
                rtol: float = 1e-6, atol: float = 1e-7) -> None:
    """Compare the tape's gradients of f (and, for order 2, of its gradient) with numerics,
    and the compiled computation of each with the eager one, bit for bit."""
    arrays = [np.array(v, dtype=np.float64) for v in values]
    scalar = weighted_sum(f)
    _assert_close(tape_gradients(scalar, arrays), numeric_gradients(scalar, arrays), rtol, atol)
    assert_compiled_matches_eager(scalar, arrays)
    if order >= 2:
        second = weighted_sum(gradient_of(scalar, len(arrays)), weights_seed=1)
        _assert_close(tape_gradients(second, arrays), numeric_gradients(second, arrays),
                      100 * rtol, 100 * atol)
        assert_compiled_matches_eager(second, arrays)


def value_and_gradients(scalar: Fn) -> Fn:
    """The function of tensors that gives scalar and its gradients w.r.t. every argument."""

    def both(*tensors: tg.Tensor) -> tuple[tg.Tensor, list[tg.Tensor]]:
        with tg.GradientTape() as tape:
            tape.watch(list(tensors))
            out = scalar(*tensors)
        return out, tape.gradient(out, list(tensors), unconnected_gradients="zero")

    return both


def assert_compiled_matches_eager(scalar: Fn, values: Sequence[np.ndarray],
                                  trace_values: Sequence[np.ndarray] | None = None) -> None:
    """scalar and its gradients, compiled with tg.function, traced on other values (1.25 times
    these unless given) and replayed on these, equal the eager results bit for bit."""
    both = value_and_gradients(scalar)
    compiled = tg.function(both)
    if trace_values is None:
        trace_values = [v * 1.25 for v in values]
    compiled(*[tg.constant(v) for v in trace_values])
    expected = both(*[tg.constant(v) for v in values])
    actual = compiled(*[tg.constant(v) for v in values])
    assert compiled.trace_count == 1, "the second call traced again instead of replaying"
    assert_bitwise_equal(actual, expected)


def assert_bitwise_equal(actual: object, expected: object) -> None:
    """Nests of tensors with the same structure, shapes, dtypes and bytes."""
    if isinstance(expected, list | tuple):
        assert isinstance(actual, list | tuple) and len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            assert_bitwise_equal(a, e)
        return
    assert isinstance(actual, tg.Tensor) and isinstance(expected, tg.Tensor)
    a, e = np.asarray(actual.numpy()), np.asarray(expected.numpy())
    assert a.shape == e.shape and a.dtype == e.dtype, (a.shape, a.dtype, e.shape, e.dtype)
    assert a.tobytes() == e.tobytes(), f"compiled {a!r} != eager {e!r}"


def _assert_close(actual: list[np.ndarray], expected: list[np.ndarray], rtol: float,
                  atol: float) -> None:
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=f"argument {i}")
