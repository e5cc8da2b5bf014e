"""studies: a study's spec and state, its trials (one model and run each), its event stream

Revision ID: 0010
Revises: 0008

New tables only: existing data is untouched.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)
TAGS = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("owner", sa.String(64), nullable=False, index=True),
        sa.Column("name", sa.String(200)),
        sa.Column("description", sa.Text()),
        sa.Column("tags", TAGS, nullable=False),
        sa.Column("dataset_id", sa.String(40), nullable=False, index=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("best", sa.JSON()),
        sa.Column("epochs_trained", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.String(1000)),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.Column("finished_at", WHEN),
    )
    op.create_table(
        "study_trials",
        sa.Column("study_id", sa.String(40), sa.ForeignKey("studies.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("number", sa.Integer(), primary_key=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("model_id", sa.String(40), index=True),
        sa.Column("run_id", sa.String(40), index=True),
        sa.Column("epochs", sa.Integer(), nullable=False),
        sa.Column("rungs", sa.JSON(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )
    op.create_table(
        "study_events",
        sa.Column("study_id", sa.String(40), sa.ForeignKey("studies.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("study_events")
    op.drop_table("study_trials")
    op.drop_table("studies")
