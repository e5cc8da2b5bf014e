"""A fixed set of runs with known params, metrics and tags for the search tests, written to a
store through the repository, and the same runs as flat rows of field values (built here from
the same definitions, not by the service), over which the tests evaluate each case's
predicate in Python."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import update
from sqlalchemy.orm import Session

from service.store import repo
from service.store.tables import RunRow

START = datetime(2024, 1, 1, tzinfo=UTC)
TENANT = "searcher"
OTHER_TENANT = "neighbour"
MODELS = {
    "line1": ("linear", {"features": 1}),
    "line2": ("linear", {"features": 2}),
    "logit3": ("logistic", {"features": 2, "classes": 3}),
    "mlp16": ("mlp", {"features": 2, "hidden": [16], "activation": "relu",
                      "task": "regression"}),
    "mlp1616": ("mlp", {"features": 2, "hidden": [16, 16], "activation": "tanh",
                        "task": "classification", "classes": 2}),
    "mlp32": ("mlp", {"features": 2, "hidden": [32], "activation": "sigmoid",
                      "task": "regression"}),
}


def sgd(lr: float) -> dict[str, Any]:
    return {"kind": "sgd", "learning_rate": lr}


def momentum(lr: float, mu: float = 0.9, nesterov: bool = False) -> dict[str, Any]:
    return {"kind": "momentum", "learning_rate": lr, "momentum": mu, "nesterov": nesterov}


def adam(lr: float) -> dict[str, Any]:
    return {"kind": "adam", "learning_rate": lr, "beta_1": 0.9, "beta_2": 0.999,
            "epsilon": 1e-7}


@dataclass
class Spec:
    """One fixture run: its model and dataset, options, outcome, annotations."""

    label: str
    model: str
    model_name: str | None
    dataset: str
    optimizer: dict[str, Any]
    status: str
    name: str | None = None
    epochs: int = 10
    batch_size: int | None = None
    shuffle_seed: int | None = None
    loss: str = "mse"
    huber_delta: float = 1.0
    l2: float = 0.0
    validation: dict[str, Any] | None = None
    early_stopping: dict[str, Any] | None = None
    shuffle: bool = True
    completed: int = 0
    final_loss: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    duration_ms: float | None = None
    tags: dict[str, str] = field(default_factory=dict)
    description: str | None = None

    def options(self) -> dict[str, Any]:
        return {"loss": self.loss, "huber_delta": self.huber_delta,
                "regularization": {"l1": 0.0, "l2": self.l2}, "validation": self.validation,
                "early_stopping": self.early_stopping, "shuffle": self.shuffle}


STOP = {"monitor": "val_loss", "patience": 3, "min_delta": 0.0, "restore_best": False}
SPECS = [
    Spec("a", "line1", "shared", "moons", sgd(0.1), "succeeded", name="sweep-01",
         completed=10, final_loss=0.9, metrics={"mse": 0.9, "rmse": 0.95, "r2": -0.2},
         duration_ms=1500.0, tags={"team": "cv", "priority": "high"},
         description="the baseline run"),
    Spec("b", "line2", "shared", "moons", sgd(0.01), "succeeded", name="sweep-02",
         batch_size=32, completed=10, final_loss=0.4, validation={"fraction": 0.2},
         metrics={"mse": 0.4, "rmse": 0.63, "r2": 0.5, "val_loss": 0.35, "val_mse": 0.35},
         duration_ms=800.0, tags={"team": "cv", "best": ""}),
    Spec("c", "logit3", "clf", "blobs", adam(0.001), "succeeded", name="Sweep-A",
         loss="cross_entropy", batch_size=64, epochs=20, completed=20, final_loss=0.2,
         validation={"fraction": 0.2}, early_stopping=STOP,
         metrics={"accuracy": 0.96, "log_loss": 0.2, "val_loss": 0.25, "val_accuracy": 0.91},
         duration_ms=4200.0, tags={"team": "nlp", "v1.2": "x"}),
    Spec("d", "mlp16", None, "moons", adam(0.01), "failed", name="sweep-11", batch_size=32,
         completed=3, tags={"team": "nlp", "priority": "low"}, duration_ms=120.0),
    Spec("e", "mlp1616", "clf", "blobs", momentum(0.05, 0.9, True), "diverged", epochs=5,
         loss="cross_entropy", completed=2, final_loss=None, duration_ms=90.5,
         tags={"priority": "high"}, name="100%_done"),
    Spec("f", "mlp32", "deep", "gone", momentum(0.1, 0.5), "succeeded", name="odd[x]*?",
         loss="huber", huber_delta=2.5, l2=0.01, completed=10, final_loss=0.1,
         metrics={"mse": 0.1, "rmse": 0.31, "r2": 0.9}, duration_ms=2500.0, shuffle=False,
         shuffle_seed=123456789012, validation={"dataset_id": "ds_elsewhere"}),
    Spec("g", "line1", "shared", "moons", sgd(0.05), "queued", epochs=20),
    Spec("h", "line2", "other", "blobs", adam(0.001), "running", name="sweep-21",
         batch_size=16, completed=4, tags={"team": "cv"}, l2=0.001),
    Spec("i", "logit3", "clf", "blobs", sgd(1e-3), "succeeded", name="sweep-05",
         loss="cross_entropy", batch_size=64, completed=10, final_loss=0.5,
         validation={"fraction": 0.25}, early_stopping={**STOP, "patience": 8,
                                                         "restore_best": True},
         metrics={"accuracy": 0.8, "log_loss": 0.5, "val_loss": 0.55, "val_accuracy": 0.78},
         duration_ms=950.0, tags={"team": "cv", "best": "yes"}),
    Spec("j", "mlp16", "deep", "moons", momentum(0.01, 0.99), "cancelled", name="Sweep-B",
         completed=1, duration_ms=30.0, description="stopped: a BASELINE copy"),
    Spec("k", "mlp1616", None, "blobs", adam(0.1), "succeeded", loss="cross_entropy",
         batch_size=128, epochs=5, completed=5, final_loss=0.05,
         validation={"fraction": 0.2},
         metrics={"accuracy": 0.99, "log_loss": 0.05, "val_loss": 0.3, "val_accuracy": 0.93},
         duration_ms=600.0, tags={"team": "nlp", "best": "yes", "priority": "low"}),
    Spec("l", "mlp32", "deep", "moons", sgd(0.2), "succeeded", name="sweep-12",
         completed=10, final_loss=1.5, metrics={"mse": 1.5, "rmse": 1.22, "r2": -1.0},
         duration_ms=1500.0, tags={"team": "vision"}),
]


def _created(index: int) -> datetime:
    return START + timedelta(hours=index)


def insert(session: Session, tenant: str = TENANT) -> dict[str, str]:
    """Write the fixture runs for ``tenant``; their ids by label (and each dataset's by name,
    as ``ds:<name>``). The dataset ``gone`` is deleted afterwards: its run keeps its id."""
    store = repo.Repository(session, tenant)
    x, y = np.zeros((4, 2)), np.array([0.0, 1.0, 0.0, 1.0])
    datasets = {name: store.create_dataset(x=x, y=y, source="inline", name=name)
                for name in ("moons", "blobs", "gone")}
    ids = {f"ds:{name}": row.id for name, row in datasets.items()}
    for index, spec in enumerate(SPECS):
        kind, config = MODELS[spec.model]
        model = store.create_model(kind=kind, config=config, params={"W": np.zeros(1)},
                                   name=spec.model_name)
        run = store.create_run(
            model=model, dataset=datasets[spec.dataset], epochs=spec.epochs,
            optimizer=spec.optimizer, batch_size=spec.batch_size,
            shuffle_seed=spec.shuffle_seed, dtype="float32", options=spec.options(),
            name=spec.name, description=spec.description, tags=spec.tags)
        created = _created(index)
        finished = None if spec.status in ("queued", "running") else \
            created + timedelta(minutes=30)
        session.execute(update(RunRow).where(RunRow.id == run.id).values(
            status=spec.status, created_at=created,
            started_at=None if spec.status == "queued" else created,
            finished_at=finished, duration_ms=spec.duration_ms,
            epochs_completed=spec.completed, final_loss=spec.final_loss,
            final_metrics=spec.metrics or None))
        ids[spec.label] = run.id
        ids[f"model:{spec.label}"] = model.id
    session.flush()
    store.delete_dataset(ids["ds:gone"])  # allowed: its one run has finished
    session.flush()
    return ids


def flat(prefix: str, value: dict[str, Any]) -> dict[str, Any]:
    """Nested options as ``prefix.a.b`` fields, None values left out."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            out |= flat(f"{prefix}.{key}", item)
        elif item is not None:
            out[f"{prefix}.{key}"] = item
    return out


