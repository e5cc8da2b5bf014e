"""Reading CSV tables of numbers (a header row, then one row per example) a block of lines at a
time: NumPy's C parser for a block, and an exact pass over a block only to name the line and
column at fault. Dataset uploads read a target column besides the features (numbers, or class
names); batch predictions read features only."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from typing import IO, Any, Literal

import numpy as np

from service.files.errors import InvalidData
from service.files.limits import Limits

# A CSV is parsed this many characters of lines at a time; a header row may be this long.
CSV_BLOCK = 1 << 16
CSV_HEADER = 1 << 20


# How a CSV's target column is read: numbers, class names, or (auto) class names only when
# no value of it is a number.
TargetType = Literal["auto", "numeric", "categorical"]
CATEGORICAL_HINT = "send target_type=categorical to read the column as class names"


class _TextTarget(Exception):
    """The target column holds text (first at ``line``): read the file again keeping it as
    strings, unless numbers came before it."""

    def __init__(self, line: int, cell: str, after_numbers: bool) -> None:
        super().__init__(cell)
        self.line, self.cell, self.after_numbers = line, cell, after_numbers


def _mixed(target: str, text: tuple[int, str], number: tuple[int, str] | None) -> InvalidData:
    """A target column of numbers with a few values that are not (or the other way round)."""
    others = (f"line {number[0]} holds one ({number[1][:40]})" if number
              else "the values before it are numbers")
    return InvalidData(["file", f"line {text[0]}", target],
                       f"{text[1][:40]!r} is not a number, but {others}: fix the line, or "
                       f"{CATEGORICAL_HINT}")


def line_blocks(text: IO[str], first_line: int) -> Iterator[tuple[int, list[str]]]:
    """Blocks of lines and the line number of each block's first line."""
    number = first_line
    while True:
        try:
            block = text.readlines(CSV_BLOCK)
        except UnicodeDecodeError as error:
            raise InvalidData(["file"], "CSV must be UTF-8 text") from error
        if not block:
            return
        yield number, block
        number += len(block)


def read_header(text: IO[str]) -> tuple[list[str], int]:
    """The header row (the first line that is not blank) and the number of the line after it."""
    number = 0
    while True:
        try:
            line = text.readline(CSV_HEADER)
        except UnicodeDecodeError as error:
            raise InvalidData(["file"], "CSV must be UTF-8 text") from error
        number += 1
        if not line:
            raise InvalidData(["file"], "CSV needs a header row and at least one data row")
        if len(line) >= CSV_HEADER and not line.endswith(("\n", "\r")):
            raise InvalidData(["file", "line 1"],
                              f"the header is longer than {CSV_HEADER} characters")
        if line.strip():
            break
    try:
        [header] = list(csv.reader([line]))
    except (csv.Error, ValueError) as error:
        raise InvalidData(["file", f"line {number}"], "the header row is not valid CSV") from error
    return [h.strip() for h in header], number + 1


def exact_block(
    block: list[str], first_line: int, header: list[str], column: int | None = None,
    text_target: bool = False, target_type: TargetType = "auto",
    first_text: tuple[int, str] | None = None,
) -> tuple[np.ndarray, np.ndarray | list[str]]:
    """One block of CSV lines read cell by cell: the features and the target column's values
    (none when ``column`` is None; text when ``text_target``), or a 422 naming the line and
    column at fault. Dataset uploads and batch predictions both read their files with it.
    Text read for ``auto`` (``first_text`` its first value) refuses a value that is a number."""
    rows: list[list[float]] = []
    targets: list[Any] = []
    reader = csv.reader(block)
    try:
        for row in reader:
            line = first_line + reader.line_num - 1
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise InvalidData(
                    ["file", f"line {line}"], f"has {len(row)} fields, the header has {len(header)}"
                )
            values = []
            for j, cell in enumerate(row):
                if j == column and not cell.strip():
                    raise InvalidData(["file", f"line {line}", header[j]],
                                      "is empty: every row needs a target value")
                if j == column and text_target:
                    if first_text is not None and _is_number(cell):
                        raise _mixed(header[j], first_text, (line, cell.strip()))
                    targets.append(cell.strip())
                    continue
                try:
                    value = float(cell)
                except ValueError as error:
                    if j == column and target_type == "numeric":
                        raise InvalidData(["file", f"line {line}", header[j]],
                                          f"{cell.strip()[:40]!r} is not a number "
                                          "(target_type=numeric)") from error
                    if j == column:
                        raise _TextTarget(line, cell.strip(), bool(targets)) from error
                    raise InvalidData(
                        ["file", f"line {line}", header[j]],
                        f"{cell.strip()[:40]!r} is not a number",
                    ) from error
                if not math.isfinite(value):
                    raise InvalidData(["file", f"line {line}", header[j]], "values must be finite")
                if j == column:
                    targets.append(value)
                else:
                    values.append(value)
            rows.append(values)
    except csv.Error as error:
        line = first_line + reader.line_num - 1
        raise InvalidData(["file", f"line {line}"], f"is not valid CSV ({error})") from error
    width = len(header) - (column is not None)
    x = np.array(rows, dtype=np.float64).reshape(len(rows), width)
    return x, (targets if text_target else np.array(targets, dtype=np.float64))


