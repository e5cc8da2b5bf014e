"""safetensors (the NumPy API writes it): every named param in float64, with ``format``,
``kind``, ``config`` and ``provenance`` (JSON text) in ``__metadata__``.

An import is read from its header first: the header's size, then its JSON (within bounds),
then each tensor's dtype, shape and place in the file, all checked before a byte of data is
read. The data are converted only when asked (:class:`~service.export.formats.Tensor`), once
the caller has matched the names and shapes to the model kind's.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable

import numpy as np
from safetensors.numpy import save

from service.export.formats import (
    FORMAT_TAG,
    Bundle,
    FileProblem,
    Format,
    Limits,
    Parsed,
    Tensor,
    loads,
    provenance_dict,
    register,
)

# safetensors' own bound on a header.
MAX_HEADER = 100_000_000
# The little-endian NumPy type of each dtype whose values are numbers a param can hold.
NUMBERS = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
           "I16": "<i2", "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1"}
# bfloat16 is float32's upper half: read as 16-bit words and widened by a shift.
BF16 = "BF16"
# The dtypes safetensors defines that a param cannot be read from.
REFUSED = ("BOOL", "F8_E5M2", "F8_E4M3", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "F8_E8M0", "F6_E2M3",
           "F6_E3M2", "F4", "C64", "C128")
ACCEPTED = (*NUMBERS, BF16)


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


def _header(data: bytes, limits: Limits) -> tuple[dict[str, object], int]:
    """The header's JSON and where the data start, judged by its size first."""
    (size,) = struct.unpack("<Q", data[:8])
    if size > limits.header_bytes():
        raise FileProblem(422, ["file"], f"its safetensors header takes {size} bytes, more than "
                                         f"a model file's ({limits.header_bytes()})")
    header = loads(data[8 : 8 + size], limits.header())
    if not isinstance(header, dict):
        raise FileProblem(422, ["file"], "its safetensors header is not a JSON object")
    return header, 8 + size


def _unreadable(why: str) -> FileProblem:
    return FileProblem(422, ["file"], f"is not readable safetensors ({why})"[:200])


def _reader(data: bytes, start: int, count: int, dtype: str,
            shape: tuple[int, ...]) -> Callable[[], np.ndarray]:
    """How to read a tensor of ``count`` values at ``start`` as float64."""

    def load() -> np.ndarray:
        if dtype == BF16:
            words = np.frombuffer(data, "<u2", count, start).astype("<u4") << 16
            return words.view("<f4").astype(np.float64).reshape(shape)
        return np.frombuffer(data, NUMBERS[dtype], count, start).astype(np.float64).reshape(shape)

    return load


def _tensor(name: str, entry: object, data: bytes, start: int) -> Tensor:
    """A tensor's entry of the header, checked: a dtype a param can hold (422 naming any
    other), a shape, and offsets inside the file that fit them."""
    loc: list[str | int] = ["file", "params", name]
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise _unreadable(f"the entry of tensor {name!r} is not dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype in REFUSED:
        raise FileProblem(422, loc, f"has dtype {dtype}, which a param cannot hold: export "
                                    f"it as one of {', '.join(ACCEPTED)}")
    if dtype not in ACCEPTED:
        raise FileProblem(422, loc, f"has dtype {str(dtype)[:40]!r}, which is no safetensors "
                                    f"dtype")
    if not (isinstance(shape, list) and len(shape) <= 8
            and all(isinstance(n, int) and 0 <= n < 2**31 for n in shape)):
        raise _unreadable(f"tensor {name!r} has no valid shape")
    count = math.prod(shape)
    itemsize = 2 if dtype == BF16 else np.dtype(NUMBERS[dtype]).itemsize
    if not (isinstance(offsets, list) and len(offsets) == 2
            and all(isinstance(n, int) for n in offsets)
            and 0 <= offsets[0] <= offsets[1] <= len(data) - start
            and offsets[1] - offsets[0] == count * itemsize):
        raise _unreadable(f"the data_offsets of tensor {name!r} do not fit its shape and the "
                          f"file's {len(data) - start} bytes of data")
    return Tensor(tuple(shape), dtype, _reader(data, start + offsets[0], count, dtype,
                                               tuple(shape)))


def _metadata_json(metadata: dict[str, object], key: str, default: str,
                   limits: Limits) -> object:
    text = metadata.get(key, default)
    if not isinstance(text, str):
        raise FileProblem(422, ["file", "__metadata__", key], "must be JSON text")
    return loads(text.encode(), limits.metadata(), ["file", "__metadata__", key])


def read(data: bytes, limits: Limits) -> Parsed:
    """The model in safetensors bytes, from its header: structure, dtypes, shapes and offsets
    checked, not yet the kind's names and shapes, and no data read."""
    header, start = _header(data, limits)
    metadata = header.pop("__metadata__", None)
    if not isinstance(metadata, dict):
        raise FileProblem(422, ["file", "__metadata__"],
                          "missing: a Tapeline model file names its kind and config there")
    if metadata.get("format") != FORMAT_TAG:
        raise FileProblem(422, ["file", "__metadata__", "format"], f"must be {FORMAT_TAG!r}")
    kind = metadata.get("kind")
    if not isinstance(kind, str):
        raise FileProblem(422, ["file", "__metadata__", "kind"], "missing")
    config = _metadata_json(metadata, "config", "", limits)
    if not isinstance(config, dict):
        raise FileProblem(422, ["file", "__metadata__", "config"], "must be a JSON object")
    provenance = provenance_dict(_metadata_json(metadata, "provenance", "{}", limits),
                                 ["file", "__metadata__", "provenance"])
    if len(header) > limits.tensors:
        raise FileProblem(422, ["file"], f"holds {len(header)} tensors; a model has at most "
                                         f"{limits.tensors} named params")
    tensors = {name: _tensor(name, entry, data, start) for name, entry in header.items()}
    return Parsed(kind, config, tensors, provenance)


def sniff(data: bytes) -> bool:
    """An 8-byte little-endian header size, then a JSON object of that size within the data."""
    if len(data) < 10:
        return False
    (size,) = struct.unpack("<Q", data[:8])
    return size <= min(MAX_HEADER, len(data) - 8) and data[8:9] == b"{"


register(Format("safetensors", "application/octet-stream", "safetensors", write, read, sniff))