def rows(ids: dict[str, str]) -> list[dict[str, Any]]:
    """The fixture runs as flat rows of field values, in creation order."""
    found = []
    for index, spec in enumerate(SPECS):
        kind, config = MODELS[spec.model]
        created = _created(index)
        row: dict[str, Any] = {
            "label": spec.label, "id": ids[spec.label], "name": spec.name,
            "description": spec.description, "status": spec.status, "created_at": created,
            "started_at": None if spec.status == "queued" else created,
            "finished_at": None if spec.status in ("queued", "running")
            else created + timedelta(minutes=30),
            "duration_ms": spec.duration_ms, "epochs_completed": spec.completed,
            "model.id": ids[f"model:{spec.label}"], "model.name": spec.model_name,
            "model.kind": kind, "dataset.id": ids[f"ds:{spec.dataset}"],
            "dataset.label": spec.dataset,
            "dataset.name": None if spec.dataset == "gone" else spec.dataset,
            "metrics.loss": spec.final_loss,
            **flat("model", config),
            **flat("params", {"epochs": spec.epochs, "optimizer": spec.optimizer,
                              "batch_size": spec.batch_size,
                              "shuffle_seed": spec.shuffle_seed, "dtype": "float32",
                              **spec.options()}),
            **flat("metrics", spec.metrics),
            **{f"tags.{key}": value for key, value in spec.tags.items()},
        }
        found.append({key: value for key, value in row.items() if value is not None})
    return found
