"""Every gradient rule at 65,536 elements or more, where the engine saves memory and passes.

At that size a tape keeps only the shape and dtype of a value no rule of its op reads
(vjps.py says which rules read their arguments or output), and scalar factors of
gradients stay lazy (tape.Scaled). So a rule that reads a value its row does not declare
fails here, and a row that declares a read its rules do not need fails the second test.
Each case checks first and second derivatives against the same computation with that
machinery switched off, and the compiled computation against eager, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from service import engine as tg
from service.engine import tape, tensor
from tests.engine.gradcheck import (
    assert_compiled_matches_eager,
    gradient_of,
    tape_gradients,
    weighted_sum,
)

ROWS, COLS = 256, 257  # 65,792 elements
BIG = (ROWS, COLS)
WIDE = (2, 1 << 16)  # reduced over axis 0, the result still has 65,536 elements

rng = np.random.default_rng(0)


def normal(shape: tuple[int, ...]) -> np.ndarray:
    return rng.normal(size=shape)


def positive(shape: tuple[int, ...]) -> np.ndarray:
    return np.abs(rng.normal(size=shape)) + 0.5


def nonzero(shape: tuple[int, ...]) -> np.ndarray:
    x = rng.normal(size=shape)
    return np.where(x < 0, x - 0.2, x + 0.2)


Case = tuple[Callable[..., tg.Tensor], list[np.ndarray]]
CASES: dict[str, Case] = {
    "add": (tg.add, [normal(BIG), normal(BIG)]),
    "add, broadcast": (lambda x, y: tg.square(x + y), [normal(BIG), normal((COLS,))]),
    "subtract": (tg.subtract, [normal(BIG), normal(BIG)]),
    "subtract, broadcast": (lambda x, y: tg.exp(x - y), [normal((ROWS, 1)), normal(BIG)]),
    "multiply": (tg.multiply, [normal(BIG), normal(BIG)]),
    "multiply, broadcast": (tg.multiply, [normal(BIG), normal((ROWS, 1))]),
    "multiply by a scalar": (tg.multiply, [normal(()), normal(BIG)]),
    "divide": (tg.divide, [normal(BIG), nonzero(BIG)]),
    "pow": (tg.pow, [positive(BIG), normal(BIG)]),
    "maximum": (tg.maximum, [normal(BIG), normal(BIG)]),
    "minimum": (tg.minimum, [normal(BIG), normal(BIG)]),
    "where": (lambda x, y: tg.where(x > y, x * y, y - x), [normal(BIG), normal(BIG)]),
    "negative": (tg.negative, [normal(BIG)]),
    "square": (tg.square, [normal(BIG)]),
    "abs": (tg.abs, [nonzero(BIG)]),
    "sign": (lambda x: tg.sign(x) * x, [nonzero(BIG)]),
    "sqrt": (tg.sqrt, [positive(BIG)]),
    "exp": (tg.exp, [normal(BIG)]),
    "log": (tg.log, [positive(BIG)]),
    "tanh": (tg.tanh, [normal(BIG)]),
    "sigmoid": (tg.sigmoid, [normal(BIG)]),
    "softplus": (tg.softplus, [normal(BIG)]),
    "relu": (tg.relu, [nonzero(BIG)]),
    "matmul": (tg.matmul, [normal((512, 128)), normal((128, 512))]),
    "matmul, vector": (tg.matmul, [normal((1 << 16, 2)), normal((2,))]),
    "reduce_sum": (lambda x: tg.reduce_sum(x, axis=0), [normal(WIDE)]),
    "reduce_mean": (lambda x: tg.reduce_mean(x, axis=0), [normal(WIDE)]),
    "reduce_mean, all": (tg.reduce_mean, [normal(BIG)]),
    "reduce_max": (lambda x: tg.reduce_max(x, axis=0), [normal(WIDE)]),
    "reduce_min": (lambda x: tg.reduce_min(x, axis=0, keepdims=True), [normal(WIDE)]),
    "reshape": (lambda x: tg.reshape(x, (COLS, ROWS)) * 2.0, [normal(BIG)]),
    "transpose": (lambda x: tg.transpose(x) * 2.0, [normal(BIG)]),
    "broadcast_to": (lambda x: tg.broadcast_to(x, BIG) * 2.0, [normal((COLS,))]),
    "getitem": (lambda x: x[::2] * x[1::2], [normal((2 * ROWS, COLS))]),
    "gather": (lambda x: tg.gather(x, [0, 2, 2, 5]) * 3.0, [normal(BIG)]),
    "cast": (lambda x: tg.cast(tg.square(tg.cast(x, tg.float32)), tg.float64), [normal(BIG)]),
    "concat": (lambda x, y: tg.concat([x, tg.exp(y)], axis=0), [normal(BIG), normal(BIG)]),
    "stack": (lambda x, y: tg.stack([x, y * x], axis=1), [normal(BIG), normal(BIG)]),
}


def derivatives(f: Callable[..., tg.Tensor], n_args: int) -> list[Callable[..., tg.Tensor]]:
    """f's weighted sum, and the weighted sum of its gradient (for second derivatives)."""
    scalar = weighted_sum(f)
    return [scalar, weighted_sum(gradient_of(scalar, n_args), weights_seed=1)]


