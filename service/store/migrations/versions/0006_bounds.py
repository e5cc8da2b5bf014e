"""bounds: each run's stored bytes, whether the byte quota applies to it, and no text that
cannot be sent

Revision ID: 0006
Revises: 0005

A tenant's byte quota counts everything it stores: datasets (counted since 0003), models'
params and checkpoints (their blobs' lengths, summed when asked) and each run's own bytes,
kept in ``runs.stored_bytes`` as its history grows: its initial and final params and its
history rows (their params and a fixed size for the rest of a row). Existing runs are
counted from what they hold. ``runs.stored_quota`` says whether the quota applies to the run
(it was queued with a key); existing runs were not checked, and stay unchecked.

An import could store class names and names holding a lone surrogate, which no answer can
carry: such text is replaced by U+FFFD, so every model can be listed again.
"""

import re
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# What a history row costs besides its params (service.store.usage.ROW_BYTES).
ROW_BYTES = 128
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _fixed(text: Any) -> Any:
    """``text`` with every lone surrogate replaced (lists item by item)."""
    if isinstance(text, list):
        return [_fixed(item) for item in text]
    if isinstance(text, str):
        return LONE_SURROGATE.sub("\ufffd", text)
    return text


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("stored_bytes", sa.BigInteger(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("stored_quota", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    op.execute(
        "UPDATE runs SET stored_bytes = length(initial_params)"
        " + COALESCE(length(final_params), 0)"
        " + COALESCE((SELECT SUM(COALESCE(length(e.params), 0) + "
        f"{ROW_BYTES}) FROM epochs e WHERE e.run_id = runs.id), 0)"
    )
    bind = op.get_bind()
    models = sa.table("models", sa.column("id"), sa.column("name"),
                      sa.column("class_names", sa.JSON()))
    for row in bind.execute(sa.select(models.c.id, models.c.name, models.c.class_names)):
        fixed = {"name": _fixed(row.name), "class_names": _fixed(row.class_names)}
        if fixed != {"name": row.name, "class_names": row.class_names}:
            bind.execute(models.update().where(models.c.id == row.id).values(fixed))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("stored_quota")
        batch.drop_column("stored_bytes")
