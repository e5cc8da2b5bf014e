"""Turning client input (JSON arrays, CSV, .npy, .npz) into checked NumPy arrays.

Every problem becomes a 4xx :class:`ProblemError` that names the field, row or key at fault.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from collections.abc import Sequence

import numpy as np

from service.api.problems import ProblemError
from service.config import Settings


def _invalid(loc: list[str | int], msg: str, status: int = 422) -> ProblemError:
    where = ".".join(str(p) for p in loc)
    return ProblemError(status, f"{where}: {msg}", [{"loc": loc, "msg": msg}])


def matrix(
    x: Sequence[float] | Sequence[Sequence[float]],
    loc: list[str | int],
    features: int | None = None,
) -> np.ndarray:
    """``x`` as a float64 (examples, features) matrix; a flat list is one feature."""
    if x and isinstance(x[0], list):
        width = len(x[0])  # type: ignore[arg-type]
        for i, row in enumerate(x):
            if not isinstance(row, list) or len(row) != width:
                raise _invalid(
                    [*loc, i],
                    f"ragged rows: row 0 has {width} values, "
                    f"row {i} has {len(row) if isinstance(row, list) else 1}",
                )
        array = np.asarray(x, dtype=np.float64)
    else:
        array = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    if features is not None and array.shape[1] != features:
        raise _invalid(loc, f"expected {features} feature(s) per row, got {array.shape[1]}")
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
        raise _invalid(
            loc[0],
            f"x must hold at least one example with at least one feature, "
            f"got shape {list(x.shape)}",
        )
    if y.ndim != 1:
        raise _invalid(loc[1], f"y must be a flat list of numbers, got shape {list(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise _invalid(loc[1], f"x has {x.shape[0]} examples but y has {y.shape[0]}")
    if x.shape[0] > settings.max_examples:
        raise _invalid(loc[0], f"{x.shape[0]} examples exceed the limit of {settings.max_examples}")
    if x.shape[1] > settings.max_features:
        raise _invalid(loc[0], f"{x.shape[1]} features exceed the limit of {settings.max_features}")
    if x.size > settings.max_values:
        raise _invalid(loc[0], f"{x.size} values exceed the limit of {settings.max_values}")
    for name, array in zip(loc, (x, y), strict=True):
        if not np.isfinite(array).all():
            raise _invalid(name, "values must be finite numbers (no NaN or Infinity)")
        with np.errstate(over="ignore", invalid="ignore"):
            spread = array.std(axis=0, dtype=np.float64)  # overflows whenever the mean would
        if not np.isfinite(spread).all():
            raise _invalid(
                name, "values are too large: their mean or standard deviation is not finite"
            )
    return x, y


def _numeric(array: np.ndarray, loc: list[str | int]) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise _invalid(loc, f"expected a numeric array, got dtype {array.dtype}")
    return array.astype(np.float64 if array.dtype.kind != "f" else array.dtype, copy=False)


def _from_csv(content: bytes, target: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise _invalid(["file"], "CSV must be UTF-8 text") from error
    rows = list(csv.reader(io.StringIO(text)))
    rows = [r for r in rows if r and any(cell.strip() for cell in r)]
    if len(rows) < 2:
        raise _invalid(["file"], "CSV needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if target not in header:
        raise _invalid(["target"], f"column {target!r} is not in the CSV header {header}")
    if len(header) < 2:
        raise _invalid(["file"], "CSV needs at least one feature column besides the target")
    column = header.index(target)
    labels = _labels(rows[1:], column)
    values = np.empty((len(rows) - 1, len(header)), dtype=np.float64)
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise _invalid(
                ["file", f"line {i}"], f"has {len(row)} fields, the header has {len(header)}"
            )
        for j, cell in enumerate(row):
            if j == column and labels is not None:
                continue
            try:
                value = float(cell)
            except ValueError as error:
                raise _invalid(
                    ["file", f"line {i}", header[j]], f"{cell.strip()[:40]!r} is not a number"
                ) from error
            if not math.isfinite(value):
                raise _invalid(["file", f"line {i}", header[j]], "values must be finite")
            values[i - 2, j] = value
    y = labels if labels is not None else values[:, column]
    return np.delete(values, column, axis=1), y


def _labels(rows: list[list[str]], column: int) -> np.ndarray | None:
    """The target column as strings (class names) when some cell is not a number."""
    cells = [row[column].strip() if column < len(row) else "" for row in rows]
    for cell in cells:
        try:
            float(cell)
        except ValueError:
            return np.asarray(cells, dtype=str)
    return None


def _from_npy(content: bytes) -> tuple[np.ndarray, np.ndarray]:
    array = _numeric(np.load(io.BytesIO(content), allow_pickle=False), ["file"])
    if array.ndim != 2 or array.shape[1] < 2:
        raise _invalid(
            ["file"],
            f".npy must be a 2-D array whose last column is y, got shape {list(array.shape)}",
        )
    return array[:, :-1], array[:, -1]


def _from_npz(content: bytes, target: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(io.BytesIO(content), allow_pickle=False) as archive:
        keys = list(archive.files)
        if target not in keys:
            raise _invalid(["target"], f"key {target!r} is not in the archive (keys: {keys})")
        others = [k for k in keys if k != target]
        x_key = "x" if "x" in others else (others[0] if len(others) == 1 else None)
        if x_key is None:
            raise _invalid(
                ["file"], f"archive needs an 'x' array besides {target!r} (keys: {keys})"
            )
        x = _numeric(archive[x_key], ["file", x_key])
        y = _numeric(archive[target], ["file", target])
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    return x, y


def parse_upload(
    filename: str, content_type: str | None, content: bytes, target: str
) -> tuple[np.ndarray, np.ndarray]:
    """x and y from an uploaded ``.csv``, ``.npy`` or ``.npz`` file; 415 for anything else."""
    name = filename.lower()
    try:
        if name.endswith(".csv") or content_type in ("text/csv", "application/csv"):
            return _from_csv(content, target)
        if name.endswith(".npy"):
            return _from_npy(content)
        if name.endswith(".npz"):
            return _from_npz(content, target)
    except ProblemError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise _invalid(
            ["file"], f"not a readable {name.rsplit('.', 1)[-1]} file: {type(error).__name__}"
        ) from error
    raise ProblemError(
        415, f"unsupported file {filename!r}: upload a .csv (with a header row), .npy or .npz file"
    )
