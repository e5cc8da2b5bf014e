"""TensorFlow's "Custom training: basics" tutorial, end to end through Tapeline's generated
Python client, with the tutorial's two figures.

    make client && .venv/bin/pip install ./clients/python   # the generated client
    make run                                                # in another terminal
    .venv/bin/python examples/tutorial.py --out figures

Writes ``data_and_predictions.png`` (the data, the ground truth and the model's predictions
before and after training) and ``parameters.png`` (W and b at the start of each epoch, then
the final model after the last one, marked final; the true values dashed).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt
from tapeline_client import Client
from tapeline_client.api.datasets import datasets_create_synthetic, datasets_download
from tapeline_client.api.history import history_run
from tapeline_client.api.models import models_create, models_predict
from tapeline_client.api.runs import runs_create, runs_get
from tapeline_client.models import (
    SGD,
    HistoryRunFormat,
    LinearModelCreate,
    LinearSynthetic,
    PredictRequest,
    RunCreate,
)

TRUE_W, TRUE_B = 3.0, 2.0
FINAL = {"succeeded", "failed", "cancelled", "diverged"}


def train(client: Client, seed: int) -> dict[str, list[float]]:
    """Synthesize the data, train a fresh model for ten epochs, and collect what to plot."""
    dataset = datasets_create_synthetic.sync(client=client, body=LinearSynthetic(
        num_examples=1000, true_w=[TRUE_W], true_b=TRUE_B, noise_stddev=1.0, seed=seed))
    data = datasets_download.sync(dataset.id, client=client)
    x = [row[0] for row in data.x]

    model = models_create.sync(client=client, body=LinearModelCreate(name="tutorial"))
    before = models_predict.sync(model.id, client=client, body=PredictRequest(x=x)).y

    run = runs_create.sync(model.id, client=client, prefer="wait=60", body=RunCreate(
        dataset_id=dataset.id, epochs=10, optimizer=SGD(kind="sgd", learning_rate=0.1)))
    while run.status.value not in FINAL:
        time.sleep(0.2)
        run = runs_get.sync(run.id, client=client)
    if run.status.value != "succeeded":
        raise SystemExit(f"run {run.id} ended {run.status.value}: {run.error}")

    history = history_run.sync(run.id, client=client, format_=HistoryRunFormat.COLUMNS)
    for epoch, w, b, loss in zip(history.epoch, history.w, history.b, history.loss,
                                 strict=True):
        print(f"Epoch {epoch:2d}: W={w[0]:1.2f} b={b:1.2f}, loss={loss:2.5f}")
    print(f"Final:    W={run.final.w[0]:1.2f} b={run.final.b:1.2f}, loss={run.final.loss:2.5f}")

    after = models_predict.sync(model.id, client=client, body=PredictRequest(x=x)).y
    return {
        "x": x, "y": data.y, "before": before, "after": after,
        # W and b at the start of each epoch, then after the last one.
        "W": [w[0] for w in history.w] + [run.final.w[0]],
        "b": [*history.b, run.final.b],
    }


def plot_data(curves: dict[str, list[float]], path: Path) -> None:
    """The tutorial's first figure: data, ground truth, predictions before and after."""
    order = sorted(range(len(curves["x"])), key=curves["x"].__getitem__)
    x = [curves["x"][i] for i in order]
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.plot(curves["x"], curves["y"], ".", alpha=0.4, label="Data")
    ax.plot(x, [TRUE_W * v + TRUE_B for v in x], label="Ground truth")
    ax.plot(x, [curves["before"][i] for i in order], label="Predictions before training")
    ax.plot(x, [curves["after"][i] for i in order], label="Predictions after training")
    ax.set(xlabel="x", ylabel="y", title="f(x) = x * W + b")
    ax.legend()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_parameters(curves: dict[str, list[float]], path: Path) -> None:
    """The tutorial's second figure: W and b per epoch against their true values (dashed),
    the last point the final model (after the last epoch), marked with a ring."""
    epochs = range(len(curves["W"]))
    final = epochs[-1]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.plot(epochs, curves["W"], label="Weights", color=colors[0])
    ax.plot(epochs, [TRUE_W] * len(epochs), "--", label="True weight", color=colors[0])
    ax.plot(epochs, curves["b"], label="Bias", color=colors[1])
    ax.plot(epochs, [TRUE_B] * len(epochs), "--", label="True bias", color=colors[1])
    for name, color, above in (("W", colors[0], 10), ("b", colors[1], -18)):
        ax.plot([final], [curves[name][-1]], "o", markersize=9, markerfacecolor="white",
                markeredgewidth=2, color=color, label="Final model" if name == "W" else None)
        ax.annotate(f"final {name} = {curves[name][-1]:.2f}", (final, curves[name][-1]),
                    textcoords="offset points", xytext=(-10, above), ha="right")
    ax.set(xlabel="Epoch", title="W and b per epoch")
    ax.legend()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"parameters.png: W and b at the start of epochs 0-{final - 1}, then the final model "
          f"after epoch {final - 1} (W={curves['W'][-1]:.4f} b={curves['b'][-1]:.4f}), marked "
          "final")


def main(argv: list[str] | None = None) -> None:
    """Run the tutorial against ``--url`` and write the two figures into ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("TAPELINE", "http://127.0.0.1:8000"),
                        help="Tapeline's base URL (default: $TAPELINE or http://127.0.0.1:8000)")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for the PNG files")
    parser.add_argument("--seed", type=int, default=42, help="seed of the synthetic data")
    args = parser.parse_args(argv)

    with Client(base_url=args.url, raise_on_unexpected_status=True, timeout=90.0) as client:
        curves = train(client, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    plot_data(curves, args.out / "data_and_predictions.png")
    plot_parameters(curves, args.out / "parameters.png")
    print(f"wrote {args.out / 'data_and_predictions.png'} and {args.out / 'parameters.png'}")


if __name__ == "__main__":
    main()
