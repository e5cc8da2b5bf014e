"""Request bodies that are files: a route whose spec offers a CSV (``text/csv``) or ``.npy``
(``application/octet-stream``) body besides JSON. The file is parsed off the event loop
(:mod:`service.files.predict_bodies`) into the route's JSON body model with ``x`` as an array,
so the route's own validation applies to both; a CSV's header travels with it for the route to
check against the model's features."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, cast

import numpy as np
from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from service.api.http.large_bodies import DecodedRequest, OffLoopJsonRoute
from service.api.http.problems import ProblemError, invalid
from service.config import Settings
from service.files.predict_bodies import parse

CSV = "text/csv"
NPY = "application/octet-stream"
JSON = "application/json"
# The scope key under which a CSV body's header reaches the route.
COLUMNS = "tapeline.columns"

REQUEST_BODY = {
    "requestBody": {
        "content": {
            CSV: {"schema": {"type": "string", "format": "binary"},
                  "example": "x0,x1\n0.5,1.0\n1.5,-2.0\n"},
            NPY: {"schema": {"type": "string", "format": "binary"},
                  "example": "(the bytes np.save writes: an .npy array of shape [N, F])"},
        }
    }
}


def media_of(request: Request) -> str:
    """The body's media type, lower case, without parameters."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


class FileBodyRoute(OffLoopJsonRoute):
    """A route that also takes a CSV or ``.npy`` body when its spec says so: the file becomes
    the route's JSON body model with ``x`` as an array."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The JSON route's handler, given a parsed file body when one is sent."""
        handler = super().get_route_handler()
        model = self.body_field.field_info.annotation if self.body_field else None
        if "requestBody" not in (self.openapi_extra or {}) or not (
                isinstance(model, type) and issubclass(model, BaseModel)):
            return handler
        decoded_handler = APIRoute.get_route_handler(self)  # the body arrives decoded

        async def route(request: Request) -> Response:
            media = media_of(request)
            if media not in (CSV, NPY):
                if media and media != JSON and not media.endswith("+json"):
                    raise unsupported(media)
                return await handler(request)
            body = await read_body(request)
            settings: Settings = request.app.state.settings
            x, columns = await run_in_threadpool(parse, media, body, settings)
            scope = dict(request.scope)
            scope["headers"] = [
                (k, v) for k, v in request.scope["headers"] if k != b"content-type"
            ] + [(b"content-type", b"application/json")]
            scope[COLUMNS] = columns
            plain = Request(scope, request.receive)
            value = model.model_construct(x=x)
            # The view stands for the body's bytes (FastAPI only asks whether there are any):
            # x is a view of it, so a copy would only double the memory.
            return await decoded_handler(DecodedRequest(plain, cast(bytes, body), value))

        return route


async def read_body(request: Request) -> memoryview:
    """The body read straight into one buffer of its declared length (the body middleware has
    held that to the limit), so its chunks are copied once and never joined; a body without
    a Content-Length is read as Starlette reads it."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        return memoryview(await request.body())
    buffer = np.empty(int(declared), dtype=np.uint8).data
    filled = 0
    async for chunk in request.stream():
        end = filled + len(chunk)
        if end > len(buffer):
            raise ProblemError(400, f"the body holds more than the {declared} bytes its "
                                    f"Content-Length declares")
        buffer[filled:end] = chunk
        filled = end
    return buffer[:filled]


def check_columns(request: Request, features: int) -> None:
    """422 naming the extra or missing columns of a CSV body's header."""
    columns: list[str] | None = request.scope.get(COLUMNS)
    if columns is None or len(columns) == features:
        return
    if len(columns) > features:
        extra = columns[features:]
        raise invalid(["body", extra[0]],
                      f"extra column{'s' if len(extra) > 1 else ''} {', '.join(extra)}: the "
                      f"model has {features} feature(s), the header names {len(columns)}")
    missing = features - len(columns)
    raise invalid(["body", f"column {len(columns) + 1}"],
                  f"missing {missing} column{'s' if missing > 1 else ''}: the model has "
                  f"{features} feature(s), the header names {len(columns)} "
                  f"({', '.join(columns)})")


def unsupported(media: str) -> ProblemError:
    """415 for a body that is none of JSON, CSV and .npy."""
    return ProblemError(415, f"send JSON, CSV (text/csv) or .npy (application/octet-stream), "
                             f"not {media or 'an untyped body'}")
