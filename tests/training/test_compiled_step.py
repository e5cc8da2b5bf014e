"""The loop's one step (forward pass, loss on the tape, gradient, optimizer update) compiles
with tg.function for every model kind, loss and optimizer: one trace, then replays that give
the same bits as eager steps (params, losses and optimizer state)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from service import engine as tg
from service.training.data import blobs
from service.training.kinds import MLP, Kind, Linear, Logistic, Model
from service.training.loop import Examples, Fit
from service.training.records import FitSpec

CASES: list[tuple[Kind, str]] = [
    (Linear(2), "mse"),
    (Linear(2), "huber"),
    (Logistic(2), "cross_entropy"),
    (Logistic(2, 3), "cross_entropy"),
    (MLP(2, (4,), "tanh", "classification", 3), "cross_entropy"),
    (MLP(2, (4, 3), "relu"), "mae"),
    (MLP(2, (3,), "sigmoid"), "mse"),
]
OPTIMIZERS = [
    {"kind": "sgd", "learning_rate": 0.05},
    {"kind": "momentum", "learning_rate": 0.05, "nesterov": True},
    {"kind": "adam", "learning_rate": 0.05},
]


def steps(kind: Kind, loss: str, optimizer: dict[str, Any], compiled: bool
          ) -> tuple[list[bytes], dict[str, bytes], dict[str, bytes], int]:
    x, y = blobs(64, 2, kind.num_classes or 2, seed=1)
    target = y if kind.task == "classification" else y.astype(np.float64)
    loop = Fit(Model(kind, kind.initial(3), "float32"), Examples(x, target),
               FitSpec(epochs=1, optimizer=optimizer, loss=loss, l1=0.01, l2=0.02))
    step = tg.function(loop.step) if compiled else loop.step
    losses = []
    for lo in (0, 32, 0, 32, 0):
        value, _ = step(tg.constant(loop.train.x[lo:lo + 32]),
                        tg.constant(loop.train.targets[lo:lo + 32]))
        losses.append(np.asarray(value.numpy()).tobytes())
    params = {k: v.tobytes() for k, v in loop.model.params().items()}
    state = {k: v.tobytes() for k, v in loop.optimizer.state().items()}
    return losses, params, state, step.trace_count if compiled else 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=lambda o: o["kind"])
@pytest.mark.parametrize(("kind", "loss"), CASES, ids=[f"{k.name}-{k.config()}-{loss}"
                                                         for k, loss in CASES])
def test_the_step_compiles_bit_identical(kind: Kind, loss: str,
                                         optimizer: dict[str, Any]) -> None:
    *eager, _ = steps(kind, loss, optimizer, compiled=False)
    *compiled, traces = steps(kind, loss, optimizer, compiled=True)
    assert traces == 1
    assert compiled == eager
