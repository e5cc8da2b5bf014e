"""scale out: fenced attempts, worker heartbeats and run checkpoints

Revision ID: 0004
Revises: 0003

Each run counts its attempts (an attempt is one worker's claim of it; every write of the run,
its epochs and its checkpoint names the attempt, so a worker presumed dead that comes back
writes nothing), names the worker holding it and when it last heard from it, and may keep a
checkpoint: the loop's state at an epoch boundary, from which another worker resumes it.
Hand-backs (a draining worker returning a run) are counted apart: they are attempts for
fencing, not lost workers.
Existing runs that ever started count as one attempt; none has a checkpoint.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("worker", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("handbacks", sa.Integer(), nullable=False,
                                   server_default="0"))
    runs = sa.table("runs", sa.column("attempt"), sa.column("started_at"))
    op.get_bind().execute(runs.update().where(runs.c.started_at.is_not(None)).values(attempt=1))
    op.create_table(
        "run_checkpoints",
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id"),
    )


def downgrade() -> None:
    op.drop_table("run_checkpoints")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("handbacks")
        batch.drop_column("heartbeat_at")
        batch.drop_column("worker")
        batch.drop_column("attempt")
