"""checkpoint measure: a checkpoint taken at a pause keeps the model's objective there

Revision ID: 0011
Revises: 0010

``run_checkpoints`` gains ``loss`` and ``metrics``: what the pausing attempt measured of the
model at that checkpoint (the numbers a run's ``final`` would say had it ended there), so a
study's rung reads them instead of rebuilding the loop from the checkpoint. Null for every
existing checkpoint (and for the periodic ones written from here on): a reader then measures
the checkpoint itself, as before this revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run_checkpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("loss", sa.Float(precision=53), nullable=True))
        batch_op.add_column(sa.Column("metrics", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_checkpoints", schema=None) as batch_op:
        batch_op.drop_column("metrics")
        batch_op.drop_column("loss")
