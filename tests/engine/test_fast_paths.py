"""The engine's fast paths give the bits of the plain NumPy they replace: where() selecting by
bits, a column times a row, gather as np.take into a plan's buffer, tensors sharing an array's
memory, and a plan writing over arguments read for the last time and computing a
concatenation's parts in its buffer."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from service import engine as tg
from service.engine.ops import _outer, _where

SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 3.0, -2.5, 1e38, -1e-30]


def same_bits(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return bool(a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes())


def specials(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.asarray(rng.choice(SPECIAL, shape), dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize(("condition", "x", "y"), [
    ((40,), (40,), ()),  # ReLU's gradient: y is a constant zero
    ((40,), (), (40,)),  # the other side of maximum's gradient
    ((40,), (40,), (40,)),
    ((4, 10), (10,), (4, 1)),  # broadcasting every way
    ((4, 10), (4, 10), ()),
])
def test_where_gives_the_bits_of_np_where(dtype: Any, condition: tuple[int, ...],
                                          x: tuple[int, ...], y: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        c = rng.random(condition) > 0.5
        xv, yv = specials(rng, x, dtype), specials(rng, y, dtype)
        assert same_bits(_where(c, xv, yv), np.where(c, xv, yv))
        out = np.empty(np.broadcast_shapes(condition, x, y), dtype)
        assert _where(c, xv, yv, out=out) is out and same_bits(out, np.where(c, xv, yv))


def test_relu_and_its_gradient_keep_their_bits() -> None:
    x = tg.constant(np.array([-1.5, -0.0, 0.0, 2.0, np.nan, np.inf], np.float32))
    g = np.array([3.0, -2.0, 5.0, -0.0, 1.0, -4.0], np.float32)
    with tg.GradientTape() as tape:
        tape.watch(x)
        y = tg.relu(x)
    assert same_bits(y.numpy(), np.maximum(x.numpy(), 0))
    assert same_bits(tape.gradient(y, x, output_gradients=g).numpy(),
                     np.where(x.numpy() > 0, g, np.float32(0)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("n", "m"), [(256, 512), (5, 7), (1, 9), (9, 1)])
def test_a_column_times_a_row_gives_the_bits_of_matmul(dtype: Any, n: int, m: int) -> None:
    rng = np.random.default_rng(1)
    for a in (rng.standard_normal((n, 1)).astype(dtype), specials(rng, (n, 1), dtype)):
        for b in (rng.standard_normal((1, m)).astype(dtype), specials(rng, (1, m), dtype)):
            with np.errstate(all="ignore"):
                assert same_bits(_outer(a, b), np.matmul(a, b))
                assert same_bits((tg.constant(a) @ tg.constant(b)).numpy(), np.matmul(a, b))


def test_gather_with_integer_indices_copies_the_rows_and_their_gradient_accumulates() -> None:
    x = tg.constant(np.arange(12.0, dtype=np.float32).reshape(4, 3))
    with tg.GradientTape() as tape:
        tape.watch(x)
        picked = tg.gather(x, tg.constant([3, -1, 0]))
    assert same_bits(picked.numpy(), x.numpy()[[3, -1, 0]])
    assert tape.gradient(picked, x).numpy().tolist() == [[1.0] * 3, [0.0] * 3, [0.0] * 3,
                                                         [2.0] * 3]
    with pytest.raises(IndexError):
        tg.gather(x, [4])


def test_a_compiled_gather_writes_into_a_buffer_of_its_own_and_checks_the_indices() -> None:
    data = tg.from_numpy(np.random.default_rng(2).random((50, 6), dtype=np.float32))
    wide = tg.from_numpy(np.random.default_rng(3).random((50, 6000), dtype=np.float32))

    @tg.function
    def rows_sum(x: tg.Tensor, rows: tg.Tensor) -> tg.Tensor:
        return tg.reduce_sum(tg.gather(x, rows), axis=1)

    for x in (data, wide):  # a small gather, and one of more than 64 KiB
        for rows in ([1, 2, 3], [49, -50, 7], [0, 0, 0]):
            got = rows_sum(x, tg.constant(np.array(rows)))
            assert same_bits(got.numpy(), x.numpy()[rows].sum(axis=1))
        assert any(re.fullmatch(r"_take\(a0, a1, c\d+, out=b\d+\)", line)
                   for line in lines_of(rows_sum))
        for bad in ([50, 0, 0], [0, -51, 0]):
            with pytest.raises(IndexError):
                rows_sum(x, tg.constant(np.array(bad)))
    assert rows_sum.trace_count == 2


def test_from_numpy_shares_the_memory_read_only() -> None:
    array = np.arange(6, dtype=np.float32)
    tensor = tg.from_numpy(array)
    assert np.shares_memory(tensor.numpy(), array) and not tensor.numpy().flags.writeable
    assert array.flags.writeable  # the caller's own array is left as it was
    assert same_bits((tensor * 2.0).numpy(), array * 2)
    with pytest.raises(TypeError):
        tg.from_numpy([1.0, 2.0])  # type: ignore[arg-type]


def lines_of(function: tg.Function) -> list[str]:
    """The lines of a function's plan, each callable named by its __name__."""
    plan = function.plans()[0]

    def name(match: re.Match[str]) -> str:
        return getattr(plan._ns.get(match.group(0)), "__name__", match.group(0))

    return [re.sub(r"\bf\d+\b", name, line.strip()) for line in plan.source.splitlines()]


