"""Fixtures of the jobs' tests: a migrated SQLite store in a temporary folder (no server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from service.store.db import make_engine, make_sessionmaker, migrate
from tests.support.servers import sqlite_url


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The URL of a migrated, empty SQLite store of this test."""
    url = sqlite_url(tmp_path)
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    return url


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions of the test's SQLite store."""
    engine = make_engine(database_url)
    yield make_sessionmaker(engine)
    engine.dispose()