@pytest.mark.parametrize("name", CASES)
def test_every_rule_runs_at_large_shapes(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    f, values = CASES[name]
    sizes = [v.size for v in values] + [f(*map(tg.constant, values)).numpy().size]
    assert max(sizes) >= tensor.LARGE
    functions = derivatives(f, len(values))
    large = []
    for function in functions:
        assert_compiled_matches_eager(function, values)
        large.append(tape_gradients(function, values))
    for module in (tensor, tape):  # what tapes and gradients do with small values
        monkeypatch.setattr(module, "LARGE", 1 << 62)
    for function, gradients in zip(functions, large, strict=True):
        for got, want in zip(gradients, tape_gradients(function, values), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_the_cases_run_every_gradient_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: set[str] = set()

    class Spy(dict[str, Any]):
        def get(self, name: str, default: Any = None) -> Any:
            ran.add(name)
            return super().get(name, default)

    monkeypatch.setattr(tape, "VJPS", Spy(tape.VJPS))
    for f, values in CASES.values():
        tape_gradients(derivatives(f, len(values))[1], values)
    assert ran >= set(tape.VJPS), f"no case runs the rules of {sorted(set(tape.VJPS) - ran)}"


# Each op whose row declares reads, and a case whose derivatives run its rules.
DECLARED_READS = {
    "multiply": "multiply", "divide": "divide", "pow": "pow", "maximum": "maximum",
    "minimum": "minimum", "where": "where", "square": "square", "abs": "abs", "sqrt": "sqrt",
    "exp": "exp", "log": "log", "tanh": "tanh", "sigmoid": "sigmoid", "softplus": "softplus",
    "relu": "relu", "matmul": "matmul", "reduce_max": "reduce_max", "reduce_min": "reduce_min",
    "unbroadcast_mul": "multiply, broadcast",
}


def test_every_op_that_declares_reads_is_listed() -> None:
    declaring = {name for name, reads in tape.READS.items() if reads.args or reads.ans}
    assert declaring == set(DECLARED_READS)


@pytest.mark.parametrize(("name", "flag"), [(name, flag) for name in DECLARED_READS
                                             for flag in ("args", "ans")
                                             if getattr(tape.READS[name], flag)])
def test_every_declared_read_is_needed(name: str, flag: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Keeping only shapes where a row declares a read breaks its rules: the flag is needed."""
    f, values = CASES[DECLARED_READS[name]]
    monkeypatch.setitem(tape.READS, name, tape.READS[name]._replace(**{flag: False}))
    with pytest.raises((TypeError, AttributeError)):
        tape_gradients(derivatives(f, len(values))[1], values)
