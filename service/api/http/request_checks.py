"""Checks of a request before its route runs: what every operation needs first (the app's
settings bound for validation, no NUL in a path id, no JSON body holding text that cannot be
stored), a JSON ``Content-Type`` on a body, and an uploaded file's name."""

from __future__ import annotations

import json

from fastapi import Depends, Request, UploadFile

from service.api.http.large_bodies import DecodedRequest
from service.api.http.problems import ProblemError, invalid
from service.api.schemas.limits import bind_settings
from service.export.bounded_json import first_unstorable, may_hold_surrogates, unstorable


async def every_request(request: Request) -> None:
    """What every operation needs first, as one dependency (each costs FastAPI work on every
    request): the app's settings bound for validation, 404 for a path id holding NUL (no id
    has one, and PostgreSQL cannot even compare it), and 422 for a JSON body holding a lone
    surrogate, which no store keeps and no answer can carry (a string field without a
    pattern would otherwise take it). A body the decoder process read (a large one, or a
    file) was checked there."""
    await bind_settings(request)
    if any("\x00" in str(value) for value in request.path_params.values()):
        raise ProblemError(404, "no resource has an id containing NUL")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if (media == "application/json" or media.endswith("+json")) and not isinstance(
            request, DecodedRequest):
        body = await request.body()
        if may_hold_surrogates(body):
            try:
                found = first_unstorable(json.loads(body))
            except ValueError:
                return  # not JSON: the route's own parsing answers
            if found is not None:
                raise invalid(["body", *found[0]], found[1])


def check_file_name(file: UploadFile) -> None:
    """422 for an uploaded file whose name is not text that can be stored or sent (a
    multipart part may declare a charset that decodes to a lone surrogate)."""
    why = unstorable(file.filename or "")
    if why is not None:
        raise invalid(["body", "file"], f"its file name {why}")


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
