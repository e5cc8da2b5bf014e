"""Checks of a request before its route runs: what every operation needs first (the app's
settings bound for validation, no NUL in a path id, no JSON body holding text that cannot be
stored), a JSON ``Content-Type`` on a body, and an uploaded file's name."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Depends, Request, UploadFile

from service.api.http.problems import ProblemError, invalid
from service.api.schemas.limits import bind_settings
from service.export.bounded_json import unstorable

# A JSON escape of a UTF-16 surrogate: the one way JSON text can hold a lone one (a raw one
# is not UTF-8, and decoding refuses it).
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
# The scope key a file body's route sets (service.api.http.file_bodies.COLUMNS): its body is
# a CSV or .npy file, not JSON.
FILE_BODY = "tapeline.columns"


async def every_request(request: Request) -> None:
    """What every operation needs first, as one dependency (each costs FastAPI work on every
    request): the app's settings bound for validation, 404 for a path id holding NUL (no id
    has one, and PostgreSQL cannot even compare it), and 422 for a JSON body holding a lone
    surrogate, which no store keeps and no answer can carry (a string field without a
    pattern would otherwise take it)."""
    await bind_settings(request)
    if any("\x00" in str(value) for value in request.path_params.values()):
        raise ProblemError(404, "no resource has an id containing NUL")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if (media == "application/json" or media.endswith("+json")) and FILE_BODY not in request.scope:
        body = await request.body()
        if b"\\u" in body and SURROGATE_ESCAPE.search(body):
            _check_text(body)


def _check_text(body: bytes) -> None:
    """422 at the first string (or key) of a JSON body that holds a lone surrogate."""
    try:
        stack: list[tuple[Any, list[str | int]]] = [(json.loads(body), ["body"])]
    except ValueError:
        return  # not JSON: the route's own parsing answers
    while stack:
        value, loc = stack.pop()
        if isinstance(value, str):
            why = unstorable(value)
            if why is not None:
                raise invalid(loc, why)
        elif isinstance(value, dict):
            for key, member in value.items():
                why = unstorable(key)
                if why is not None:
                    raise invalid(loc, f"has a key that {why}")
                stack.append((member, [*loc, key]))
        elif isinstance(value, list):
            stack.extend((member, [*loc, index]) for index, member in enumerate(value))


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
