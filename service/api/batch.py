"""Batch predictions on files: ``POST /v1/models/{id}/predict`` with a CSV (a header row, the
model's features in order) or an ``.npy`` array as its body, answered as JSON, CSV or ``.npy``
per ``Accept``, large answers streamed.

A file body is parsed off the event loop into the same ``PredictRequest`` a JSON body becomes
(``x`` as an array), so the route's own validation applies to both; the CSV's header travels
with it for the route to check against the model's features.
"""

from __future__ import annotations

import io
import math
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, cast

import numpy as np
from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from service.api.bodies import DecodedRequest, OffLoopJsonRoute
from service.api.negotiation import choose
from service.api.problems import ProblemError, invalid
from service.api.schemas import PredictRequest
from service.api.uploads import (
    MAX_NPY_HEADER,
    Limits,
    _header,
    _lines,
    exact_block,
    fast_block,
    read_npy_header,
)
from service.config import Settings

# A body as read: its bytes, or a view of the buffer they were read into.
Buffer = bytes | memoryview

CSV = "text/csv"
NPY = "application/octet-stream"
JSON = "application/json"
ANSWERS = (JSON, CSV, NPY)
# The scope key under which a CSV body's header reaches the route.
COLUMNS = "tapeline.columns"
# Rows of a CSV answer written per streamed chunk.
CHUNK_ROWS = 20_000
# Bytes of an .npy answer per message sent.
SEND_BYTES = 1 << 22
# An .npy header is read from at most this many bytes: the magic, version, length, header.
MAX_HEADER_READ = 12 + MAX_NPY_HEADER

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
ANSWER_CONTENT = {
    CSV: {"schema": {"type": "string"}},
    NPY: {"schema": {"type": "string", "format": "binary"}},
}


def media_of(request: Request) -> str:
    """The body's media type, lower case, without parameters."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


# ------------------------------------------------------------------ reading


def read_csv(body: Buffer, limits: Limits) -> tuple[list[str], np.ndarray]:
    """The header and the rows of numbers of a CSV body."""
    try:
        return _read_csv(body, limits)
    except ProblemError as error:  # the upload reader's helpers name the "file"
        if error.errors and error.errors[0]["loc"][:1] == ["file"]:
            loc = ["body", *error.errors[0]["loc"][1:]]
            raise invalid(loc, error.errors[0]["msg"]) from error
        raise


def _read_csv(body: Buffer, limits: Limits) -> tuple[list[str], np.ndarray]:
    text = io.TextIOWrapper(io.BytesIO(body), encoding="utf-8-sig", newline="")
    header, first_line = _header(text)
    limits.check(["body"], 1, len(header))
    blocks: list[np.ndarray] = []
    count = 0
    for line, block in _lines(text, first_line):
        fast = fast_block(block, len(header))
        rows = (fast if fast is not None else exact_block(block, line, header))[0]
        count += len(rows)
        limits.check(["body"], count, len(header))
        blocks.append(rows)
    if count == 0:
        raise invalid(["body"], "CSV needs a header row and at least one row of inputs")
    return header, np.concatenate(blocks)


def read_npy(body: Buffer, limits: Limits) -> np.ndarray:
    """The array of an ``.npy`` body as (rows, features) in the dtype it was sent in: a view of
    the body's bytes, no copy (no pickles, sizes checked against its header first, every value
    checked finite). The forward pass converts it to float64 block by block."""
    stream = io.BytesIO(memoryview(body)[:MAX_HEADER_READ])
    header = read_npy_header(stream, ["body"])
    if len(header.shape) not in (1, 2) or 0 in header.shape:
        raise invalid(["body"], f".npy must be a non-empty 1-D or 2-D array, got shape "
                                f"{list(header.shape)}")
    examples = header.shape[0]
    features = header.shape[1] if len(header.shape) == 2 else 1
    limits.check(["body"], examples, features)
    offset = stream.tell()
    if len(body) - offset != header.nbytes:
        raise invalid(["body"], f"its header describes {header.nbytes} bytes of data but it "
                                f"holds {len(body) - offset}")
    flat = np.frombuffer(body, dtype=header.dtype, count=math.prod(header.shape), offset=offset)
    if header.fortran_order:
        array = flat.reshape(header.shape[::-1]).T
    else:
        array = flat.reshape(header.shape)
    rows = array.reshape(examples, features)
    # Judged on the array as sent (float32 is half the bytes of float64; widening keeps it).
    if rows.dtype.kind == "f" and not np.isfinite(rows).all():
        row = int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
        raise invalid(["body", row], "values must be finite")
    return rows


def parse(media: str, body: Buffer, settings: Settings) -> tuple[np.ndarray, list[str] | None]:
    """x from a CSV or .npy body, and the CSV's header."""
    limits = Limits.of(settings)
    if media == CSV:
        header, x = read_csv(body, limits)
        return x, header
    return read_npy(body, limits), None


