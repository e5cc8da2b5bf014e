"""Pages of history as answers, written a block of rows at a time: a page of a large model's
rows holds millions of numbers, and building it whole (Python lists, a model, then its JSON)
costs several times its size. Here the rows' stored params are read once into arrays (their
stored size) and each block's JSON is written from them and sent before the next is made.

Rows: ``{"items": [row, ...], "next_cursor"}``, each row as :class:`HistoryRow` writes it.
Columns: one list per field, ``metrics`` and ``params`` one per name; a row without params
(``record_params`` left it out) is ``null`` in the ``params``, ``W`` and ``b`` columns, which
are ``null`` when no row has them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from pydantic_core import to_json

from service.api.views import history_row, v1_fields
from service.store.codec import unpack_params
from service.store.tables import EpochRow

# Rows of a rows page per chunk, and numbers of a params column per chunk.
CHUNK_ROWS = 64
CHUNK_NUMBERS = 1 << 16


def chunks(rows: Sequence[EpochRow], more: bool, fmt: str, cursor_of: str) -> Iterator[bytes]:
    """A page of history as rows or columns, in chunks; the cursor is the last row's
    ``epoch`` or ``step`` (``cursor_of``) when ``more`` follow."""
    cursor = str(getattr(rows[-1], cursor_of)) if more and rows else None
    if fmt == "columns":
        yield from _columns(rows, cursor)
        return
    yield b'{"items":['
    for start in range(0, len(rows), CHUNK_ROWS):
        block = b",".join(history_row(row).model_dump_json().encode()
                          for row in rows[start : start + CHUNK_ROWS])
        yield block if start == 0 else b"," + block
    yield b'],"next_cursor":' + to_json(cursor) + b"}"


def _param_column(params: list[dict[str, np.ndarray] | None], name: str) -> Iterator[bytes]:
    """The JSON list of one param over the rows (null where a row has none), its Python
    values made a block of rows at a time."""
    size = max(1, max(int(np.size(p[name])) for p in params if p is not None))
    step = max(1, CHUNK_NUMBERS // size)
    yield b"["
    for start in range(0, len(params), step):
        block: list[Any] = [None if p is None else p[name].tolist()
                            for p in params[start : start + step]]
        text = to_json(block)[1:-1]
        yield text if start == 0 else b"," + text
    yield b"]"


def _columns(rows: Sequence[EpochRow], cursor: str | None) -> Iterator[bytes]:
    params = [None if row.params is None else unpack_params(row.params) for row in rows]
    found = [p for p in params if p is not None]
    names = list(dict.fromkeys(name for row in rows for name in row.metrics))
    wb = [None if p is None else v1_fields(p) for p in params]
    with_wb = any(pair is not None and pair[0] is not None for pair in wb)
    yield b'{"epoch":' + to_json([row.epoch for row in rows])
    if with_wb:
        yield b',"W":' + to_json([None if pair is None else pair[0] for pair in wb])
        yield b',"b":' + to_json([None if pair is None else pair[1] for pair in wb])
    else:
        yield b',"W":null,"b":null'
    yield b',"loss":' + to_json([row.loss for row in rows])
    yield b',"metrics":' + to_json({name: [row.metrics.get(name) for row in rows]
                                    for name in names})
    if found:
        yield b',"params":{'
        for index, name in enumerate(found[0]):
            yield (b"," if index else b"") + to_json(name) + b":"
            yield from _param_column(params, name)
        yield b"}"
    else:
        yield b',"params":null'
    yield b',"elapsed_ms":' + to_json([row.elapsed_ms for row in rows])
    yield b',"run_id":' + to_json([row.run_id for row in rows])
    yield b',"step":' + to_json([row.step for row in rows])
    yield b',"next_cursor":' + to_json(cursor) + b"}"
