"""``?dry_run=true`` on creating a dataset, a model or a run: the real request's code path in a
transaction that is rolled back, so every check applies (limits, feature counts, classes,
quotas), answered 200 with the resource as it would be created and ``id`` null."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

DryRun = Annotated[
    bool,
    Query(description="Check the request exactly as a real one (limits, features, classes, "
                      "quotas) and answer 200 with the resource as it would be created "
                      "(defaults resolved, `id` null); store and queue nothing."),
]


@contextmanager
def transaction(sessions: sessionmaker[Session], dry_run: bool) -> Iterator[Session]:
    """A session in a transaction: committed at the end, or for a dry run rolled back."""
    if not dry_run:
        with sessions.begin() as session:
            yield session
        return
    session = sessions()
    try:
        session.begin()
        yield session
        session.flush()
    finally:
        session.rollback()
        session.close()


def preview(view: BaseModel) -> JSONResponse:
    """A dry run's answer: the resource as it would have been created, without an id."""
    content: dict[str, Any] = json.loads(view.model_dump_json())
    content["id"] = None
    return JSONResponse(content, status_code=200)


def responses(schema: Any, description: str = "Dry run: the resource as it would be created "
                                              "(`id` null); nothing stored.") -> dict[int | str,
                                                                                     Any]:
    """The OpenAPI entry of a dry run's 200 answer."""
    return {200: {"model": schema, "description": description}}
