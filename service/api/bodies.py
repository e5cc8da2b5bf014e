"""Large JSON request bodies are decoded and validated in a worker thread.

FastAPI decodes and validates a body on the event loop; a 40 MiB dataset takes seconds there,
and every other request waits. Routes of :class:`OffLoopJsonRoute` do that work in a thread
for bodies over :data:`THRESHOLD` and hand FastAPI the validated value, which it accepts as it
is; answers (422 with the same ``errors``, 400 for undecodable bytes) stay exactly FastAPI's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

# Smaller bodies decode in well under a millisecond: not worth a trip to a thread.
THRESHOLD = 64 * 1024


class DecodedRequest(Request):
    """A request whose JSON body has already been decoded and validated."""

    def __init__(self, request: Request, body: bytes, value: Any) -> None:
        super().__init__(request.scope, request.receive)
        self._raw, self._value = body, value

    async def body(self) -> bytes:
        """The body's bytes, read before."""
        return self._raw

    async def json(self) -> Any:
        """The validated body."""
        return self._value


def _is_large_json(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (media == "application/json" or media.endswith("+json")):
        return False
    length = request.headers.get("content-length")
    return length is None or (length.isdigit() and int(length) > THRESHOLD)


def decode(field: Any, body: bytes) -> Any:
    """The body decoded and validated by FastAPI's own field, failing as FastAPI would."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError as error:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", error.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": error.msg},
                }
            ]
        ) from error
    except ValueError as error:  # not UTF-8 (or -16, -32)
        raise HTTPException(400, "There was an error parsing the body") from error
    value, errors = field.validate(data, {}, loc=("body",))
    if errors:
        raise RequestValidationError(errors)
    return value


class OffLoopJsonRoute(APIRoute):
    """A route that decodes and validates large JSON bodies off the event loop."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, given the body already validated when it is large."""
        handler = super().get_route_handler()
        field = self.body_field
        if field is None:
            return handler

        async def route(request: Request) -> Response:
            if _is_large_json(request):
                body = await request.body()
                if body:
                    value = await run_in_threadpool(decode, field, body)
                    request = DecodedRequest(request, body, value)
            return await handler(request)

        return route
