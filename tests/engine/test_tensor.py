"""Tensors, variables, dtypes, operators and errors: the forward half of the engine."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from service import engine as tg


def test_tensors_are_immutable() -> None:
    source = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    t = tg.constant(source)
    source[0] = 100.0
    assert float(t[0]) == 1.0  # constant copied its input
    with pytest.raises(ValueError, match="read-only"):
        t.numpy()[0] = 5.0
    with pytest.raises(ValueError, match="read-only"):
        np.asarray(t)[0] = 5.0
    assert np.array(t, copy=True).flags.writeable


def test_the_tape_keeps_copies_of_numpy_operands() -> None:
    data = np.array([1.0, 2.0], dtype=np.float32)
    W = tg.Variable(3.0)
    with tg.GradientTape() as tape:
        y = tg.reduce_sum(W * data)
    data[:] = 100.0
    assert float(tape.gradient(y, W)) == 3.0


def test_defaults_are_float32_and_int32() -> None:
    assert tg.constant(1.0).dtype == tg.float32
    assert tg.constant([1.0, 2.0]).dtype == np.float32
    assert tg.constant(3).dtype == tg.int32
    assert tg.constant(True).dtype == tg.bool
    assert tg.Variable(5.0).dtype == tg.float32
    assert tg.random.normal([2]).dtype == tg.float32
    assert tg.zeros([2]).dtype == tg.float32


@pytest.mark.parametrize("dtype", ["float64", np.float64, tg.float64, np.dtype("float64")])
def test_float64_on_request(dtype: object) -> None:
    assert tg.constant(1.0, dtype=dtype).dtype == tg.float64
    assert tg.Variable(1.0, dtype=dtype).dtype == tg.float64
    assert tg.zeros([2], dtype=dtype).dtype == tg.float64
    assert tg.ones_like(tg.constant([1.0]), dtype=dtype).dtype == tg.float64
    assert tg.random.uniform([2], dtype=dtype).dtype == tg.float64


def test_numpy_arrays_keep_their_dtype() -> None:
    assert tg.constant(np.zeros(2)).dtype == tg.float64
    assert tg.constant(np.zeros(2, np.float32)).dtype == tg.float32
    assert tg.convert_to_tensor(np.arange(3)).dtype == tg.int64


def test_float32_never_turns_into_float64() -> None:
    x = tg.constant([1.0, 2.0])
    results = [
        x * 2.5, 2.5 * x, x / 3, x + np.float64(1.0), x - np.array([1.0, 2.0]),
        np.array([1.0, 2.0]) * x, x**2, tg.reduce_mean(x), tg.sqrt(x), tg.sigmoid(x),
        tg.random.normal([2], mean=0.5, stddev=2.0), tg.where(x > 1.0, x, 0.0),
    ]
    assert all(r.dtype == tg.float32 for r in results)


def test_mixing_dtypes_is_an_error_and_cast_converts() -> None:
    single, double = tg.constant([1.0]), tg.constant([1.0], dtype="float64")
    with pytest.raises(TypeError, match="float32 and float64"):
        single + double
    with pytest.raises(TypeError, match="cast"):
        tg.matmul(tg.reshape(single, (1, 1)), tg.reshape(double, (1, 1)))
    with pytest.raises(TypeError):
        tg.Variable(1.0).assign_sub(double[0])
    with pytest.raises(TypeError):
        tg.constant(double, dtype="float32")
    with pytest.raises(TypeError):
        tg.constant(1.5, dtype="int32")
    with pytest.raises(TypeError):
        tg.constant([1, 2]) * 1.5
    assert (tg.cast(single, tg.float64) + double).dtype == tg.float64
    assert tg.cast(tg.constant([1.7, -1.7]), tg.int32).numpy().tolist() == [1, -1]


def test_float_only_ops_refuse_integers() -> None:
    with pytest.raises(TypeError, match="exp"):
        tg.exp(tg.constant([1, 2]))


def test_accessors() -> None:
    t = tg.constant([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert t.shape == (2, 3) and t.ndim == 2 and len(t) == 2
    assert float(tg.constant(2.5)) == 2.5 and int(tg.constant(7)) == 7
    assert isinstance(tg.constant(2.5).numpy(), np.float32)
    assert [row.numpy().tolist() for row in t] == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert f"{tg.constant(3.14159):.2f}" == "3.14"
    assert "%1.2f" % tg.constant(2.0) == "2.00"  # noqa: UP031  (how the tutorial prints)
    assert "shape=(2, 3)" in repr(t) and "float32" in repr(t)
    assert repr(tg.Variable(1.0, name="W")).startswith("<tg.Variable 'W' shape=()")
    assert [1.0, 2.0, 3.0][tg.constant(1)] == 2.0
    with pytest.raises(TypeError):
        len(tg.constant(1.0))
    with pytest.raises(TypeError):
        {tg.constant(1.0)}  # == is elementwise, so tensors are unhashable


X = np.array([[0.5, -1.5, 2.0], [3.0, 0.25, -0.75]], dtype=np.float32)
Y = np.array([1.5, 2.0, -0.5], dtype=np.float32)

OPERATORS: list[tuple[str, Callable[[object, object], object]]] = [
    ("+", lambda a, b: a + b),
    ("-", lambda a, b: a - b),
    ("*", lambda a, b: a * b),
    ("/", lambda a, b: a / b),
    ("**", lambda a, b: abs(a) ** b),
    ("<", lambda a, b: a < b),
    ("<=", lambda a, b: a <= b),
    (">", lambda a, b: a > b),
    (">=", lambda a, b: a >= b),
    ("==", lambda a, b: a == b),
    ("!=", lambda a, b: a != b),
]


@pytest.mark.parametrize(("symbol", "op"), OPERATORS, ids=[s for s, _ in OPERATORS])
def test_operators_match_numpy_with_any_operand_on_either_side(
    symbol: str, op: Callable[[object, object], object]
) -> None:
    expected = op(X, Y)
    for a, b in [(tg.constant(X), tg.constant(Y)), (tg.constant(X), Y), (X, tg.constant(Y)),
                 (tg.Variable(X), tg.constant(Y)), (X, tg.Variable(Y))]:
        result = op(a, b)
        assert isinstance(result, tg.Tensor)
        np.testing.assert_array_equal(result.numpy(), expected)
        assert result.dtype == expected.dtype
    np.testing.assert_array_equal(op(tg.constant(X), 2.0).numpy(), op(X, np.float32(2.0)))
    np.testing.assert_array_equal(op(2.0, tg.constant(Y)).numpy(), op(np.float32(2.0), Y))


def test_unary_operators_and_matmul() -> None:
    np.testing.assert_array_equal((-tg.constant(X)).numpy(), -X)
    np.testing.assert_array_equal(abs(tg.constant(X)).numpy(), np.abs(X))
    np.testing.assert_allclose((tg.constant(X) @ Y).numpy(), X @ Y, rtol=1e-6)
    np.testing.assert_allclose((X.T @ tg.constant(X)).numpy(), X.T @ X, rtol=1e-6)


@pytest.mark.parametrize(
    ("name", "ours", "numpys"),
    [
        ("square", tg.square, np.square),
        ("sqrt", lambda x: tg.sqrt(tg.abs(x)), lambda x: np.sqrt(np.abs(x))),
        ("exp", tg.exp, np.exp),
        ("log", lambda x: tg.log(tg.abs(x)), lambda x: np.log(np.abs(x))),
        ("tanh", tg.tanh, np.tanh),
        ("sigmoid", tg.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
        ("relu", tg.relu, lambda x: np.maximum(x, 0)),
        ("softplus", tg.softplus, lambda x: np.log1p(np.exp(x))),
        ("abs", tg.abs, np.abs),
        ("sign", tg.sign, np.sign),
        ("negative", tg.negative, np.negative),
        ("reduce_sum", lambda x: tg.reduce_sum(x, axis=1), lambda x: x.sum(axis=1)),
        ("reduce_mean", lambda x: tg.reduce_mean(x, 0, True), lambda x: x.mean(0, keepdims=True)),
        ("reduce_max", lambda x: tg.reduce_max(x, [0, 1]), np.max),
        ("reduce_min", lambda x: tg.reduce_min(x, -1), lambda x: x.min(-1)),
        ("transpose", tg.transpose, np.transpose),
        ("reshape", lambda x: tg.reshape(x, [3, -1]), lambda x: x.reshape(3, -1)),
        ("expand_dims", lambda x: tg.expand_dims(x, 1), lambda x: x[:, None]),
        ("squeeze", lambda x: tg.squeeze(x[:1]), lambda x: x[0]),
        ("slice", lambda x: x[:, ::2], lambda x: x[:, ::2]),
        ("fancy index", lambda x: x[[1, 1, 0], tg.constant([2, 0, 1])],
         lambda x: x[[1, 1, 0], [2, 0, 1]]),
        ("mask", lambda x: x[x > 0], lambda x: x[x > 0]),
        ("gather", lambda x: tg.gather(x, [2, 0], axis=1), lambda x: x[:, [2, 0]]),
        ("concat", lambda x: tg.concat([x, x], 0), lambda x: np.concatenate([x, x], 0)),
        ("stack", lambda x: tg.stack([x, x], 2), lambda x: np.stack([x, x], 2)),
        ("clip_by_value", lambda x: tg.clip_by_value(x, -1.0, 1.0), lambda x: np.clip(x, -1, 1)),
        ("maximum", lambda x: tg.maximum(x, Y), lambda x: np.maximum(x, Y)),
        ("minimum", lambda x: tg.minimum(Y, x), lambda x: np.minimum(Y, x)),
        ("where", lambda x: tg.where(x > 0, x, Y), lambda x: np.where(x > 0, x, Y)),
        ("where indices", lambda x: tg.where(x > 0), lambda x: np.argwhere(x > 0)),
        ("broadcast_to", lambda x: tg.broadcast_to(x, (4, 2, 3)), lambda x: np.stack([x] * 4)),
        ("ones_like", tg.ones_like, np.ones_like),
        ("zeros_like", tg.zeros_like, np.zeros_like),
    ],
)
def test_ops_match_numpy(name: str, ours: Callable[..., tg.Tensor],
                         numpys: Callable[..., np.ndarray]) -> None:
    result, expected = ours(tg.constant(X)), numpys(X)
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-6)
    assert result.shape == expected.shape and result.dtype == expected.dtype


def test_sigmoid_and_softplus_do_not_overflow() -> None:
    x = tg.constant([-1000.0, 0.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        np.testing.assert_array_equal(tg.sigmoid(x).numpy(), [0.0, 0.5, 1.0])
        np.testing.assert_allclose(tg.softplus(x).numpy(), [0.0, np.log(2.0), 1000.0])


def test_creation() -> None:
    np.testing.assert_array_equal(tg.zeros([2, 3]).numpy(), np.zeros((2, 3)))
    np.testing.assert_array_equal(tg.ones(2).numpy(), [1.0, 1.0])
    np.testing.assert_array_equal(tg.constant(7.0, shape=[2, 2]).numpy(), np.full((2, 2), 7.0))
    np.testing.assert_array_equal(tg.constant([1, 2, 3, 4], shape=(2, 2)).numpy(),
                                  [[1, 2], [3, 4]])
    t = tg.constant([1.0])
    assert tg.convert_to_tensor(t) is t
    v = tg.Variable([2.0])
    np.testing.assert_array_equal(tg.convert_to_tensor(v).numpy(), [2.0])
    assert tg.convert_to_tensor([1.0, 2.0], dtype="float64").dtype == tg.float64
    with pytest.raises(TypeError, match="str"):
        tg.constant("text")


def test_random_is_seeded_and_shaped() -> None:
    a = tg.random.normal([2000], mean=3.0, stddev=0.5, seed=7)
    assert a.shape == (2000,)
    np.testing.assert_array_equal(a.numpy(), tg.random.normal([2000], 3.0, 0.5, seed=7).numpy())
    assert abs(float(tg.reduce_mean(a)) - 3.0) < 0.05
    assert abs(float(np.std(a.numpy())) - 0.5) < 0.05
    u = tg.random.uniform((50, 40), minval=-2.0, maxval=5.0, seed=1)
    assert u.shape == (50, 40) and float(tg.reduce_min(u)) >= -2.0
    assert float(tg.reduce_max(u)) < 5.0
    ints = tg.random.uniform([100], minval=0, maxval=3, dtype="int32", seed=1)
    assert ints.dtype == tg.int32 and set(ints.numpy().tolist()) == {0, 1, 2}
    tg.random.set_seed(11)
    first = tg.random.uniform([3]).numpy()
    tg.random.set_seed(11)
    np.testing.assert_array_equal(tg.random.uniform([3]).numpy(), first)
    with pytest.raises(ValueError, match="maxval"):
        tg.random.uniform([2], dtype="int32")
    with pytest.raises(TypeError):
        tg.random.normal([2], dtype="int32")


def test_variables() -> None:
    v = tg.Variable([1.0, 2.0], name="weights")
    assert v.name == "weights" and v.trainable and v.shape == (2,) and v.dtype == tg.float32
    assert tg.Variable(1.0, trainable=False).trainable is False
    assert tg.Variable(lambda: tg.ones([3])).shape == (3,)
    assert v.assign([3.0, 4.0]) is v
    v.assign_add(tg.constant([1.0, 1.0]))
    v.assign_sub(np.array([0.5, 0.5]))
    np.testing.assert_array_equal(v.numpy(), [3.5, 4.5])
    v.assign_sub(1.0)
    np.testing.assert_array_equal(v.numpy(), [2.5, 3.5])
    assert isinstance(v.value(), tg.Tensor) and not isinstance(v, tg.Tensor)


def test_numpy_snapshots_survive_assignment() -> None:
    v = tg.Variable(5.0)
    history = [v.numpy()]
    v.assign_sub(1.0)
    history.append(v.numpy())
    assert history == [5.0, 4.0]


def test_variable_arithmetic_gives_tensors_and_leaves_the_variable_alone() -> None:
    x = tg.Variable(1.0)
    original = x
    x = x + 2
    assert isinstance(x, tg.Tensor) and float(x) == 3.0
    assert isinstance(original, tg.Variable) and float(original) == 1.0


@pytest.mark.parametrize(
    ("action", "shapes"),
    [
        (lambda: tg.constant(np.ones((2, 3))) + tg.constant(np.ones(4)), ["(2, 3)", "(4,)"]),
        (lambda: tg.constant(np.ones((2, 3))) * np.ones((3, 2)), ["(2, 3)", "(3, 2)"]),
        (lambda: tg.matmul(tg.ones([2, 3]), tg.ones([4, 5])), ["(2, 3)", "(4, 5)"]),
        (lambda: tg.reshape(tg.ones([2, 3]), [4, 2]), ["(2, 3)", "(4, 2)"]),
        (lambda: tg.broadcast_to(tg.ones([2, 3]), [3, 3]), ["(2, 3)", "(3, 3)"]),
        (lambda: tg.concat([tg.ones([2, 3]), tg.ones([2, 4])], 0), ["(2, 3)", "(2, 4)"]),
        (lambda: tg.stack([tg.ones([2]), tg.ones([3])]), ["(2,)", "(3,)"]),
        (lambda: tg.where(tg.constant([True, False]), tg.ones([3]), 0.0), ["(2,)", "(3,)"]),
        (lambda: tg.Variable([1.0, 2.0]).assign([1.0, 2.0, 3.0]), ["(3,)", "(2,)"]),
        (lambda: tg.Variable([1.0, 2.0]).assign_sub(tg.ones([2, 2])), ["(2,)", "(2, 2)"]),
        (lambda: tg.squeeze(tg.ones([2, 1]), axis=0), ["(2, 1)"]),
    ],
)
def test_wrong_shapes_raise_value_error_naming_them(action: Callable[[], object],
                                                     shapes: list[str]) -> None:
    with pytest.raises(ValueError) as error:
        action()
    assert all(shape in str(error.value) for shape in shapes), str(error.value)


def test_numpy_errors_that_are_not_about_shapes_pass_through() -> None:
    with pytest.raises(ValueError, match="negative integer powers"):
        tg.constant([2, 3]) ** tg.constant([-1, 1])


def test_tensor_constructor_is_constant() -> None:
    t = tg.Tensor([1.0, 2.0])
    assert t.dtype == tg.float32 and t.numpy().tolist() == [1.0, 2.0]
    assert tg.Tensor(3, dtype="float64").dtype == tg.float64


def test_large_results_never_share_memory_that_is_still_referenced() -> None:
    """Large results reuse released buffers; none may be reused while anything refers to it."""
    x = tg.constant(np.arange(200_000, dtype=np.float32))
    kept = [x * float(i) for i in range(12)]
    view = (x + 1.0)[:10]
    array = (x - 1.0).numpy()
    for _ in range(3):
        scratch = [tg.square(x) for _ in range(12)]
        del scratch
    for i, t in enumerate(kept):
        np.testing.assert_array_equal(t.numpy(), np.arange(200_000, dtype=np.float32) * i)
    np.testing.assert_array_equal(view.numpy(), np.arange(10) + 1.0)
    np.testing.assert_array_equal(array, np.arange(200_000, dtype=np.float32) - 1.0)


def test_released_large_results_are_reused() -> None:
    x = tg.constant(np.ones(200_000, dtype=np.float32))
    first = x * 2.0
    address = first.numpy().__array_interface__["data"][0]
    del first
    second = x * 3.0
    assert second.numpy().__array_interface__["data"][0] == address
    np.testing.assert_array_equal(second.numpy(), 3.0)
