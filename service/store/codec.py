"""Array codec: NumPy arrays to and from the bytes kept in BLOB / BYTEA columns."""

from __future__ import annotations

import io

import numpy as np

_VECTOR_DTYPE = np.dtype("<f8")


def pack_array(array: np.ndarray) -> bytes:
    """Serialise an array of any shape and plain dtype as ``.npy`` bytes (no pickling), with
    one copy of the data (``np.save`` into a buffer makes three)."""
    array = np.ascontiguousarray(array)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    return b"".join([header.getvalue(), array.reshape(-1).view(np.uint8).data])


def unpack_array(data: bytes) -> np.ndarray:
    """Read back an array written by :func:`pack_array`."""
    return np.load(io.BytesIO(data), allow_pickle=False)


def pack_vector(values: np.ndarray | list[float]) -> bytes:
    """Serialise a 1-D vector of parameters as raw little-endian float64 (8 bytes a value)."""
    return np.asarray(values, dtype=_VECTOR_DTYPE).reshape(-1).tobytes()


def unpack_vector(data: bytes) -> list[float]:
    """Read back a vector written by :func:`pack_vector` as a list of Python floats."""
    return np.frombuffer(data, dtype=_VECTOR_DTYPE).tolist()