def fast_block(
    block: list[str], width: int, column: int | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """One block through NumPy's C parser: the features and the target column's values (none
    when ``column`` is None), or ``None`` when it holds anything unusual (then
    :func:`exact_block` reads it and says what)."""
    if not block[0].strip():
        return None  # blank lines first (or only): loadtxt would warn of an empty input
    try:
        values = np.loadtxt(
            block, delimiter=",", quotechar='"', comments=None, dtype=np.float64, ndmin=2
        )
    except ValueError:
        return None
    if values.shape[0] == 0 or values.shape[1] != width or not np.isfinite(values).all():
        return None
    if column is None:
        return values, np.empty(0)
    return np.delete(values, column, axis=1), values[:, column].copy()  # not a view: it
    # would keep the whole block alive


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_csv_dataset(
    file: IO[bytes], target: str, limits: Limits, target_type: TargetType = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """x and y of an uploaded CSV file: a header row, then rows whose ``target`` column is y
    and whose others are features. y is numbers (``numeric``), text (``categorical``), or for
    ``auto`` text only when none of its values is a number: a column of numbers with a typo
    in it is refused, naming the line."""
    if target_type == "categorical":
        return _read_csv(file, target, limits, text_target=True)
    try:
        return _read_csv(file, target, limits, text_target=False, target_type=target_type)
    except _TextTarget as text:
        if text.after_numbers:
            raise _mixed(target, (text.line, text.cell), None) from None
        file.seek(0)
        return _read_csv(file, target, limits, text_target=True,
                         first_text=(text.line, text.cell))


class _Rows:
    """The rows read so far, in arrays sized from an estimate of the file's rows: a large
    file is then held once, where blocks kept in a list and joined at the end hold it twice
    (and leave the allocator's heap in pieces)."""

    def __init__(self, features: int, estimate: int, text_target: bool) -> None:
        self.x = np.empty((estimate, features))
        self.y: np.ndarray | list[str] = [] if text_target else np.empty(estimate)
        self.count = 0

    def add(self, x: np.ndarray, y: np.ndarray | list[str]) -> None:
        """Append a block's rows."""
        end = self.count + len(x)
        if end > len(self.x):
            capacity = max(end, len(self.x) * 5 // 4)
            self.x = np.concatenate([self.x[: self.count], np.empty((capacity - self.count,
                                                                        self.x.shape[1]))])
            if isinstance(self.y, np.ndarray):
                self.y = np.concatenate([self.y[: self.count], np.empty(capacity - self.count)])
        self.x[self.count : end] = x
        if isinstance(self.y, list):
            self.y.extend(y)
        else:
            self.y[self.count : end] = y
        self.count = end

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """x and y, as many rows as were added."""
        if isinstance(self.y, list):
            return self.x[: self.count], np.array(self.y, dtype=str)
        return self.x[: self.count], self.y[: self.count]


def _read_csv(
    file: IO[bytes], target: str, limits: Limits, *, text_target: bool,
    target_type: TargetType = "auto", first_text: tuple[int, str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    size = file.seek(0, io.SEEK_END)
    file.seek(0)
    text = io.TextIOWrapper(file, encoding="utf-8-sig", newline="")
    try:
        header, first_line = read_header(text)
        if target not in header:
            raise InvalidData(["target"], f"column {target!r} is not in the CSV header {header}")
        if len(header) < 2:
            raise InvalidData(["file"], "CSV needs at least one feature column besides the target")
        column, features = header.index(target), len(header) - 1
        limits.check(["file"], 1, features)
        rows: _Rows | None = None
        for line, block in line_blocks(text, first_line):
            fast = None if text_target else fast_block(block, len(header), column)
            try:
                x, y = (fast if fast is not None else exact_block(
                    block, line, header, column, text_target, target_type, first_text))
            except _TextTarget as found:
                if rows is not None and rows.count:
                    found.after_numbers = True
                raise
            if rows is None:  # the first block's lines tell how many the file holds
                per_line = max(sum(len(b) for b in block) / len(block), 1.0)
                estimate = min(int(size / per_line * 1.05) + len(block), limits.examples + 1)
                rows = _Rows(features, max(estimate, len(x)), text_target)
            limits.check(["file"], rows.count + len(x), features)
            rows.add(x, y)
    finally:
        text.detach()
    if rows is None or rows.count == 0:
        raise InvalidData(["file"], "CSV needs a header row and at least one data row")
    return rows.arrays()
