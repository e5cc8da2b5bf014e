"""Reading the body of a batch prediction sent as a file: a CSV table (a header row, then the
model's features in order) or an ``.npy`` array of rows, judged against the dataset limits
before its data is read. Every problem names the ``body``."""

from __future__ import annotations

import io
import math

import numpy as np

from service.config import Settings
from service.files.csv_table import exact_block, fast_block, line_blocks, read_header
from service.files.errors import InvalidData
from service.files.limits import Limits
from service.files.npy import MAX_NPY_HEADER, read_npy_header

# A body as read: its bytes, or a view of the buffer they were read into.
Buffer = bytes | memoryview

CSV = "text/csv"
# An .npy header is read from at most this many bytes: the magic, version, length, header.
MAX_HEADER_READ = 12 + MAX_NPY_HEADER


def read_csv(body: Buffer, limits: Limits) -> tuple[list[str], np.ndarray]:
    """The header and the rows of numbers of a CSV body."""
    try:
        return _read_csv(body, limits)
    except InvalidData as error:  # the CSV reader's helpers name the "file"
        if error.loc[:1] == ["file"]:
            raise InvalidData(["body", *error.loc[1:]], error.msg) from error
        raise


def _read_csv(body: Buffer, limits: Limits) -> tuple[list[str], np.ndarray]:
    text = io.TextIOWrapper(io.BytesIO(body), encoding="utf-8-sig", newline="")
    header, first_line = read_header(text)
    limits.check(["body"], 1, len(header))
    blocks: list[np.ndarray] = []
    count = 0
    for line, block in line_blocks(text, first_line):
        fast = fast_block(block, len(header))
        rows = (fast if fast is not None else exact_block(block, line, header))[0]
        count += len(rows)
        limits.check(["body"], count, len(header))
        blocks.append(rows)
    if count == 0:
        raise InvalidData(["body"], "CSV needs a header row and at least one row of inputs")
    return header, np.concatenate(blocks)


def read_npy(body: Buffer, limits: Limits) -> np.ndarray:
    """The array of an ``.npy`` body as (rows, features) in the dtype it was sent in: a view of
    the body's bytes, no copy (no pickles, sizes checked against its header first, every value
    checked finite). The forward pass converts it to float64 block by block."""
    stream = io.BytesIO(memoryview(body)[:MAX_HEADER_READ])
    header = read_npy_header(stream, ["body"])
    if len(header.shape) not in (1, 2) or 0 in header.shape:
        raise InvalidData(["body"], f".npy must be a non-empty 1-D or 2-D array, got shape "
                                    f"{list(header.shape)}")
    examples = header.shape[0]
    features = header.shape[1] if len(header.shape) == 2 else 1
    limits.check(["body"], examples, features)
    offset = stream.tell()
    if len(body) - offset != header.nbytes:
        raise InvalidData(["body"], f"its header describes {header.nbytes} bytes of data but it "
                                    f"holds {len(body) - offset}")
    flat = np.frombuffer(body, dtype=header.dtype, count=math.prod(header.shape), offset=offset)
    if header.fortran_order:
        array = flat.reshape(header.shape[::-1]).T
    else:
        array = flat.reshape(header.shape)
    rows = array.reshape(examples, features)
    # Judged on the array as sent (float32 is half the bytes of float64; widening keeps it).
    if rows.dtype.kind == "f" and not np.isfinite(rows).all():
        row = int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
        raise InvalidData(["body", row], "values must be finite")
    return rows


def parse(media: str, body: Buffer, settings: Settings) -> tuple[np.ndarray, list[str] | None]:
    """x from a CSV (``media`` ``text/csv``) or else an .npy body, and the CSV's header."""
    limits = Limits.of(settings)
    if media == CSV:
        header, x = read_csv(body, limits)
        return x, header
    return read_npy(body, limits), None
