"""Predictions as answers: the media type an ``Accept`` header asks for (JSON, CSV or
``.npy``), the most bytes each answer can take (known before it is computed), and the
answers streamed from where they were computed: JSON and CSV written a block of rows at a
time, ``.npy`` sent from the buffer the forward pass filled.

CSV cells of text (class labels) are made safe for spreadsheets as OWASP advises: one that
begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is written after a ``'``, so
no spreadsheet takes it for a formula. Numbers are written as they are.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import AsyncIterator, Iterator

import numpy as np
from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from service.api.http.file_bodies import CSV, JSON, NPY
from service.api.http.negotiation import choose

ANSWERS = (JSON, CSV, NPY)
# Numbers of a JSON or CSV answer written per streamed chunk.
CHUNK_NUMBERS = 1 << 16
# Bytes of an .npy answer per message sent.
SEND_BYTES = 1 << 22
# The most bytes a number takes in a JSON or CSV answer: float64's longest form
# ("-2.2250738585072014e-308", 24 characters, as repr and as %.17g write it) and a separator.
NUMBER_BYTES = 25
# What a spreadsheet reads as the start of a formula (OWASP's CSV injection list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

ANSWER_CONTENT = {
    CSV: {"schema": {"type": "string"}},
    NPY: {"schema": {"type": "string", "format": "binary"}},
}


def accepted(request: Request) -> str:
    """The answer's media type: the ``Accept`` header's choice (JSON when it names none)."""
    return choose(request.headers.get("accept"), ANSWERS) or JSON


def spreadsheet_safe(cell: str) -> str:
    """A text cell no spreadsheet reads as a formula: ``'`` before one that begins like one."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def text_cell(cell: str) -> str:
    """A CSV cell of text: safe for spreadsheets, quoted when it holds a comma, a quote or a
    line break (``\\r`` included)."""
    cell = spreadsheet_safe(cell)
    if any(ch in cell for ch in ',"\r\n'):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def _chunk_rows(values: np.ndarray) -> int:
    """Rows per streamed chunk: about :data:`CHUNK_NUMBERS` numbers."""
    return max(1, CHUNK_NUMBERS // max(1, values[:1].size))


def answer_bytes(media: str, classes: int | None,
                 names: list[str] | None) -> tuple[int, int]:
    """The most bytes a prediction's answer takes, as a fixed part and a part per row, known
    before anything is computed: every number at its longest, every label at its own
    length."""
    if media == NPY:
        return 128, 8 * (1 if classes is None else 1 + classes)
    if classes is None:
        return 16, NUMBER_BYTES + 1
    index = len(str(classes - 1)) + 1  # a class index and its separator
    if media == CSV:
        label = 1 + max(index, *(len(text_cell(n).encode()) for n in names)) if names else 0
        header = len(f"y,{','.join(f'p_{k}' for k in range(classes))},label\n")
        return header, index + classes * NUMBER_BYTES + label + 1
    label = 1 + max(index + 1, *(len(json.dumps(n)) for n in names)) if names else 0
    return 64, index + classes * NUMBER_BYTES + 2 + label


def _csv_chunks(values: np.ndarray, classes: np.ndarray | None,
                names: list[str] | None) -> Iterator[bytes]:
    if classes is None:
        yield b"y\n"
    else:
        probability_names = ",".join(f"p_{k}" for k in range(values.shape[1]))
        yield f"y,{probability_names}{',label' if names else ''}\n".encode()
    step = _chunk_rows(values)
    for start in range(0, len(values), step):
        block = values[start : start + step]
        text = io.StringIO()
        np.savetxt(text, block.reshape(len(block), -1), fmt="%.17g", delimiter=",")
        if classes is None:
            yield text.getvalue().encode()
            continue
        found = classes[start : start + step].tolist()
        lines = text.getvalue().splitlines()
        if names:
            quoted = [text_cell(name) for name in names]
            rows = [f"{c},{line},{quoted[c] if c < len(quoted) else c}\n"
                    for c, line in zip(found, lines, strict=True)]
        else:
            rows = [f"{c},{line}\n" for c, line in zip(found, lines, strict=True)]
        yield "".join(rows).encode()


def _json_list(array: np.ndarray, step: int) -> Iterator[bytes]:
    """A JSON list of ``array``'s rows (numbers, or lists of numbers), a block at a time."""
    yield b"["
    for start in range(0, len(array), step):
        text = json.dumps(array[start : start + step].tolist())[1:-1]
        yield (text if start == 0 else "," + text).encode()
    yield b"]"


def _json_chunks(values: np.ndarray, classes: np.ndarray | None,
                 names: list[str] | None) -> Iterator[bytes]:
    step = _chunk_rows(values)
    if classes is None:
        yield b'{"y":'
        yield from _json_list(values, step)
        yield b"}"
        return
    yield b'{"y":'
    yield from _json_list(classes, CHUNK_NUMBERS)
    yield b',"probabilities":'
    yield from _json_list(values, step)
    yield b',"labels":'
    if not names:
        yield b"null}"
        return
    labels = np.array([*names, *map(str, range(len(names), values.shape[1]))], dtype=object)
    yield from _json_list(labels[classes], CHUNK_NUMBERS)
    yield b"}"


def json_answer(values: np.ndarray, classes: np.ndarray | None,
                names: list[str] | None) -> Response:
    """Predictions as streamed JSON: ``{"y"}`` for regression; ``{"y", "probabilities",
    "labels"}`` for a classifier (``labels`` null when its classes have no names)."""
    return StreamingResponse(_json_chunks(values, classes, names), media_type=JSON)


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
