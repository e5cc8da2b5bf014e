"""JSON: ``{"format": "tapeline.model/1", "kind", "config", "params", "provenance"}``, every
param a number, a list or a list of rows (float64 written so that it reads back bit for bit)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from service.export.formats import (
    FORMAT_TAG,
    Bundle,
    FileProblem,
    Format,
    Limits,
    Parsed,
    Tensor,
    is_finite_number,
    loads,
    provenance_dict,
    register,
)


def write(bundle: Bundle) -> bytes:
    """The bundle as a JSON document."""
    document = {
        "format": FORMAT_TAG,
        "kind": bundle.kind.name,
        "config": bundle.kind.config(),
        "params": {name: np.asarray(value, dtype=np.float64).tolist()
                   for name, value in bundle.params.items()},
        "provenance": dict(bundle.provenance),
    }
    return json.dumps(document, allow_nan=False).encode()


def _array(value: Any, loc: list[str | int]) -> np.ndarray:
    """A param's numbers as float64, its shape (a number, a list or equal rows) found before
    by :func:`_tensor`: 422 unless every one is a finite number."""
    if not isinstance(value, list):
        return np.array(float(value))
    rows = bool(value) and all(isinstance(row, list) for row in value)
    leaves = [v for row in value for v in row] if rows else value
    if all(is_finite_number(v) for v in leaves):
        return np.array(value, dtype=np.float64)
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in leaves):
        raise FileProblem(422, loc, "holds a number that is not finite")
    raise FileProblem(422, loc, "must hold finite numbers only (a number, a list or a list of "
                                "rows)")


def _tensor(value: Any, loc: list[str | int]) -> Tensor:
    """A param's shape as its nesting says (a number, a list, a list of equal rows), read as
    an array only when asked."""
    if is_finite_number(value):
        shape: tuple[int, ...] = ()
    elif isinstance(value, float):
        raise FileProblem(422, loc, "holds a number that is not finite")
    elif not isinstance(value, list):
        raise FileProblem(422, loc, "must be a number, a list of numbers or a list of rows")
    elif value and all(isinstance(row, list) for row in value):
        if len({len(row) for row in value}) > 1:
            raise FileProblem(422, loc, "its rows differ in length")
        shape = (len(value), len(value[0]))
    else:
        shape = (len(value),)
    return Tensor(shape, "number", lambda: _array(value, loc))


def read(data: bytes, limits: Limits) -> Parsed:
    """The model a JSON document describes (structure checked, not yet the kind's shapes;
    the params not yet read)."""
    document = loads(data, limits.document())
    if not isinstance(document, dict):
        raise FileProblem(422, ["file"], "must be a JSON object")
    if document.get("format") != FORMAT_TAG:
        raise FileProblem(422, ["file", "format"], f"must be {FORMAT_TAG!r}")
    unknown = set(document) - {"format", "kind", "config", "params", "provenance"}
    if unknown:
        raise FileProblem(422, ["file", sorted(unknown)[0]], "is not a field of a model file")
    kind, config, params = document.get("kind"), document.get("config"), document.get("params")
    if not isinstance(kind, str):
        raise FileProblem(422, ["file", "kind"], "must be the name of a model kind")
    if not isinstance(config, dict):
        raise FileProblem(422, ["file", "config"], "must be an object")
    if not isinstance(params, dict):
        raise FileProblem(422, ["file", "params"], "must be an object of named arrays")
    tensors = {str(name): _tensor(value, ["file", "params", str(name)])
               for name, value in params.items()}
    provenance = provenance_dict(document.get("provenance"), ["file", "provenance"])
    return Parsed(kind, config, tensors, provenance)


def sniff(data: bytes) -> bool:
    """A JSON object: the first character that is not white space is ``{`` (and no NUL byte
    comes first, as one always does in a safetensors file's size)."""
    return b"\x00" not in data[:8] and data.lstrip(b" \t\r\n\xef\xbb\xbf")[:1] == b"{"


register(Format("json", "application/json", "json", write, read, sniff))
