"""Array codec: NumPy arrays to and from the bytes kept in BLOB / BYTEA columns.

Dataset arrays are ``.npy`` bytes; a model's parameters are one safetensors blob of named
arrays. Neither format can carry pickled objects.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping

import numpy as np
from safetensors.numpy import load, save

_VECTOR_DTYPE = np.dtype("<f8")
_NUMBER = re.compile(r"(\d+)")


def npy_parts(array: np.ndarray) -> tuple[bytes, memoryview]:
    """An array's ``.npy`` form in two parts, the header and a view of the data (no copy
    unless the array is not contiguous)."""
    array = np.ascontiguousarray(array)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    return header.getvalue(), array.reshape(-1).view(np.uint8).data


def pack_array(array: np.ndarray) -> bytes:
    """Serialise an array of any shape and plain dtype as ``.npy`` bytes (no pickling), with
    one copy of the data (``np.save`` into a buffer makes three)."""
    return b"".join(npy_parts(array))


def unpack_array(data: bytes) -> np.ndarray:
    """Read back an array written by :func:`pack_array`."""
    return np.load(io.BytesIO(data), allow_pickle=False)


def pack_vector(values: np.ndarray | list[float]) -> bytes:
    """Serialise a 1-D vector of numbers as raw little-endian float64 (8 bytes a value)."""
    return np.asarray(values, dtype=_VECTOR_DTYPE).reshape(-1).tobytes()


def unpack_vector(data: bytes) -> list[float]:
    """Read back a vector written by :func:`pack_vector` as a list of Python floats."""
    return np.frombuffer(data, dtype=_VECTOR_DTYPE).tolist()


def _order(name: str) -> tuple[int, str]:
    """Layer by layer, weights before biases: W1, b1, W2, b2 (and W before b)."""
    number = _NUMBER.search(name)
    return (int(number.group(1)) if number else 0, name)


def pack_params(params: Mapping[str, np.ndarray]) -> bytes:
    """Serialise named parameter arrays as one safetensors blob, in float64."""
    return save({name: np.array(value, dtype=_VECTOR_DTYPE, order="C")
                 for name, value in params.items()})


def unpack_params(data: bytes) -> dict[str, np.ndarray]:
    """Read back a blob written by :func:`pack_params`, names in layer order."""
    arrays = load(bytes(data))
    return {name: arrays[name] for name in sorted(arrays, key=_order)}
