"""The "Custom training: basics" loop, verbatim but for the import, against TensorFlow's numbers."""

import json
from pathlib import Path

import numpy as np
import pytest

from service import engine as tg

FIXTURE = Path(__file__).parent.parent / "fixtures" / "tf_reference_trajectories.json"
CASES = json.loads(FIXTURE.read_text())["cases"]


class Model:
    def __init__(self, W: float, b: float) -> None:
        self.W = tg.Variable(W)
        self.b = tg.Variable(b)

    def __call__(self, x: tg.Tensor) -> tg.Tensor:
        return self.W * x + self.b


def loss(target_y: tg.Tensor, predicted_y: tg.Tensor) -> tg.Tensor:
    return tg.reduce_mean(tg.square(target_y - predicted_y))


def train(model: Model, inputs: tg.Tensor, outputs: tg.Tensor, learning_rate: float) -> None:
    with tg.GradientTape() as t:
        current_loss = loss(outputs, model(inputs))
    dW, db = t.gradient(current_loss, [model.W, model.b])
    model.W.assign_sub(learning_rate * dW)
    model.b.assign_sub(learning_rate * db)


@pytest.mark.parametrize("name", sorted(CASES))
def test_tutorial_reproduces_tensorflow(name: str) -> None:
    case = CASES[name]
    inputs, outputs = tg.constant(case["x"]), tg.constant(case["y"])
    model = Model(case["initial"]["W"], case["initial"]["b"])
    Ws, bs, losses = [], [], []
    for _ in range(case["epochs"]):
        Ws.append(model.W.numpy())
        bs.append(model.b.numpy())
        losses.append(float(loss(outputs, model(inputs))))
        train(model, inputs, outputs, learning_rate=case["learning_rate"])

    history = case["history"]
    np.testing.assert_allclose(Ws, history["W"], rtol=1e-5)
    np.testing.assert_allclose(bs, history["b"], rtol=1e-5)
    np.testing.assert_allclose(losses, history["loss"], rtol=1e-5)
    np.testing.assert_allclose(model.W.numpy(), case["final"]["W"], rtol=1e-5)
    np.testing.assert_allclose(model.b.numpy(), case["final"]["b"], rtol=1e-5)
    assert model.W.dtype == tg.float32 and model.b.dtype == tg.float32
