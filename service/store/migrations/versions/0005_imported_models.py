"""imported models: where a model's file came from

Revision ID: 0005
Revises: 0004

A model imported from a file keeps the provenance that file carried (the model and run that
produced its params, the Tapeline version, and where that model itself came from), so that
exporting it again names the same run. Existing models were all made here: none has one.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("imported_from", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_column("imported_from")
