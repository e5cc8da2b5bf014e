"""Turning client input (JSON arrays, or what :mod:`service.files.uploads` read from a file) into
checked NumPy arrays.

Every problem is an :class:`~service.files.errors.InvalidData` (422) naming the field, row or key
at fault.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.config import Settings
from service.files.errors import InvalidData


def matrix(
    x: Sequence[float] | Sequence[Sequence[float]] | np.ndarray,
    loc: list[str | int],
    features: int | None = None,
) -> np.ndarray:
    """``x`` as an (examples, features) matrix, float64 unless it arrives as an array of other
    floats; a flat list is one feature. ``x`` may arrive as an array already (a large JSON body
    decoded in another process, or a file sent to predict, which the forward pass converts
    block by block)."""
    if isinstance(x, np.ndarray):
        floats = x if x.dtype.kind == "f" else x.astype(np.float64)
        array = floats.reshape(len(x), -1)
    elif x and isinstance(x[0], list):
        width = len(x[0])  # type: ignore[arg-type]
        for i, row in enumerate(x):
            if not isinstance(row, list) or len(row) != width:
                raise InvalidData(
                    [*loc, i],
                    f"ragged rows: row 0 has {width} values, "
                    f"row {i} has {len(row) if isinstance(row, list) else 1}",
                )
        array = np.asarray(x, dtype=np.float64)
    else:
        array = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    if features is not None and array.shape[1] != features:
        raise InvalidData(loc, f"expected {features} feature(s) per row, got {array.shape[1]}")
    return array


def check_dataset(
    x: np.ndarray,
    y: np.ndarray,
    settings: Settings,
    loc: tuple[list[str | int], list[str | int]] = (["x"], ["y"]),
) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes, sizes and finiteness of a dataset's arrays against the limits; ``loc``
    says where x and y came from, for the problem's ``errors``."""
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise InvalidData(
            loc[0],
            f"x must hold at least one example with at least one feature, "
            f"got shape {list(x.shape)}",
        )
    if y.dtype.kind not in "biuf":
        found = next(((i, str(v)) for i, v in enumerate(y.flat) if not _is_number(str(v))), None)
        if found is not None:
            index, text = found
            raise InvalidData(
                loc[1], f"{text[:40]!r} (example {index + 1}) is not a number: y holds text"
            )
        y = y.astype(np.float64)
    if y.ndim != 1:
        raise InvalidData(loc[1], f"y must be a flat list of numbers, got shape {list(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise InvalidData(loc[1], f"x has {x.shape[0]} examples but y has {y.shape[0]}")
    if x.shape[0] > settings.max_examples:
        raise InvalidData(loc[0],
                          f"{x.shape[0]} examples exceed the limit of {settings.max_examples}")
    if x.shape[1] > settings.max_features:
        raise InvalidData(loc[0],
                          f"{x.shape[1]} features exceed the limit of {settings.max_features}")
    if x.size > settings.max_values:
        raise InvalidData(loc[0], f"{x.size} values exceed the limit of {settings.max_values}")
    for name, array in zip(loc, (x, y), strict=True):
        if not np.isfinite(array).all():
            raise InvalidData(name, "values must be finite numbers (no NaN or Infinity)")
        with np.errstate(over="ignore", invalid="ignore"):  # it overflows when the mean would
            spread = [column.std(dtype=np.float64) for column in array.reshape(len(array), -1).T]
        if not np.isfinite(spread).all():
            raise InvalidData(
                name, "values are too large: their mean or standard deviation is not finite"
            )
    return x, y


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