class FileBodyRoute(OffLoopJsonRoute):
    """A route that also takes a CSV or ``.npy`` body when its spec says so: the file becomes
    the route's JSON body model with ``x`` as an array."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The JSON route's handler, given a parsed file body when one is sent."""
        handler = super().get_route_handler()
        if "requestBody" not in (self.openapi_extra or {}):
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
            value = PredictRequest.model_construct(x=x)  # type: ignore[arg-type]
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


# ------------------------------------------------------------------ answering


def accepted(request: Request) -> str:
    """The answer's media type: the ``Accept`` header's choice (JSON when it names none)."""
    return choose(request.headers.get("accept"), ANSWERS) or JSON


def _quoted(cell: str) -> str:
    if any(ch in cell for ch in ',"\r\n'):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def _csv_chunks(values: np.ndarray, classes: np.ndarray | None,
                names: list[str] | None) -> Iterator[bytes]:
    if classes is None:
        yield b"y\n"
    else:
        probability_names = ",".join(f"p_{k}" for k in range(values.shape[1]))
        yield f"y,{probability_names}{',label' if names else ''}\n".encode()
    for start in range(0, len(values), CHUNK_ROWS):
        block = values[start : start + CHUNK_ROWS]
        text = io.StringIO()
        np.savetxt(text, block.reshape(len(block), -1), fmt="%.17g", delimiter=",")
        if classes is None:
            yield text.getvalue().encode()
            continue
        found = classes[start : start + CHUNK_ROWS].tolist()
        lines = text.getvalue().splitlines()
        if names:
            quoted = [_quoted(name) for name in names]
            rows = [f"{c},{line},{quoted[c] if c < len(quoted) else c}\n"
                    for c, line in zip(found, lines, strict=True)]
        else:
            rows = [f"{c},{line}\n" for c, line in zip(found, lines, strict=True)]
        yield "".join(rows).encode()


def npy_answer(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """An ``.npy`` answer's bytes, its header written, and the float64 array of ``shape``
    inside them for the forward pass to fill: the answer is sent from where it was computed."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    start = len(header.getvalue())  # a multiple of 64: the array is aligned
    data = np.empty(start + 8 * math.prod(shape), dtype=np.uint8)
    data[:start] = np.frombuffer(header.getvalue(), dtype=np.uint8)
    return data, data[start:].view("<f8").reshape(shape)


async def _npy_chunks(data: np.ndarray) -> AsyncIterator[memoryview]:
    view = data.data.cast("B")
    for start in range(0, len(view), SEND_BYTES):
        yield view[start : start + SEND_BYTES]  # Starlette sends memoryviews as they are


def csv_answer(model_id: str, values: np.ndarray, classes: np.ndarray | None,
               names: list[str] | None) -> Response:
    """Predictions as a streamed CSV: ``y`` for regression; ``y``, ``p_0``..``p_K-1`` and
    ``label`` for a classifier."""
    return StreamingResponse(
        _csv_chunks(values, classes, names), media_type=CSV,
        headers={"Content-Disposition": f'attachment; filename="{model_id}.csv"'})


def npy_response(model_id: str, data: np.ndarray) -> Response:
    """Predictions as ``.npy``: ``data``, the bytes :func:`npy_answer` made and the forward pass
    filled (``y`` (N,) for regression; (N, 1 + K) for a classifier: the class, then each
    class's probability), sent in large slices of that one buffer."""
    return StreamingResponse(
        _npy_chunks(data), media_type=NPY,
        headers={"Content-Disposition": f'attachment; filename="{model_id}.npy"',
                 "Content-Length": str(len(data))})


def unsupported(media: str) -> ProblemError:
    """415 for a body that is none of JSON, CSV and .npy."""
    return ProblemError(415, f"send JSON, CSV (text/csv) or .npy (application/octet-stream), "
                             f"not {media or 'an untyped body'}")
