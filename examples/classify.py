"""A small neural network learns the two moons, through Tapeline's generated Python client:
synthetic data, an MLP classifier, a run with validation and early stopping, and a figure of
its decision regions with the data.

    make client && .venv/bin/pip install ./clients/python   # the generated client
    make run                                                # in another terminal
    .venv/bin/python examples/classify.py --out figures

Writes ``decision_regions.png``: each point of the plane coloured by the probability the
trained model gives class 1, the 0.5 boundary drawn, and the data over it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt
import numpy as np
from tapeline_client import Client
from tapeline_client.api.datasets import datasets_create_synthetic, datasets_download
from tapeline_client.api.history import history_run
from tapeline_client.api.models import models_create, models_predict
from tapeline_client.api.runs import runs_create
from tapeline_client.models import (
    Adam,
    ClassPrediction,
    EarlyStoppingSpec,
    HistoryRunFormat,
    MLPModelCreate,
    MLPModelCreateTask,
    MoonsSynthetic,
    PredictRequest,
    RandomInit,
    RunCreate,
    ValidationFraction,
)

GRID = 120  # points per side of the plane's grid


def train(client: Client, seed: int) -> dict[str, np.ndarray]:
    """Make the moons, train an MLP on them, and predict over a grid of the plane."""
    moons = datasets_create_synthetic.sync(client=client, body=MoonsSynthetic(
        kind="moons", num_examples=600, noise=0.2, seed=seed))
    data = datasets_download.sync(moons.id, client=client)
    model = models_create.sync(client=client, body=MLPModelCreate(
        kind="mlp", features=2, hidden=[16, 16], task=MLPModelCreateTask.CLASSIFICATION,
        initial=RandomInit(random_seed=seed), name="moons"))
    run = runs_create.sync(model.id, client=client, prefer="wait=120", body=RunCreate(
        dataset_id=moons.id, epochs=1000, batch_size=32, shuffle_seed=seed,
        optimizer=Adam(kind="adam", learning_rate=0.01),
        validation=ValidationFraction(fraction=0.2),
        early_stopping=EarlyStoppingSpec(patience=20)))
    if run.status.value != "succeeded":
        raise SystemExit(f"run {run.id} ended {run.status.value}: {run.error}")

    history = history_run.sync(run.id, client=client, format_=HistoryRunFormat.COLUMNS)
    metrics = history.metrics.to_dict()
    for epoch in range(0, len(history.epoch), 10):
        print(f"Epoch {epoch:3d}: loss={history.loss[epoch]:.4f} "
              f"accuracy={metrics['accuracy'][epoch]:.3f} "
              f"val_accuracy={metrics['val_accuracy'][epoch]:.3f}")
    final = run.final.metrics.to_dict()
    stopped = run.stopped_early
    print(f"Stopped at epoch {stopped.epoch}, best epoch {stopped.best_epoch}" if stopped
          else f"Trained {run.epochs_completed} epochs")
    print(f"Final: accuracy={final['accuracy']:.3f} val_accuracy={final['val_accuracy']:.3f}")

    x = np.asarray(data.x)
    low, high = x.min(axis=0) - 0.5, x.max(axis=0) + 0.5
    u, v = np.meshgrid(np.linspace(low[0], high[0], GRID), np.linspace(low[1], high[1], GRID))
    grid = np.column_stack([u.ravel(), v.ravel()])
    predicted = models_predict.sync(model.id, client=client,
                                    body=PredictRequest(x=grid.tolist()))
    assert isinstance(predicted, ClassPrediction)
    probability = np.asarray(predicted.probabilities)[:, 1].reshape(GRID, GRID)
    return {"x": x, "y": np.asarray(data.y), "u": u, "v": v, "p": probability}


def plot(found: dict[str, np.ndarray], path: Path) -> None:
    """The decision regions (probability of class 1), the boundary, and the data."""
    fig, ax = plt.subplots(figsize=(8, 5))
    regions = ax.contourf(found["u"], found["v"], found["p"], levels=20, cmap="RdBu_r",
                          alpha=0.7, vmin=0, vmax=1)
    ax.contour(found["u"], found["v"], found["p"], levels=[0.5], colors="black")
    for label, color in ((0, "tab:blue"), (1, "tab:red")):
        chosen = found["y"] == label
        ax.scatter(found["x"][chosen, 0], found["x"][chosen, 1], s=12, color=color,
                   edgecolors="black", linewidths=0.5, label=f"class {label}")
    fig.colorbar(regions, ax=ax, label="P(class 1)")
    ax.set(xlabel="x0", ylabel="x1", title="An MLP 2-16-16-2 on the two moons")
    ax.legend(loc="upper right")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """Train against ``--url`` and write the figure into ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("TAPELINE", "http://127.0.0.1:8000"),
                        help="Tapeline's base URL (default: $TAPELINE or http://127.0.0.1:8000)")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for the PNG file")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the data, the initial params and the shuffle")
    args = parser.parse_args(argv)

    with Client(base_url=args.url, raise_on_unexpected_status=True, timeout=180.0) as client:
        found = train(client, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(found, args.out / "decision_regions.png")
    print(f"wrote {args.out / 'decision_regions.png'}")


if __name__ == "__main__":
    main()
