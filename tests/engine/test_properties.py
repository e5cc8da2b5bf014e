"""Hypothesis-generated shapes, values and compositions of ops, checked against numerics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from service import engine as tg
from tests.engine.gradcheck import check_grads

SETTINGS = settings(max_examples=100, deadline=None)
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)

SMOOTH_UNARY: dict[str, Callable[[tg.Tensor], tg.Tensor]] = {
    "tanh": tg.tanh,
    "sigmoid": tg.sigmoid,
    "softplus": tg.softplus,
    "square": tg.square,
    "negative": tg.negative,
    "exp": lambda x: tg.exp(x / 4.0),
    "sqrt": lambda x: tg.sqrt(1.0 + x * x),
    "log": lambda x: tg.log(2.0 + tg.tanh(x)),
}
SMOOTH_BINARY: dict[str, Callable[[tg.Tensor, tg.Tensor], tg.Tensor]] = {
    "add": tg.add,
    "subtract": tg.subtract,
    "multiply": tg.multiply,
    "divide": lambda a, b: a / (1.5 + b * b),
    "pow": lambda a, b: (1.0 + a * a) ** b,
}


def values(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float64, shape, elements=st.floats(-2, 2))


@SETTINGS
@given(st.sampled_from(sorted(SMOOTH_BINARY)), hnp.mutually_broadcastable_shapes(
    num_shapes=2, max_dims=3, max_side=3), st.data())
def test_binary_ops_broadcast_their_gradients(name: str, shapes: Any, data: st.DataObject) -> None:
    x_shape, y_shape = shapes.input_shapes
    check_grads(SMOOTH_BINARY[name], data.draw(values(x_shape)), data.draw(values(y_shape)))


@SETTINGS
@given(st.data())
def test_compositions_of_ops(data: st.DataObject) -> None:
    shape = data.draw(SHAPES)
    inputs = [data.draw(values(shape))]
    steps: list[Callable[[tg.Tensor, list[tg.Tensor]], tg.Tensor]] = []
    for _ in range(data.draw(st.integers(1, 5))):
        kind = data.draw(st.sampled_from(["unary", "binary", "reduce", "transpose", "matmul"]))
        if kind == "unary":
            steps.append(_unary(data.draw(st.sampled_from(sorted(SMOOTH_UNARY)))))
        elif kind == "binary":
            other = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=1, base_shape=shape,
                                                                max_dims=3, max_side=3))
            inputs.append(data.draw(values(other.input_shapes[0])))
            steps.append(_binary(data.draw(st.sampled_from(sorted(SMOOTH_BINARY))),
                                 len(inputs) - 1))
            shape = other.result_shape
        elif kind == "reduce" and shape:
            axis = data.draw(st.integers(-len(shape), len(shape) - 1))
            keepdims = data.draw(st.booleans())
            mean = data.draw(st.booleans())
            steps.append(_reduce(axis, keepdims, mean))
            shape = np.sum(np.empty(shape), axis=axis, keepdims=keepdims).shape
        elif kind == "transpose":
            steps.append(lambda x, _: tg.transpose(x))
            shape = shape[::-1]
        elif kind == "matmul" and shape:
            inputs.append(data.draw(values((shape[-1], 2))))
            steps.append(_matmul_by(len(inputs) - 1))
            shape = (*shape[:-1], 2)

    def program(*args: tg.Tensor) -> tg.Tensor:
        x = args[0]
        for step in steps:
            x = step(x, list(args))
        return x

    check_grads(program, *inputs, rtol=1e-5, atol=1e-6)


def _unary(name: str) -> Callable[[tg.Tensor, list[tg.Tensor]], tg.Tensor]:
    return lambda x, _: SMOOTH_UNARY[name](x)


def _binary(name: str, index: int) -> Callable[[tg.Tensor, list[tg.Tensor]], tg.Tensor]:
    return lambda x, args: SMOOTH_BINARY[name](x, args[index])


def _reduce(axis: int, keepdims: bool, mean: bool) -> Callable[[tg.Tensor, list[tg.Tensor]],
                                                               tg.Tensor]:
    reduce = tg.reduce_mean if mean else tg.reduce_sum
    return lambda x, _: reduce(x, axis=axis, keepdims=keepdims)


def _matmul_by(index: int) -> Callable[[tg.Tensor, list[tg.Tensor]], tg.Tensor]:
    return lambda x, args: x @ args[index]


@SETTINGS
@given(st.sampled_from(["add", "subtract", "multiply", "divide"]),
       hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4), st.data())
def test_float32_results_are_numpys_float32_results(name: str, shapes: Any,
                                                    data: st.DataObject) -> None:
    x_shape, y_shape = shapes.input_shapes
    elements = st.floats(-100, 100, width=32).filter(lambda v: abs(v) > 1e-3)
    x = data.draw(hnp.arrays(np.float32, x_shape, elements=elements))
    y = data.draw(hnp.arrays(np.float32, y_shape, elements=elements))
    result = getattr(tg, name)(tg.constant(x), tg.constant(y))
    assert result.dtype == tg.float32
    np.testing.assert_array_equal(result.numpy(), getattr(np, name)(x, y))


@SETTINGS
@given(SHAPES.flatmap(values), st.booleans())
def test_float32_gradients_follow_float64_gradients(x: np.ndarray, keepdims: bool) -> None:
    grads = []
    for dtype in ("float32", "float64"):
        t = tg.constant(x, dtype=dtype)
        with tg.GradientTape() as tape:
            tape.watch(t)
            y = tg.reduce_mean(tg.square(tg.tanh(t) - 0.5), keepdims=keepdims)
        grad = tape.gradient(y, t)
        assert grad.dtype == dtype and grad.shape == x.shape
        grads.append(grad.numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-6)
