"""The "Custom training: basics" loop, verbatim but for the import, against TensorFlow's numbers."""

import json
from pathlib import Path

import numpy as np
import pytest

from service import engine as tg

FIXTURE = Path(__file__).parent.parent / "fixtures" / "tf_reference_trajectories.json"
CASES = json.loads(FIXTURE.read_text())["cases"]


class MyModel:
    def __init__(self):
        # Initialize the weights to `5.0` and the bias to `0.0`
        # In practice, these should be randomly initialized
        self.W = tg.Variable(5.0)
        self.b = tg.Variable(0.0)

    def __call__(self, x):
        return self.W * x + self.b


# This computes a single loss value for an entire batch
def loss(target_y, predicted_y):
    return tg.reduce_mean(tg.square(target_y - predicted_y))


# Given a callable model, inputs, outputs, and a learning rate...
def train(model, x, y, learning_rate):
    with tg.GradientTape() as t:
        # Trainable variables are automatically tracked by GradientTape
        current_loss = loss(y, model(x))

    # Use GradientTape to calculate the gradients with respect to W and b
    dw, db = t.gradient(current_loss, [model.W, model.b])

    # Subtract the gradient scaled by the learning rate
    model.W.assign_sub(learning_rate * dw)
    model.b.assign_sub(learning_rate * db)


@pytest.mark.parametrize("name", sorted(CASES))
def test_tutorial_reproduces_tensorflow(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    case = CASES[name]
    x, y = tg.constant(case["x"]), tg.constant(case["y"])
    model = MyModel()
    model.W.assign(case["initial"]["W"])  # the second case starts elsewhere
    model.b.assign(case["initial"]["b"])

    # Collect the history of W-values and b-values to plot later
    Ws, bs, losses = [], [], []
    epochs = range(case["epochs"])
    for epoch in epochs:
        Ws.append(model.W.numpy())
        bs.append(model.b.numpy())
        current_loss = loss(y, model(x))
        losses.append(current_loss.numpy())

        train(model, x, y, learning_rate=case["learning_rate"])
        print("Epoch %2d: W=%1.2f b=%1.2f, loss=%2.5f" %  # noqa: UP031
              (epoch, Ws[-1], bs[-1], current_loss))

    history = case["history"]
    np.testing.assert_allclose(Ws, history["W"], rtol=1e-5)
    np.testing.assert_allclose(bs, history["b"], rtol=1e-5)
    np.testing.assert_allclose(losses, history["loss"], rtol=1e-5)
    np.testing.assert_allclose(model.W.numpy(), case["final"]["W"], rtol=1e-5)
    np.testing.assert_allclose(model.b.numpy(), case["final"]["b"], rtol=1e-5)
    assert {np.asarray(v).dtype for v in Ws + bs + losses} == {np.dtype(np.float32)}
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (f"Epoch  0: W={history['W'][0]:1.2f} b={history['b'][0]:1.2f}, "
                     f"loss={history['loss'][0]:2.5f}")
