"""The loop's logged row over a large split runs the model on blocks of rows, with the numbers
of one pass over every row (their bits, where the BLAS computes a row alike in any call), and a
large batch compiles at its first call: whole runs stay the same bits compiled and eager."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from service.training.data import blobs
from service.training.kinds import MLP, Kind, Model
from service.training.loop import ROW_BLOCK, Examples, Fit
from service.training.records import FitSpec
from tests.training.test_compiled_loop import fingerprint

N = 2 * ROW_BLOCK + 37  # two blocks, the last one longer

KINDS = [MLP(3, (8,), "relu", "classification", 3), MLP(3, (8, 4), "tanh"),
         MLP(3, (5,), "sigmoid", "classification", 2)]


def data_for(kind: Kind) -> Examples:
    x, y = blobs(N, 3, kind.num_classes or 2, spread=2.0, seed=3)
    return Examples(x, y if kind.task == "classification" else x[:, 0] * 2.0 - y)


def loop_for(kind: Kind, compiled: bool, **spec: Any) -> Fit:
    spec = {"epochs": 3, "optimizer": {"kind": "adam", "learning_rate": 0.01},
            "loss": kind.default_loss, "shuffle_seed": 1, **spec}
    return Fit(Model(kind, kind.initial(2), "float32"), data_for(kind), FitSpec(**spec),
               compiled=compiled)


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: f"{kind.task}-{kind.activation}")
def test_the_row_in_blocks_has_the_numbers_of_one_pass_over_every_row(kind: Kind) -> None:
    loop = loop_for(kind, compiled=False)
    train = loop.train
    loss, outputs = loop.forward(train.xs, train.ts)
    whole = loop.model(train.xs)
    np.testing.assert_allclose(outputs.numpy(), whole.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss.numpy(),
                               loop.objective(loop.model.named, train.ts, whole).numpy(),
                               rtol=1e-6)


@pytest.mark.parametrize("batch_size", [None, 500])
@pytest.mark.parametrize("kind", KINDS[:2], ids=lambda kind: kind.task)
def test_large_batches_compile_at_once_and_runs_stay_bit_identical(kind: Kind,
                                                                   batch_size: int | None) -> None:
    eager, compiled = (loop_for(kind, c, batch_size=batch_size) for c in (False, True))
    eager_items, compiled_items = list(eager.run()), list(compiled.run())
    assert fingerprint(compiled_items, compiled) == fingerprint(eager_items, eager)
    # the passes over every row (the rows, the outcome's, a full-batch step) traced on their
    # first call; mini-batches of 500 rows wait for more calls than 3 epochs make
    assert compiled._forward.trace_count == 1  # type: ignore[attr-defined]
    assert compiled._step.trace_count == (0 if batch_size else 1)  # type: ignore[attr-defined]
