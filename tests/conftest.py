"""Shared fixtures: an in-process app, a real uvicorn server, PostgreSQL schemas and Redis;
and, for every collected test, the marker of its harness folder and a check that the
``postgres`` marker is on exactly the tests that need PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.support.ci import unavailable
from tests.support.postgres import fresh_schema, reachable_postgres
from tests.support.servers import LiveServer, sqlite_url, start_server
from tests.support.stores import store_url

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "tf_reference_trajectories.json"
REDIS_URL = os.environ.get("TAPELINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")

# Every test in one of these folders carries the folder's marker (`-m "not live"` and so on).
HARNESS_FOLDERS = ("live", "contract", "container", "ui", "fuzz")
# A test needs PostgreSQL when it uses one of these fixtures, or a fixture parametrized over
# the stores whose PostgreSQL param is named "postgres" (each_store[postgres], ...).
POSTGRES_FIXTURES = frozenset({"postgres_base", "postgres_url"})
POSTGRES_PARAM = "postgres"
MARKER_PROBLEM = pytest.StashKey[str]()


def needs_postgres(item: pytest.Item) -> bool:
    """Whether the test uses the PostgreSQL server, judged from its fixtures and params."""
    if POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and any(
        isinstance(value, str) and value == POSTGRES_PARAM for value in callspec.params.values())


def marker_problem(item: pytest.Item) -> str | None:
    """What is wrong with the test's ``postgres`` marker, if anything."""
    marked = item.get_closest_marker("postgres") is not None
    if needs_postgres(item) and not marked:
        return ("this test uses PostgreSQL but lacks @pytest.mark.postgres, so "
                "`-m 'not postgres'` would select it")
    if marked and not needs_postgres(item):
        return ("this test carries @pytest.mark.postgres but uses no PostgreSQL fixture, so "
                "`-m 'not postgres'` would leave it out")
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test of a harness folder with the folder's name (before `-m` selects), and
    note each test whose ``postgres`` marker is wrong, to fail it when it runs."""
    tests = Path(__file__).resolve().parent
    for item in items:
        parts = item.path.resolve().relative_to(tests).parts
        if len(parts) > 1 and parts[0] in HARNESS_FOLDERS:
            item.add_marker(parts[0])
        problem = marker_problem(item)
        if problem:
            item.stash[MARKER_PROBLEM] = problem


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail a test whose ``postgres`` marker is wrong before any of its fixtures run."""
    problem = item.stash.get(MARKER_PROBLEM, None)
    if problem:
        pytest.fail(problem, pytrace=False)


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


@pytest.fixture(scope="module", params=["sqlite", pytest.param(POSTGRES_PARAM,
                                                               marks=pytest.mark.postgres)])
def each_store(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app in-process, once on a fresh SQLite file and once on a fresh PostgreSQL schema."""
    with ExitStack() as stack:
        url = store_url(request, tmp_path_factory.mktemp("store"), stack)
        yield stack.enter_context(TestClient(create_app(Settings(database_url=url, workers=1)),
                                             base_url="http://localhost",
                                             raise_server_exceptions=False))


@pytest.fixture
def ours() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt (Python's default handler), as while the terminal
    client follows a run on a terminal; the handler before is restored after."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="session")
def postgres_base() -> str:
    """The PostgreSQL server's URL; in CI its absence fails the run, elsewhere it skips."""
    return reachable_postgres()


@pytest.fixture
def postgres_url(postgres_base: str) -> Iterator[str]:
    """A URL whose connections live in a fresh, private schema, dropped afterwards."""
    with fresh_schema(postgres_base) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis server's URL; in CI its absence fails the run, elsewhere it skips."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        unavailable(f"Redis unreachable at {REDIS_URL}: {error}")
    return REDIS_URL
