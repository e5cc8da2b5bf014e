"""Pages of models and runs as answers whose bytes are bounded before they are built.

Each item's JSON is judged before its params are read: the item without its params is
rendered (names, tags, config: small), and its params are estimated from their stored size (a
float64 is 8 bytes stored and at most 25 characters of JSON with its separator; W and b are
written twice where the kind has them). A page keeps items while the sum stays within
``TAPELINE_MAX_ANSWER_BYTES`` (always one at least: one item is bounded by
``TAPELINE_MAX_PARAMS``), and its ``next_cursor`` continues after the last one kept. Only then
are the kept items' params read, and the page is written an item at a time (a run's params a
block of numbers at a time), so that a large answer is streamed rather than built whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import numpy as np
from fastapi import Response
from fastapi.responses import StreamingResponse
from pydantic_core import to_json

from service.training.specs import StoredModel, stored_kind

# A float64 (8 stored bytes) is at most 24 characters of JSON and a separator; brackets and
# names are covered by the rest of the 28.
JSON_PER_PARAM_BYTE = 28 / 8
# Numbers of a param written at a time.
CHUNK_NUMBERS = 1 << 16
# Answers up to this size are sent whole; larger ones are streamed.
WHOLE_BYTES = 1 << 20


def params_bytes(stored: int, twice: bool) -> int:
    """The most JSON bytes of params stored in ``stored`` bytes (``twice``: W and b are also
    written as the tutorial's fields)."""
    return int(stored * JSON_PER_PARAM_BYTE * (1 + twice))


def writes_wb(model: StoredModel) -> bool:
    """Whether the model's W and b are written twice: as ``params`` and as the tutorial's
    ``W`` (a vector) and ``b`` (a number)."""
    shapes = stored_kind(model).shapes()
    return shapes.keys() == {"W", "b"} and len(shapes["W"]) == 1 and shapes["b"] == ()


def fitting(costs: Iterable[int], max_bytes: int) -> int:
    """How many items from the first fit within ``max_bytes`` (one at least, if any)."""
    total, kept = 0, 0
    for cost in costs:
        total += cost
        if total > max_bytes and kept:
            break
        kept += 1
    return kept


def _array(value: np.ndarray) -> Iterator[bytes]:
    """One array as nested JSON lists (a number for a scalar), a block of numbers at a time."""
    if value.ndim == 0:
        yield to_json(value.item())
        return
    inner = int(np.prod(value.shape[1:], dtype=np.int64))
    step = max(1, CHUNK_NUMBERS // max(1, inner))
    yield b"["
    for start in range(0, len(value), step):
        text = to_json(value[start : start + step].tolist())[1:-1]
        yield text if start == 0 else b"," + text
    yield b"]"


def params_json(arrays: Mapping[str, np.ndarray]) -> Iterator[bytes]:
    """``"W":..,"b":..,"params":{..}``: the members :class:`~service.api.schemas.runs.Params`
    writes, W and b where the kind has them (else null)."""
    W, b = arrays.get("W"), arrays.get("b")
    if W is not None and b is not None and W.ndim == 1 and b.ndim == 0:
        yield b'"W":'
        yield from _array(W)
        yield b',"b":' + to_json(float(b))
    else:
        yield b'"W":null,"b":null'
    yield b',"params":{'
    for index, (name, value) in enumerate(arrays.items()):
        yield (b"," if index else b"") + to_json(name) + b":"
        yield from _array(value)
    yield b"}"


def page(items: Iterable[Iterable[bytes]], cursor: str | None) -> Iterator[bytes]:
    """``{"items":[..],"next_cursor":..}`` from each item's parts."""
    yield b'{"items":['
    for index, parts in enumerate(items):
        if index:
            yield b","
        yield from parts
    yield b'],"next_cursor":' + to_json(cursor) + b"}"


def answer(parts: Iterator[bytes], estimated: int) -> Response:
    """A page sent whole when it is small, else streamed as it is written."""
    if estimated <= WHOLE_BYTES:
        return Response(b"".join(parts), media_type="application/json")
    return StreamingResponse(parts, media_type="application/json")


def run_parts(head: bytes, initial: Mapping[str, np.ndarray],
              final: Mapping[str, np.ndarray] | None) -> Iterator[bytes]:
    """A run's JSON from ``head`` (the run written with its params left out: ``"initial":{}``
    and ``"final":{"loss":..}``) with its initial and final params written in: the first
    ``"initial":{`` and ``"final":{`` of ``head`` are those members (no member before them
    has such a key, and a string's quotes are escaped)."""
    at = head.index(INITIAL) + len(INITIAL)
    yield head[:at]
    yield from params_json(initial)
    rest = head[at:]
    if final is None:
        yield rest
        return
    at = rest.index(FINAL) + len(FINAL)
    yield rest[:at]
    yield from params_json(final)
    yield b","  # loss and metrics follow
    yield rest[at:]


INITIAL = b'"initial":{'
FINAL = b'"final":{'
