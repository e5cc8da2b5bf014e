"""Reading ``.npy`` arrays: the header first (dtype, shape, order; never a pickle), checked to
describe plain numbers within the limits, then the data straight into its buffer; and a dataset
upload that is one ``.npy`` array (its last column is y)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from service.files.errors import InvalidData, Loc
from service.files.limits import Limits

# numpy's own bound on an .npy header (np.load's max_header_size).
MAX_NPY_HEADER = 10_000
READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class NpyHeader:
    """What an .npy header declares: dtype, shape, memory order and the data's size."""

    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    fortran_order: bool

    @property
    def nbytes(self) -> int:
        """Bytes of data that follow the header."""
        return math.prod(self.shape) * self.dtype.itemsize


def read_npy_header(stream: IO[bytes], loc: Loc) -> NpyHeader:
    """The header at the start of ``stream``, checked to describe an array of plain numbers."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(stream, MAX_NPY_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(stream, MAX_NPY_HEADER)
        else:
            raise InvalidData(loc, f"unsupported .npy format version {version[0]}.{version[1]}")
    except InvalidData:
        raise
    except Exception as error:  # any malformed header: numpy's parser raises many kinds
        raise InvalidData(loc, "not a readable .npy array: its header is malformed") from error
    if dtype.hasobject:
        raise InvalidData(
            loc, "holds Python objects; only arrays of numbers are read (never pickles)")
    if dtype.names is not None or dtype.subdtype is not None or dtype.kind not in "biuf":
        raise InvalidData(loc, f"expected a numeric array, got dtype {dtype.str!r}")
    return NpyHeader(dtype, tuple(int(n) for n in shape), bool(fortran))


def read_npy_data(stream: IO[bytes], header: NpyHeader, loc: Loc) -> np.ndarray:
    """The array a checked header describes, read from ``stream`` straight into its buffer, as
    float64 unless it already holds floats (native byte order)."""
    flat = np.empty(math.prod(header.shape), dtype=header.dtype)
    buffer = flat.view(np.uint8).data
    filled = 0
    while filled < len(buffer):
        got = stream.readinto(buffer[filled : filled + READ_CHUNK])  # type: ignore[attr-defined]
        if not got:
            raise InvalidData(loc, f"ends after {filled} of the {len(buffer)} bytes it declares")
        filled += got
    if stream.read(1):
        raise InvalidData(loc, "holds more data than its header declares")
    if header.fortran_order:
        array = flat.reshape(header.shape[::-1]).transpose()
    else:
        array = flat.reshape(header.shape)
    if header.dtype.kind != "f":
        return array.astype(np.float64)
    return array.astype(header.dtype.newbyteorder("="), copy=False)


def read_npy_dataset(file: IO[bytes], limits: Limits) -> tuple[np.ndarray, np.ndarray]:
    """x and y of an uploaded ``.npy`` file: a 2-D array whose last column is y."""
    header = read_npy_header(file, ["file"])
    if len(header.shape) != 2 or header.shape[1] < 2:
        raise InvalidData(
            ["file"],
            f".npy must be a 2-D array whose last column is y, got shape {list(header.shape)}",
        )
    limits.check(["file"], header.shape[0], header.shape[1] - 1)
    start = file.tell()
    held = file.seek(0, io.SEEK_END) - start
    if held != header.nbytes:
        raise InvalidData(
            ["file"], f"its header describes {header.nbytes} bytes of data but it holds {held}"
        )
    file.seek(start)
    array = read_npy_data(file, header, ["file"])
    return array[:, :-1], array[:, -1]
