"""tenants: API keys, per-tenant quotas, each dataset's stored size

Revision ID: 0003
Revises: 0002

Every dataset, model and run already carries an ``owner`` (the tenant); rows written before
this revision belong to tenant ``default``. API keys are stored as a hash of the key, never
the key itself; a tenant's quotas override the settings' defaults where set. A dataset's
``stored_bytes`` (its x and y blobs) is what the byte quota counts.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("last_used_at", TIMESTAMP, nullable=True),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
    )
    with op.batch_alter_table("api_keys") as batch:
        batch.create_index(batch.f("ix_api_keys_key_hash"), ["key_hash"], unique=True)
        batch.create_index(batch.f("ix_api_keys_tenant"), ["tenant"], unique=False)
    op.create_table(
        "quotas",
        sa.Column("tenant", sa.String(length=64), primary_key=True),
        sa.Column("max_active_runs", sa.Integer(), nullable=True),
        sa.Column("max_stored_bytes", sa.BigInteger(), nullable=True),
        sa.Column("rate_limit", sa.String(length=64), nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
    )
    for table in ("datasets", "models", "runs"):
        op.execute(sa.text(f"UPDATE {table} SET owner = 'default' WHERE owner IS NULL "
                           "OR owner = ''"))
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("stored_bytes", sa.BigInteger(), nullable=True))
    op.execute(sa.text("UPDATE datasets SET stored_bytes = length(x) + length(y)"))
    with op.batch_alter_table("datasets") as batch:
        batch.alter_column("stored_bytes", nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("stored_bytes")
    op.drop_table("quotas")
    op.drop_table("api_keys")
