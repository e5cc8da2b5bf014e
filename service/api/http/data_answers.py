"""A dataset's arrays as answers, written a block of rows at a time: JSON ``{x, y}`` and CSV
(``x0..``, ``y``) of a 2,000,000-row dataset are 150 MB, and building them whole (Python lists,
then the text) took six times that. Here the server holds the float64 arrays and one block's
text; class names are looked up a block at a time, and written safe for spreadsheets in
CSV."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
from fastapi import Response
from fastapi.responses import StreamingResponse

from service.api.http.file_answers import CHUNK_NUMBERS, text_cell

JSON_TEXT = {"ensure_ascii": False, "separators": (",", ":")}  # Starlette's JSONResponse's


def _blocks(x: np.ndarray) -> Iterator[tuple[int, int]]:
    """(start, stop) of each block of about :data:`CHUNK_NUMBERS` numbers."""
    step = max(1, CHUNK_NUMBERS // (x.shape[1] + 1))
    for start in range(0, len(x), step):
        yield start, min(start + step, len(x))


def _targets(y: np.ndarray, classes: list[str] | None, start: int, stop: int) -> list[object]:
    """A block of y: its class names when it has them, else its numbers."""
    if classes is None:
        return list(y[start:stop].astype(np.float64).tolist())
    return [classes[i] for i in y[start:stop].astype(np.int64).tolist()]


def _json(x: np.ndarray, y: np.ndarray, classes: list[str] | None) -> Iterator[bytes]:
    for name, part in (("x", lambda a, b: x[a:b].astype(np.float64).tolist()),
                       ("y", lambda a, b: _targets(y, classes, a, b))):
        yield b'{"x":[' if name == "x" else b'],"y":['
        for start, stop in _blocks(x):
            text = json.dumps(part(start, stop), **JSON_TEXT)[1:-1]  # type: ignore[arg-type]
            yield (text if start == 0 else "," + text).encode()
    yield b"]}"


def _csv(x: np.ndarray, y: np.ndarray, classes: list[str] | None) -> Iterator[bytes]:
    names = ["x"] if x.shape[1] == 1 else [f"x{i}" for i in range(x.shape[1])]
    yield (",".join([*names, "y"]) + "\n").encode()
    for start, stop in _blocks(x):
        targets = _targets(y, classes, start, stop)
        cells = [text_cell(t) if isinstance(t, str) else repr(t) for t in targets]
        yield "".join(",".join([*map(repr, row), cell]) + "\n" for row, cell in zip(
            x[start:stop].astype(np.float64).tolist(), cells, strict=True)).encode()


def json_data(x: np.ndarray, y: np.ndarray, classes: list[str] | None) -> Response:
    """The arrays as streamed JSON ``{"x": rows, "y": values or class names}``."""
    return StreamingResponse(_json(x, y, classes), media_type="application/json")


def csv_data(dataset_id: str, x: np.ndarray, y: np.ndarray,
             classes: list[str] | None) -> Response:
    """The arrays as a streamed CSV: ``x`` (or ``x0``..), then ``y``."""
    return StreamingResponse(
        _csv(x, y, classes), media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{dataset_id}.csv"'})
