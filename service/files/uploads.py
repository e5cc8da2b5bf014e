"""Reading uploaded datasets (.csv, .npy, .npz) within the limits.

Every upload is judged before its data is read: an ``.npy`` array's shape and dtype come from
its header, a zip member's size from the archive's directory, and both are checked against the
limits before anything is allocated or inflated; a member never inflates past its declared
size. Nothing is ever unpickled. A CSV is read a block of lines at a time (NumPy's C parser,
with an exact pass over a block only to name the line and column at fault) and stops as soon
as it passes a limit. Every problem is an :class:`~service.files.errors.InvalidData` (422)
naming the file, member, line or column at fault; anything else is an
:class:`~service.files.errors.UnsupportedFile` (415).
"""

from __future__ import annotations

from typing import IO

import numpy as np

from service.config import Settings
from service.files.csv_table import TargetType, read_csv_dataset
from service.files.errors import InvalidData, UnsupportedFile
from service.files.limits import Limits
from service.files.npy import read_npy_dataset
from service.files.npz import read_npz_dataset


def parse_upload(
    filename: str, content_type: str | None, file: IO[bytes], target: str, settings: Settings,
    target_type: TargetType = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """x (examples, features) and y (examples,) from an uploaded ``.csv``, ``.npy`` or ``.npz``
    file; 415 for anything else. y is text (a ``str`` array, class names) for
    ``target_type="categorical"``, or for ``auto`` when no value of a CSV's target column is
    a number; ``numeric`` refuses text. Features are always numbers."""
    name = filename.lower()
    limits = Limits.of(settings)
    file.seek(0)
    if name.endswith(".csv") or content_type in ("text/csv", "application/csv"):
        return read_csv_dataset(file, target, limits, target_type)
    if name.endswith(".npy"):
        x, y = read_npy_dataset(file, limits)
    elif name.endswith(".npz"):
        x, y = read_npz_dataset(file, target, limits)
    else:
        raise UnsupportedFile(
            f"unsupported file {filename!r}: upload a .csv (with a header row), .npy or .npz "
            "file")
    if target_type == "numeric" and y.dtype.kind in "US":
        raise InvalidData(["file", target], "holds text, not numbers (target_type=numeric)")
    if target_type == "categorical" and y.dtype.kind not in "US":
        y = np.array([format(v, "g") for v in y.tolist()], dtype=str)
    return x, y
