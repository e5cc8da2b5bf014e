"""Large JSON request bodies are decoded and validated in another process.

FastAPI decodes and validates a body on the event loop, and a worker thread would not help:
``json.loads`` of a 40 MiB dataset holds the interpreter lock for a second or more, and every
request waits for it. Routes of :class:`OffLoopJsonRoute` send a body over :data:`THRESHOLD`
to a :class:`BodyDecoder` process, which decodes and validates it with the route's own model
and sends back the model with its lists of numbers as NumPy arrays (the same values, a single
copy to move); FastAPI accepts that instance as it is. Answers (422 with the same ``errors``,
400 for undecodable bytes) are FastAPI's own.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
from collections.abc import Callable, Coroutine
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from service.api.schemas.limits import bound
from service.config import Settings
from service.export.bounded_json import first_unstorable, may_hold_surrogates

# Smaller bodies decode in well under a millisecond: not worth the trip.
THRESHOLD = 64 * 1024


def _as_arrays(model: BaseModel) -> BaseModel:
    """``model`` with each field that is a list of numbers (or of equal rows of numbers) as a
    float64 array; other fields, and ragged rows, as they are."""
    arrays: dict[str, np.ndarray] = {}
    for name, value in model:
        if isinstance(value, list) and value:
            try:
                arrays[name] = np.asarray(value, dtype=np.float64)
            except (ValueError, TypeError):
                continue
    return model.model_copy(update=arrays)


def decode(model: type[BaseModel], body: bytes, settings: Settings) -> tuple[str, Any]:
    """In the decoder process: the body as ``model`` (``"ok"``), or why not (``"invalid"``:
    FastAPI's error list, a lone surrogate's included; ``"json"``: where decoding failed;
    ``"bytes"``: not text). Limits are those of ``settings``, the app's."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError as error:
        return "json", (error.pos, error.msg)
    except ValueError:  # not UTF-8 (or -16, -32)
        return "bytes", None
    found = first_unstorable(data) if may_hold_surrogates(body) else None
    if found is not None:  # text no store keeps and no answer can carry
        return "invalid", [{"type": "string_unicode", "loc": ("body", *found[0]),
                            "msg": found[1]}]
    try:
        with bound(settings):
            return "ok", _as_arrays(model.model_validate(data))
    except ValidationError as error:
        return "invalid", [
            {"type": e["type"], "loc": ("body", *e["loc"]), "msg": e["msg"]}
            for e in error.errors(include_url=False)
        ]


class BodyDecoder:
    """A process that decodes large bodies (started on first use, replaced if it dies)."""

    def __init__(self, processes: int = 1) -> None:
        self._processes = processes
        self._pool: ProcessPoolExecutor | None = None

    async def decode(self, model: type[BaseModel], body: bytes,
                     settings: Settings) -> BaseModel:
        """The body validated as ``model`` under the limits of ``settings``;
        :class:`RequestValidationError` or a 400 when it is not one, exactly as FastAPI
        answers."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self._processes, mp_context=mp.get_context("spawn"))
        try:
            kind, result = await asyncio.get_running_loop().run_in_executor(
                self._pool, decode, model, body, settings
            )
        except BrokenProcessPool:
            self._pool = None  # the next body gets a fresh process
            raise
        if kind == "json":
            position, message = result
            raise RequestValidationError(
                [{"type": "json_invalid", "loc": ("body", position), "msg": "JSON decode error",
                  "input": {}, "ctx": {"error": message}}]
            )
        if kind == "bytes":
            raise HTTPException(400, "There was an error parsing the body")
        if kind == "invalid":
            raise RequestValidationError(result)
        model_value: BaseModel = result
        return model_value

    def close(self) -> None:
        """Stop the decoder process."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


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


class OffLoopJsonRoute(APIRoute):
    """A route whose large JSON bodies are decoded and validated in the decoder process."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, given the body already validated when it is large."""
        handler = super().get_route_handler()
        model = self.body_field.field_info.annotation if self.body_field else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return handler

        async def route(request: Request) -> Response:
            if _is_large_json(request):
                body = await request.body()
                if body:
                    decoder: BodyDecoder = request.app.state.runtime.decoder
                    value = await decoder.decode(model, body, request.app.state.settings)
                    request = DecodedRequest(request, body, value)
            return await handler(request)

        return route
