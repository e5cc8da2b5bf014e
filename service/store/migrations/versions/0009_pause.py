"""pause: runs may be paused and resumed

Revision ID: 0009
Revises: 0008

Runs gain ``pause_at`` (null for every existing run: none asked to pause), and the index that
allows one active run per model also counts paused runs (a paused run keeps its model). No
run was paused before this revision, so the rebuilt index holds the same rows.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

INDEX = "ux_runs_one_active_per_model"
ACTIVE_SQL = "status IN ('queued', 'running', 'cancelling')"
OPEN_SQL = "status IN ('queued', 'running', 'cancelling', 'paused')"


def _one_per_model(batch_op: object, where: str) -> None:
    batch_op.create_index(  # type: ignore[attr-defined]
        INDEX, ["model_id"], unique=True, sqlite_where=sa.text(where),
        postgresql_where=sa.text(where))


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pause_at", sa.Integer(), nullable=True))
        batch_op.drop_index(INDEX)
        _one_per_model(batch_op, OPEN_SQL)


def downgrade() -> None:
    # A paused run has no status before this revision: it goes back to the queue.
    op.execute("UPDATE runs SET status = 'queued' WHERE status = 'paused'")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(INDEX)
        _one_per_model(batch_op, ACTIVE_SQL)
        batch_op.drop_column("pause_at")
