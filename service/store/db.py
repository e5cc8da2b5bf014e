"""Database engine, sessions, and opening the store at start-up (checks and migrations)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")
# The PostgreSQL advisory lock held while the schema changes: replicas and workers starting
# together migrate one at a time (the others then find nothing to do).
MIGRATION_LOCK = 0x7461_7065_6C01


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_pre_ping=False
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
    )


class StoreUnavailable(RuntimeError):
    """The store cannot be used; the message is one line saying why (never a password)."""


WRITE_CHECK = "UPDATE alembic_version SET version_num = version_num"
# A PostgreSQL server that does not answer fails start-up after this long, not never.
CONNECT_TIMEOUT_SECONDS = 10


def _where(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return f"the SQLite database {url.database}"
    return f"PostgreSQL at {url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"


def open_store(url: str, *, create_folder: bool = False) -> Engine:
    """An engine for ``url``, checked to answer and to take writes, its schema migrated to the
    newest revision; else :class:`StoreUnavailable`. A SQLite file's folder must exist, unless
    ``create_folder`` (the default store under ``./var/``)."""
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise StoreUnavailable(
            "not a database URL (expected sqlite:///path or postgresql+psycopg://user@host/db)"
        ) from error
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise StoreUnavailable(
            f"unsupported database {parsed.drivername!r} "
            "(expected sqlite:///path or postgresql+psycopg://user@host/db)"
        )
    if backend == "sqlite" and parsed.database and parsed.database != ":memory:":
        folder = Path(parsed.database).parent
        if create_folder:
            folder.mkdir(parents=True, exist_ok=True)
        elif not parsed.database.startswith("file:") and not folder.is_dir():
            raise StoreUnavailable(f"the folder {folder} of the SQLite database does not exist")
    try:
        engine = make_engine(url)
    except (ArgumentError, NoSuchModuleError, ImportError) as error:
        raise StoreUnavailable(f"cannot use {parsed.drivername!r}: {error}") from error
    try:
        migrate(engine)
        with engine.connect() as connection:  # a write that changes nothing, undone: a
            connection.execute(text(WRITE_CHECK))  # read-only file or replica fails here
            connection.rollback()
    except DBAPIError as error:
        engine.dispose()
        lines = str(error.orig).strip().splitlines() or ["the database refused"]
        raise StoreUnavailable(f"cannot use {_where(parsed)}: {lines[0]}") from error
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (idempotent; run at start-up).

    On SQLite, foreign keys are off while migrations run: a batch migration rebuilds a table
    by copying it and dropping the original, and with foreign keys on, that drop would
    cascade to every row referring to it.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        with connection.begin():
            if not sqlite:
                connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()


def ping(engine: Engine) -> None:
    """Raise unless the database answers a trivial query."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
