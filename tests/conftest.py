"""Shared fixtures: an in-process app, a real uvicorn server, and PostgreSQL schemas."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.servers import LiveServer, sqlite_url, start_server

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "tf_reference_trajectories.json"
POSTGRES_URL = os.environ.get("TAPELINE_TEST_POSTGRES_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REDIS_URL = os.environ.get("TAPELINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")


@pytest.fixture(scope="session")
def tf_cases() -> dict[str, dict]:
    """TensorFlow's reference runs of the tutorial (data included)."""
    return json.loads(FIXTURE.read_text())["cases"]


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """An in-process app with its own SQLite file and worker processes, shared by a module."""
    folder = tmp_path_factory.mktemp("app")
    settings = Settings(database_url=sqlite_url(folder), workers=2, max_body_bytes=1_000_000)
    with TestClient(create_app(settings), base_url="http://localhost",
                    raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real uvicorn server on SQLite, shared by a module."""
    folder = tmp_path_factory.mktemp("live")
    server = start_server(sqlite_url(folder), folder / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres",
                                                               marks=pytest.mark.postgres)])
def each_store(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app in-process, once on a fresh SQLite file and once on a fresh PostgreSQL schema."""
    import psycopg

    schema = None
    if request.param == "sqlite":
        url = sqlite_url(tmp_path_factory.mktemp("store"))
    else:
        base = request.getfixturevalue("postgres_base")
        schema = f"t_{secrets.token_hex(6)}"
        plain = base.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain, autocommit=True) as connection:
            connection.execute(f"CREATE SCHEMA {schema}")
        url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    with TestClient(create_app(Settings(database_url=url, workers=1)), base_url="http://localhost",
                    raise_server_exceptions=False) as client:
        yield client
    if schema:
        with psycopg.connect(plain, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="session")
def postgres_base() -> str:
    """The PostgreSQL server's URL; in CI its absence fails the run, elsewhere it skips."""
    import psycopg

    plain = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        psycopg.connect(plain, connect_timeout=3).close()
    except psycopg.OperationalError as error:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI and unreachable at {POSTGRES_URL}: {error}")
        pytest.skip(f"PostgreSQL unreachable at {POSTGRES_URL}: {error}")
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_base: str) -> Iterator[str]:
    """A URL whose connections live in a fresh, private schema, dropped afterwards."""
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    plain = postgres_base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in postgres_base else "?"
    yield f"{postgres_base}{separator}options=-csearch_path%3D{schema}"
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis server's URL; in CI its absence fails the run, elsewhere it skips."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        if IN_CI:
            pytest.fail(f"Redis is required in CI and unreachable at {REDIS_URL}: {error}")
        pytest.skip(f"Redis unreachable at {REDIS_URL}: {error}")
    return REDIS_URL
