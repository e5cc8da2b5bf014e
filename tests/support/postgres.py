"""The PostgreSQL server of the tests (``TAPELINE_TEST_POSTGRES_URL``) and fresh schemas on
it: each user gets a private schema, created empty and dropped with everything in it."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.ci import unavailable

POSTGRES_URL = os.environ.get("TAPELINE_TEST_POSTGRES_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def libpq_url(url: str) -> str:
    """A SQLAlchemy ``postgresql+psycopg://`` URL as psycopg's own ``connect`` takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def reachable_postgres(url: str = POSTGRES_URL) -> str:
    """``url`` once a server answers there; without one the test fails in CI, else skips."""
    import psycopg

    try:
        psycopg.connect(libpq_url(url), connect_timeout=3).close()
    except psycopg.OperationalError as error:
        unavailable(f"PostgreSQL unreachable at {url}: {error}")
    return url


@contextmanager
def fresh_schema(base: str) -> Iterator[str]:
    """A URL on the server at ``base`` whose connections live in a new, empty schema of their
    own (its ``search_path``); the schema is dropped, with everything in it, on exit."""
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(libpq_url(base), autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(libpq_url(base), autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")
