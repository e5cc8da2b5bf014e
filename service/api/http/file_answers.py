"""Predictions as files: the media type an ``Accept`` header asks for (JSON, CSV or ``.npy``),
and CSV and ``.npy`` answers streamed from where they were computed."""

from __future__ import annotations

import io
import math
from collections.abc import AsyncIterator, Iterator

import numpy as np
from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from service.api.http.file_bodies import CSV, JSON, NPY
from service.api.http.negotiation import choose

ANSWERS = (JSON, CSV, NPY)
# Rows of a CSV answer written per streamed chunk.
CHUNK_ROWS = 20_000
# Bytes of an .npy answer per message sent.
SEND_BYTES = 1 << 22

ANSWER_CONTENT = {
    CSV: {"schema": {"type": "string"}},
    NPY: {"schema": {"type": "string", "format": "binary"}},
}


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
