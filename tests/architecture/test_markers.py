"""The suite's own check of the ``postgres`` marker (tests/conftest.py) is wrong both ways when
the marker is: a test that uses PostgreSQL without the mark, and a marked test that uses none,
are each named; a test whose mark matches its fixtures or its store param passes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import marker_problem


def item(fixtures: tuple[str, ...] = (), params: dict[str, Any] | None = None,
         marked: bool = False) -> Any:
    """A stand-in for a collected test: its fixtures, its params and its ``postgres`` mark."""
    return SimpleNamespace(
        fixturenames=list(fixtures),
        callspec=None if params is None else SimpleNamespace(params=params),
        get_closest_marker=lambda name: pytest.mark.postgres.mark
        if marked and name == "postgres" else None)


@pytest.mark.parametrize("test", [
    item(("postgres_url",), marked=True),
    item(("postgres_base", "tmp_path"), marked=True),
    item(("each_store",), {"each_store": "postgres"}, marked=True),
    item(("each_store",), {"each_store": "sqlite"}),
    item(("tmp_path",)),
])
def test_a_mark_that_matches_what_the_test_uses_passes(test: Any) -> None:
    assert marker_problem(test) is None


def test_a_test_using_postgres_without_the_mark_is_named() -> None:
    for test in (item(("postgres_url",)), item(("x",), {"store": "postgres"})):
        problem = marker_problem(test)
        assert problem is not None and "lacks @pytest.mark.postgres" in problem


def test_a_marked_test_using_no_postgres_is_named() -> None:
    for test in (item(("tmp_path",), marked=True), item((), {"store": "sqlite"}, marked=True)):
        problem = marker_problem(test)
        assert problem is not None and "uses no PostgreSQL fixture" in problem
