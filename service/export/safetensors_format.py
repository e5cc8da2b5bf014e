"""safetensors (the NumPy API): every named param in float64, with ``format``, ``kind``,
``config`` and ``provenance`` (JSON text) in ``__metadata__``."""

from __future__ import annotations

import json
import struct

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save

from service.export.formats import (
    FORMAT_TAG,
    Bundle,
    FileProblem,
    Format,
    Parsed,
    finite_params,
    loads,
    provenance_dict,
    register,
)

# safetensors' own bound on a header.
MAX_HEADER = 100_000_000


def write(bundle: Bundle) -> bytes:
    """The bundle as safetensors bytes."""
    metadata = {
        "format": FORMAT_TAG,
        "kind": bundle.kind.name,
        "config": json.dumps(bundle.kind.config()),
        "provenance": json.dumps(dict(bundle.provenance)),
    }
    arrays = {name: np.array(value, dtype=np.float64, order="C")
              for name, value in bundle.params.items()}
    return save(arrays, metadata=metadata)


def _header(data: bytes) -> dict[str, object]:
    (size,) = struct.unpack("<Q", data[:8])
    header = loads(data[8 : 8 + size])
    if not isinstance(header, dict):
        raise FileProblem(422, ["file"], "its safetensors header is not a JSON object")
    return header


def read(data: bytes) -> Parsed:
    """The model in safetensors bytes (structure checked, not yet the kind's shapes)."""
    metadata = _header(data).get("__metadata__")
    if not isinstance(metadata, dict):
        raise FileProblem(422, ["file", "__metadata__"],
                          "missing: a Tapeline model file names its kind and config there")
    if metadata.get("format") != FORMAT_TAG:
        raise FileProblem(422, ["file", "__metadata__", "format"], f"must be {FORMAT_TAG!r}")
    kind = metadata.get("kind")
    if not isinstance(kind, str):
        raise FileProblem(422, ["file", "__metadata__", "kind"], "missing")
    config = loads(str(metadata.get("config", "")).encode())
    if not isinstance(config, dict):
        raise FileProblem(422, ["file", "__metadata__", "config"], "must be a JSON object")
    provenance = provenance_dict(loads(str(metadata.get("provenance", "{}")).encode()),
                                 ["file", "__metadata__", "provenance"])
    try:
        arrays = load(data)
    except (SafetensorError, ValueError, TypeError) as error:
        raise FileProblem(422, ["file"], f"is not readable safetensors ({error})"[:200]) from error
    params: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if value.dtype.kind not in "fiu":
            raise FileProblem(422, ["file", "params", name],
                              f"must hold numbers, not dtype {value.dtype.str!r}")
        params[name] = value.astype(np.float64)
    finite_params(params, ["file", "params"])
    return Parsed(kind, config, params, provenance)


def sniff(data: bytes) -> bool:
    """An 8-byte little-endian header size, then a JSON object of that size within the data."""
    if len(data) < 10:
        return False
    (size,) = struct.unpack("<Q", data[:8])
    return size <= min(MAX_HEADER, len(data) - 8) and data[8:9] == b"{"


register(Format("safetensors", "application/octet-stream", "safetensors", write, read, sniff))
