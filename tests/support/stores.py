"""A fresh store for a fixture parametrized over ``"sqlite"`` and PostgreSQL."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.postgres import fresh_schema
from tests.support.servers import sqlite_url


def store_url(request: pytest.FixtureRequest, folder: Path, stack: ExitStack) -> str:
    """The URL of a fresh store of the fixture's param: a SQLite file in ``folder``, or else a
    PostgreSQL schema of its own, dropped when ``stack`` closes."""
    if request.param == "sqlite":
        return sqlite_url(folder)
    return stack.enter_context(fresh_schema(request.getfixturevalue("postgres_base")))
