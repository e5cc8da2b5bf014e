"""webhooks: endpoints, the outbox of events, deliveries, attempts and their counts

Revision ID: 0008
Revises: 0007

New tables only: existing data is untouched. An endpoint's secrets are stored encrypted;
an event keeps the exact body its deliveries send; a delivery is one event to one endpoint,
with the attempts made of it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)
# What an attempt can end in (service.store.deliveries.OUTCOMES when this was written).
OUTCOMES = ("succeeded", "failed", "error", "refused", "gone")


def upgrade() -> None:
    op.create_table(
        "webhooks",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("owner", sa.String(64), nullable=False, index=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("description", sa.String(500)),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(16)),
        sa.Column("secret", sa.String(400), nullable=False),
        sa.Column("previous_secret", sa.String(400)),
        sa.Column("previous_secret_until", WHEN),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )
    op.create_table(
        "webhook_events",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("owner", sa.String(64), nullable=False, index=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False, index=True),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("webhook_id", sa.String(40),
                  sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("event_id", sa.String(40),
                  sa.ForeignKey("webhook_events.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_attempt_at", WHEN),
        sa.Column("last_attempt_at", WHEN),
        sa.Column("next_attempt_at", WHEN),
        sa.Column("last_status_code", sa.Integer()),
        sa.Column("created_at", WHEN, nullable=False, index=True),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries",
                    ["status", "next_attempt_at"])
    op.create_index("ix_webhook_deliveries_chain", "webhook_deliveries",
                    ["webhook_id", "resource", "status", "seq"])
    op.create_index("ix_webhook_deliveries_log", "webhook_deliveries", ["webhook_id", "seq"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", SEQ, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", sa.String(40),
                  sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("status_code", sa.Integer()),
        sa.Column("latency_ms", sa.Float(precision=53), nullable=False),
        sa.Column("error", sa.String(500)),
        sa.Column("response", sa.Text()),
        sa.Column("outcome", sa.String(16), nullable=False),
    )
    counters = op.create_table(
        "webhook_counters",
        sa.Column("outcome", sa.String(16), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(counters, [{"outcome": outcome, "count": 0} for outcome in OUTCOMES])


def downgrade() -> None:
    for table in ("webhook_counters", "webhook_attempts", "webhook_deliveries",
                  "webhook_events", "webhooks"):
        op.drop_table(table)