def test_an_elementwise_step_writes_over_an_argument_read_for_the_last_time() -> None:
    W = tg.Variable(np.random.default_rng(3).standard_normal((8, 8)).astype(np.float32))

    def f(x: tg.Tensor) -> tg.Tensor:
        h = tg.exp(tg.matmul(x, W) * 0.5)  # the product is read once: exp writes over it
        return tg.reduce_sum(h + 1.0)

    compiled = tg.function(f)
    x = tg.constant(np.random.default_rng(4).standard_normal((4, 8)).astype(np.float32))
    for _ in range(2):
        assert same_bits(compiled(x).numpy(), f(x).numpy())
    assert any(re.fullmatch(r"exp\((b\d+), \1\)", line) for line in lines_of(compiled))


def test_a_step_does_not_write_over_an_argument_read_later_or_seen_through_a_view() -> None:
    def f(x: tg.Tensor) -> tuple[tg.Tensor, tg.Tensor]:
        y = tg.exp(x)
        return tg.square(y) + y, tg.transpose(y * 2.0) * (y * 2.0)

    compiled = tg.function(f)
    x = tg.constant(np.random.default_rng(5).standard_normal((5, 5)).astype(np.float32))
    for _ in range(2):
        for got, want in zip(compiled(x), f(x), strict=True):
            assert same_bits(got.numpy(), want.numpy())


def test_the_parts_of_a_concatenation_are_computed_into_its_buffer() -> None:
    rng = np.random.default_rng(6)
    A = tg.Variable(rng.standard_normal((6, 4)).astype(np.float32))
    b = tg.Variable(rng.standard_normal(4).astype(np.float32))

    def flat_gradient(x: tg.Tensor) -> tg.Tensor:
        with tg.GradientTape() as tape:
            loss = tg.reduce_sum(tg.square(tg.matmul(x, A) + b))
        grads = tape.gradient(loss, [A, b])
        return tg.concat([tg.reshape(g, (-1,)) for g in grads], axis=0) * 1.0

    compiled = tg.function(flat_gradient)
    x = tg.constant(rng.standard_normal((3, 6)).astype(np.float32))
    for _ in range(2):
        assert same_bits(compiled(x).numpy(), flat_gradient(x).numpy())
    lines = lines_of(compiled)
    assert not any(line.startswith("_concatenate") for line in lines)
    placed = [line for line in lines if re.search(r"(out=|, )p\d+\)$", line)]
    assert len(placed) == 2  # A's gradient and b's, each computed into its rows


def test_a_concatenation_whose_part_is_read_again_copies_its_parts() -> None:
    def f(x: tg.Tensor) -> tuple[tg.Tensor, tg.Tensor]:
        y = tg.exp(x)
        return tg.concat([y, x * 2.0], axis=0), y * 3.0

    compiled = tg.function(f)
    x = tg.constant(np.arange(6.0, dtype=np.float32).reshape(2, 3))
    for _ in range(2):
        for got, want in zip(compiled(x), f(x), strict=True):
            assert same_bits(got.numpy(), want.numpy())
    assert any(line.startswith("_concatenate") for line in lines_of(compiled))
