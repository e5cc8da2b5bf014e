"""Checks of a request before its route runs: what every operation needs first (the app's
settings bound for validation, no NUL in a path id), and a JSON ``Content-Type`` on a body."""

from __future__ import annotations

from fastapi import Depends, Request

from service.api.http.problems import ProblemError
from service.api.schemas.limits import bind_settings


async def every_request(request: Request) -> None:
    """What every operation needs first, as one dependency (each costs FastAPI work on every
    request): the app's settings bound for validation, and 404 for a path id holding NUL (no
    id has one, and PostgreSQL cannot even compare it)."""
    await bind_settings(request)
    if any("\x00" in str(value) for value in request.path_params.values()):
        raise ProblemError(404, "no resource has an id containing NUL")


async def require_json(request: Request) -> None:
    """415 unless a request that carries a body says it is JSON."""
    content_type = request.headers.get("content-type", "")
    has_body = (
        request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    )
    media = content_type.split(";")[0].strip().lower()
    if (has_body or content_type) and not (media == "application/json" or media.endswith("+json")):
        raise ProblemError(
            415, f"send JSON (Content-Type: application/json), not {media or 'an untyped body'}"
        )


JsonBody = Depends(require_json)
