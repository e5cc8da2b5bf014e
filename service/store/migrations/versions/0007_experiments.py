"""experiments: names, descriptions and tags; run durations; the run search's indexes

Revision ID: 0007
Revises: 0006

Datasets, models and runs get a description and tags (a flat map of strings; JSONB on
PostgreSQL, with a GIN index), and runs a name (datasets and models had one). Runs keep how
long they took (``duration_ms``, from ``started_at`` to ``finished_at``), set when a run ends:
existing finished runs get theirs computed here.

The run search's indexes, one per field a search commonly sorts or ranges on, each
(owner, field, id): a sorted first page walks one in order. A JSON field's index is on the
very expression the search writes for it (``json_extract(...)`` on SQLite, ``->>`` cast to
double precision on PostgreSQL); strings sort byte by byte (``COLLATE "C"``) on PostgreSQL.
They hold only runs that have the field (a search sorted by it asks for those first, and a
comparison implies it), so "runs without it" is never mistaken for a short list to gather.
On PostgreSQL, statistics on the expressions of the other fields a filter names (a model's
config, the other options) tell the planner how many runs match.
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ANNOTATED = ("datasets", "models", "runs")
# Run columns a search sorts or ranges on (the first two are never null).
COLUMNS = ("created_at", "epochs", "finished_at", "duration_ms", "name", "final_loss",
           "batch_size")
# Fields inside a run's JSON columns, likewise: (column, key).
JSON_FIELDS = (("optimizer", "learning_rate"), *(
    ("final_metrics", metric) for metric in ("val_loss", "accuracy", "val_accuracy", "mse",
                                             "rmse", "mae", "r2", "log_loss")))


def _json(dialect: str, column: str, keys: tuple[str, ...], cast: str | None = None) -> str:
    """The search's expression of a field in a JSON column, as it writes it."""
    if dialect == "sqlite":
        return "json_extract({}, '$.{}')".format(column, ".".join(f'"{k}"' for k in keys))
    path = "".join(f" -> '{key}'" for key in keys[:-1])
    arrow = "->" if cast == "JSONB" else "->>"
    value = f"({column}{path} {arrow} '{keys[-1]}')"
    return f"CAST({value} AS {cast})" if cast else value


def _search_indexes(dialect: str) -> dict[str, str]:
    """Each search index's name and its definition after ``ON runs``."""
    found = {}
    for i, column in enumerate(COLUMNS):
        field = f'{column} COLLATE "C"' if column == "name" and dialect == "postgresql" \
            else column
        partial = "" if i < 2 else f" WHERE {column} IS NOT NULL"
        found[f"ix_runs_search_{column}"] = f"(owner, {field}, id){partial}"
    for column, key in JSON_FIELDS:
        value = _json(dialect, column, (key,), "DOUBLE PRECISION")
        found[f"ix_runs_search_{key}"] = f"(owner, {value}, id) WHERE {value} IS NOT NULL"
    return found


# Statistics on the expressions of fields a filter names (PostgreSQL): of those the partial
# indexes are on (ANALYZE keeps none for a partial index's expressions), and of other
# options, metrics and a model's config.
STATISTICS: dict[str, list[tuple[str, tuple[str, ...], str | None]]] = {
    "runs": [*((column, (key,), "DOUBLE PRECISION") for column, key in JSON_FIELDS),
             ("optimizer", ("kind",), None), ("optimizer", ("momentum",), "DOUBLE PRECISION"),
             ("options", ("loss",), None),
             ("options", ("regularization", "l2"), "DOUBLE PRECISION"),
             ("options", ("validation", "fraction"), "DOUBLE PRECISION"),
             ("options", ("early_stopping", "monitor"), None),
             ("final_metrics", ("val_rmse",), "DOUBLE PRECISION"),
             ("final_metrics", ("val_mse",), "DOUBLE PRECISION"),
             ("final_metrics", ("val_mae",), "DOUBLE PRECISION"),
             ("final_metrics", ("val_r2",), "DOUBLE PRECISION"),
             ("final_metrics", ("val_log_loss",), "DOUBLE PRECISION")],
    "models": [("config", ("hidden",), "JSONB"), ("config", ("activation",), None),
               ("config", ("task",), None), ("config", ("features",), "DOUBLE PRECISION"),
               ("config", ("classes",), "DOUBLE PRECISION")],
}


def _statistics() -> dict[str, str]:
    """Each statistics object's name and its definition (PostgreSQL)."""
    return {f"st_{table}_{'_'.join(keys)}": f"({_json('postgresql', column, keys, cast)}) "
                                            f"FROM {table}"
            for table, fields in STATISTICS.items() for column, keys, cast in fields}


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
    dialect = op.get_bind().dialect.name
    for name, definition in _search_indexes(dialect).items():
        op.execute(f"CREATE INDEX {name} ON runs {definition}")
    if dialect == "postgresql":
        for table in ANNOTATED:
            op.execute(f"CREATE INDEX ix_{table}_tags ON {table} USING gin (tags)")
        for name, definition in _statistics().items():
            op.execute(f"CREATE STATISTICS {name} ON {definition}")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name in _search_indexes(dialect):
        op.execute(f"DROP INDEX {name}")
    if dialect == "postgresql":
        for table in ANNOTATED:
            op.execute(f"DROP INDEX ix_{table}_tags")
        for name in _statistics():
            op.execute(f"DROP STATISTICS {name}")
    for table in ANNOTATED:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("tags")
            batch.drop_column("description")
            if table == "runs":
                batch.drop_column("duration_ms")
                batch.drop_column("name")
