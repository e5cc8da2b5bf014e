"""model kinds: params blobs and configs, run options, metrics, class labels

Revision ID: 0002
Revises: 0001

v1 kept a linear model's W (a float64 vector) and b (a float) in two columns of models, runs
and epochs. From here every kind's parameters are one safetensors blob of named float64
arrays, a model carries its kind's config, a run its options, a history row its metrics.
Existing rows are converted: W and b become the blob {"W": (F,), "b": ()}, a model's config
is {"features": F}, a run's options are v1's only choice (mean squared error, no penalty, no
validation, no early stopping, shuffled mini-batches), a v1 row has no metrics, and each
dataset gets the range of its y.
"""

import io
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import op
from safetensors.numpy import save

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

V1_OPTIONS = {
    "loss": "mse",
    "huber_delta": 1.0,
    "regularization": {"l1": 0.0, "l2": 0.0},
    "validation": None,
    "early_stopping": None,
    "shuffle": True,
}
REAL = sa.Float(precision=53)


def _params(W: bytes, b: float) -> bytes:
    return save({"W": np.frombuffer(W, dtype="<f8").copy(), "b": np.array(b, dtype="<f8")})


def _update(table: sa.TableClause, keys: list[str], rows: list[dict[str, Any]]) -> None:
    if rows:
        where = sa.and_(*(table.c[k] == sa.bindparam(f"k_{k}") for k in keys))
        values: dict[str, Any] = {c: sa.bindparam(c) for c in rows[0] if not c.startswith("k_")}
        op.get_bind().execute(table.update().where(where).values(values), rows)


def upgrade() -> None:
    bind = op.get_bind()

    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("classes", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("y_min", REAL, nullable=True))
        batch.add_column(sa.Column("y_max", REAL, nullable=True))
        batch.add_column(sa.Column("y_integral", sa.Boolean(), nullable=True))
    datasets = sa.table("datasets", sa.column("seq"), sa.column("y_min"), sa.column("y_max"),
                        sa.column("y_integral"))
    rows = []
    for seq, blob in bind.execute(sa.text("SELECT seq, y FROM datasets")):
        y = np.load(io.BytesIO(bytes(blob)), allow_pickle=False)
        rows.append({"k_seq": seq, "y_min": float(y.min()), "y_max": float(y.max()),
                     "y_integral": bool(np.all(y == np.round(y)))})
    _update(datasets, ["seq"], rows)
    with op.batch_alter_table("datasets") as batch:
        for name in ("y_min", "y_max", "y_integral"):
            batch.alter_column(name, nullable=False)

    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("config", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("params", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("random_seed", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("class_names", sa.JSON(), nullable=True))
    models = sa.table("models", sa.column("seq"), sa.column("config", sa.JSON()),
                      sa.column("params"))
    _update(models, ["seq"], [
        {"k_seq": seq, "config": {"features": features}, "params": _params(W, b)}
        for seq, features, W, b in bind.execute(
            sa.text('SELECT seq, features, "W", b FROM models'))
    ])
    with op.batch_alter_table("models") as batch:
        batch.alter_column("config", nullable=False)
        batch.alter_column("params", nullable=False)
        batch.drop_column("W")
        batch.drop_column("b")

    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("validation_dataset_id", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("options", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("record_params", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("initial_params", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("final_params", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("final_metrics", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("stopped_epoch", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("best_epoch", sa.Integer(), nullable=True))
    runs = sa.table("runs", sa.column("seq"), sa.column("options", sa.JSON()),
                    sa.column("record_params"), sa.column("initial_params"),
                    sa.column("final_params"))
    _update(runs, ["seq"], [
        {"k_seq": seq, "options": V1_OPTIONS, "record_params": True,
         "initial_params": _params(initial_W, initial_b),
         "final_params": None if final_W is None else _params(final_W, final_b)}
        for seq, initial_W, initial_b, final_W, final_b in bind.execute(sa.text(
            'SELECT seq, "initial_W", initial_b, "final_W", final_b FROM runs'))
    ])
    with op.batch_alter_table("runs") as batch:
        batch.alter_column("options", nullable=False)
        batch.alter_column("record_params", nullable=False)
        batch.alter_column("initial_params", nullable=False)
        for name in ("initial_W", "initial_b", "final_W", "final_b"):
            batch.drop_column(name)
        batch.create_index(batch.f("ix_runs_validation_dataset_id"), ["validation_dataset_id"],
                           unique=False)

    with op.batch_alter_table("epochs") as batch:
        batch.add_column(sa.Column("params", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("metrics", sa.JSON(), nullable=True))
    epochs = sa.table("epochs", sa.column("run_id"), sa.column("epoch"), sa.column("params"),
                      sa.column("metrics", sa.JSON()))
    _update(epochs, ["run_id", "epoch"], [
        {"k_run_id": run_id, "k_epoch": epoch, "params": _params(W, b), "metrics": {}}
        for run_id, epoch, W, b in bind.execute(
            sa.text('SELECT run_id, epoch, "W", b FROM epochs'))
    ])
    with op.batch_alter_table("epochs") as batch:
        batch.alter_column("metrics", nullable=False)
        batch.drop_column("W")
        batch.drop_column("b")


def downgrade() -> None:
    raise NotImplementedError("v2 stores model kinds v1 cannot represent; restore a backup")
