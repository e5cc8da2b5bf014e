"""experiments: names, descriptions and tags; run durations

Revision ID: 0007
Revises: 0005

Datasets, models and runs get a description and tags (a flat map of strings; JSONB on
PostgreSQL), and runs a name (datasets and models had one). Runs keep how long they took
(``duration_ms``, from ``started_at`` to ``finished_at``), set when a run ends: existing
finished runs get theirs computed here.
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None

ANNOTATED = ("datasets", "models", "runs")


def _tags_column() -> sa.Column:
    if op.get_bind().dialect.name == "postgresql":
        return sa.Column("tags", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb"))
    return sa.Column("tags", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))


def _utc(stamp: datetime | str) -> datetime:
    """A stored time as an aware UTC datetime (SQLite hands back naive strings)."""
    if isinstance(stamp, str):
        stamp = datetime.fromisoformat(stamp)
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp


def _durations() -> None:
    """Every finished run's duration, from its start to its end, in milliseconds."""
    bind = op.get_bind()
    runs = sa.table("runs", sa.column("id"), sa.column("started_at"),
                    sa.column("finished_at"), sa.column("duration_ms"))
    ended = bind.execute(sa.select(runs.c.id, runs.c.started_at, runs.c.finished_at).where(
        runs.c.started_at.is_not(None), runs.c.finished_at.is_not(None))).all()
    for run_id, started, finished in ended:
        milliseconds = (_utc(finished) - _utc(started)).total_seconds() * 1000.0
        bind.execute(runs.update().where(runs.c.id == run_id)
                     .values(duration_ms=max(milliseconds, 0.0)))


def upgrade() -> None:
    for table in ANNOTATED:
        with op.batch_alter_table(table) as batch:
            if table == "runs":
                batch.add_column(sa.Column("name", sa.String(length=200), nullable=True))
                batch.add_column(sa.Column("duration_ms", sa.Float(precision=53),
                                           nullable=True))
            batch.add_column(sa.Column("description", sa.Text(), nullable=True))
            batch.add_column(_tags_column())
    _durations()


def downgrade() -> None:
    for table in ANNOTATED:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("tags")
            batch.drop_column("description")
            if table == "runs":
                batch.drop_column("duration_ms")
                batch.drop_column("name")
