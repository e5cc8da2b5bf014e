"""Every op's gradient against central differences in float64, over a matrix of shapes.

Each check also differentiates the gradient once more (nested tapes), so every
gradient rule is itself checked as a differentiable computation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from service import engine as tg
from tests.engine.gradcheck import check_grads

rng = np.random.default_rng(0)


def normal(shape: tuple[int, ...]) -> np.ndarray:
    return rng.normal(size=shape)


def positive(shape: tuple[int, ...]) -> np.ndarray:
    return np.abs(rng.normal(size=shape)) + 0.5


def nonzero(shape: tuple[int, ...]) -> np.ndarray:
    """Values at least 0.2 away from 0, where abs, relu and sign have kinks."""
    x = rng.normal(size=shape)
    return np.where(x < 0, x - 0.2, x + 0.2)


UNARY_SHAPES = [(), (3,), (2, 3), (1, 3), (2, 1, 3)]

UNARY: dict[str, tuple[Callable[[tg.Tensor], tg.Tensor], Callable[..., np.ndarray]]] = {
    "negative": (tg.negative, normal),
    "neg operator": (lambda x: -x, normal),
    "square": (tg.square, normal),
    "sqrt": (tg.sqrt, positive),
    "exp": (tg.exp, normal),
    "log": (tg.log, positive),
    "tanh": (tg.tanh, normal),
    "sigmoid": (tg.sigmoid, normal),
    "relu": (tg.relu, nonzero),
    "softplus": (tg.softplus, normal),
    "abs": (tg.abs, nonzero),
    "sign": (lambda x: tg.sign(x) * x, nonzero),
    "reduce_sum": (tg.reduce_sum, normal),
    "reduce_mean": (tg.reduce_mean, normal),
    "reduce_max": (tg.reduce_max, normal),
    "reduce_min": (tg.reduce_min, normal),
    "transpose": (tg.transpose, normal),
    "reshape -1": (lambda x: tg.reshape(x, [-1]), normal),
    "expand_dims": (lambda x: tg.expand_dims(x, 0) * tg.constant([[1.0], [2.0]], tg.float64),
                    normal),
    "squeeze": (tg.squeeze, normal),
    "broadcast_to": (lambda x: tg.broadcast_to(x, (4, *x.shape)), normal),
    "getitem ...": (lambda x: x[...] * x[None], normal),
    "stack": (lambda x: tg.stack([x, 2 * x, tg.square(x)], axis=0), normal),
    "concat": (lambda x: tg.concat([tg.reshape(x, [-1]), tg.exp(tg.reshape(x, [-1]))], 0),
               normal),
}


@pytest.mark.parametrize("shape", UNARY_SHAPES, ids=str)
@pytest.mark.parametrize("name", UNARY)
def test_unary_gradient(name: str, shape: tuple[int, ...]) -> None:
    f, values = UNARY[name]
    check_grads(f, values(shape), order=2)


BINARY_SHAPES = [
    ((), ()),
    ((3,), ()),
    ((), (3,)),
    ((3,), (3,)),
    ((2, 3), (3,)),
    ((3,), (2, 3)),
    ((2, 3), (2, 1)),
    ((1, 3), (2, 1)),
    ((2, 1, 3), (4, 1)),
    ((1,), (2, 3)),
]

BINARY: dict[str, tuple[Callable[[tg.Tensor, tg.Tensor], tg.Tensor], Callable[..., np.ndarray],
                        Callable[..., np.ndarray]]] = {
    "add": (tg.add, normal, normal),
    "subtract": (tg.subtract, normal, normal),
    "multiply": (tg.multiply, normal, normal),
    "divide": (tg.divide, normal, nonzero),
    "pow": (tg.pow, positive, normal),
    "maximum": (tg.maximum, normal, normal),
    "minimum": (tg.minimum, normal, normal),
    "operators": (lambda x, y: (x + y) * (x - y) / (1.5 + y * y) + (-x) ** 2, normal, normal),
    "where": (lambda x, y: tg.where(x > y, x * y, y - x), normal, normal),
    "clip_by_value": (lambda x, y: tg.clip_by_value(x, y - 0.5, y + 0.5), normal, normal),
}


@pytest.mark.parametrize("shapes", BINARY_SHAPES, ids=str)
@pytest.mark.parametrize("name", BINARY)
def test_binary_gradient(name: str, shapes: tuple[tuple[int, ...], tuple[int, ...]]) -> None:
    f, x_values, y_values = BINARY[name]
    check_grads(f, x_values(shapes[0]), y_values(shapes[1]), order=2)


MATMUL_SHAPES = [
    ((3,), (3,)),
    ((2, 3), (3,)),
    ((3,), (3, 2)),
    ((2, 3), (3, 4)),
    ((4, 1), (1, 2)),
    ((5, 2, 3), (3, 4)),
    ((2, 3), (5, 3, 2)),
    ((5, 2, 3), (1, 3, 4)),
]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_gradient(shapes: tuple[tuple[int, ...], tuple[int, ...]]) -> None:
    check_grads(tg.matmul, normal(shapes[0]), normal(shapes[1]), order=2)


REDUCTIONS = [tg.reduce_sum, tg.reduce_mean, tg.reduce_max, tg.reduce_min]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2), [1]])
@pytest.mark.parametrize("reduce", REDUCTIONS, ids=lambda f: f.__name__)
def test_reduction_gradient(reduce: Callable[..., tg.Tensor], axis: object,
                            keepdims: bool) -> None:
    check_grads(lambda x: reduce(x, axis=axis, keepdims=keepdims), normal((2, 3, 4)), order=2)


def test_reduce_max_shares_the_gradient_between_ties() -> None:
    x = tg.constant([1.0, 3.0, 3.0, 2.0])
    with tg.GradientTape() as tape:
        tape.watch(x)
        top = tg.reduce_max(x)
    np.testing.assert_array_equal(tape.gradient(top, x).numpy(), [0.0, 0.5, 0.5, 0.0])


@pytest.mark.parametrize(
    "index",
    [1, -1, slice(1, None), (slice(None), 2), (0, slice(None, None, -1)), (Ellipsis, 1),
     (None, 1), [0, 0, 2], ([1, 0, 1], [2, 2, 2]), np.array([[True, False, True, True]] * 3)],
    ids=repr,
)
def test_indexing_gradient(index: object) -> None:
    check_grads(lambda x: x[index], normal((3, 4)), order=2)


def test_repeated_indices_accumulate() -> None:
    x = tg.constant([1.0, 2.0, 3.0])
    with tg.GradientTape() as tape:
        tape.watch(x)
        picked = tg.gather(x, [0, 2, 0, 0])
    np.testing.assert_array_equal(tape.gradient(picked, x).numpy(), [3.0, 0.0, 1.0])


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_gradient(axis: int) -> None:
    check_grads(lambda x: tg.gather(x, tg.constant([1, 1, 0]), axis=axis), normal((3, 2, 2)),
                order=2)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat_and_stack_gradients(axis: int) -> None:
    check_grads(lambda x, y: tg.concat([x, tg.exp(y), x], axis=axis), normal((2, 3)),
                normal((2, 3)), order=2)
    check_grads(lambda x, y: tg.stack([x, y * x], axis=axis), normal((2, 3)), normal((2, 3)),
                order=2)


def test_reshape_transpose_expand_squeeze_gradients() -> None:
    check_grads(lambda x: tg.reshape(x, (3, 2, 2)) * tg.transpose(x, (2, 0, 1)),
                normal((2, 2, 3)), order=2)
    check_grads(lambda x: tg.squeeze(tg.expand_dims(x, -1), axis=[2]), normal((2, 3)), order=2)


def test_stop_gradient_blocks_the_gradient() -> None:
    x = tg.constant([1.0, -2.0])
    with tg.GradientTape() as tape:
        tape.watch(x)
        y = tg.stop_gradient(tg.square(x)) * x
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [1.0, 4.0])


def test_cast_gradient_flows_between_float_dtypes() -> None:
    x = tg.constant([1.5, -2.0], tg.float64)
    with tg.GradientTape() as tape:
        tape.watch(x)
        y = tg.cast(tg.square(tg.cast(x, tg.float32)), tg.float64)
    grad = tape.gradient(y, x)
    assert grad.dtype == tg.float64
    np.testing.assert_allclose(grad.numpy(), [3.0, -4.0])


def test_cast_to_integers_cuts_the_gradient() -> None:
    x = tg.constant([1.5, -2.0])
    with tg.GradientTape() as tape:
        tape.watch(x)
        y = tg.cast(tg.cast(x, tg.int32), tg.float32) * x
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [1.0, -2.0])


def test_composite_model_gradient() -> None:
    """A small two-layer network, the kind of composition the service trains later."""

    def model(x: tg.Tensor, w1: tg.Tensor, w2: tg.Tensor) -> tg.Tensor:
        hidden = tg.tanh(x @ w1)
        return tg.reduce_mean(tg.square(tg.sigmoid(hidden @ w2) - 0.5), axis=0)

    check_grads(model, normal((5, 3)), normal((3, 4)), normal((4, 2)), order=2)
