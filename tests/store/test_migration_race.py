"""Migrations that start at once (an upgrade: `tapeline migrate` beside replicas migrating at
their start-up) are serialised by PostgreSQL's advisory lock: every one succeeds, the schema
is made once and ends at the newest revision."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from service.store.db import MIGRATIONS
from tests.support.servers import ROOT

pytestmark = pytest.mark.postgres

RACERS = 4


def test_migrations_racing_on_an_empty_database_all_succeed(postgres_url: str) -> None:
    environment = {**os.environ, "TAPELINE_DATABASE_URL": postgres_url,
                   "PYTHONPATH": str(ROOT)}
    racers = [subprocess.Popen([sys.executable, "-m", "service.cli", "migrate"], cwd=ROOT,
                               env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT) for _ in range(RACERS)]
    outputs = [racer.communicate(timeout=240)[0].decode() for racer in racers]
    assert [racer.returncode for racer in racers] == [0] * RACERS, "\n".join(outputs)
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        assert versions == [(head,)]
        assert {"datasets", "models", "runs", "epochs"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
