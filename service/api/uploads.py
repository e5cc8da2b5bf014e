"""Reading uploaded datasets (.csv, .npy, .npz) within the limits.

Every upload is judged before its data is read: an ``.npy`` array's shape and dtype come from
its header, a zip member's size from the archive's directory, and both are checked against the
limits before anything is allocated or inflated; a member never inflates past its declared
size. Nothing is ever unpickled. A CSV is read a block of lines at a time (NumPy's C parser,
with an exact pass over a block only to name the line and column at fault) and stops as soon
as it passes a limit. Every problem is a 422 :class:`ProblemError` naming the file, member,
line or column at fault; anything else is a 415.
"""

from __future__ import annotations

import csv
import io
import math
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from service.api.problems import ProblemError, invalid
from service.config import Settings

Loc = list[str | int]

# numpy's own bound on an .npy header (np.load's max_header_size).
MAX_NPY_HEADER = 10_000
# An .npz holds a few arrays; a directory this large is refused before it is parsed.
MAX_ZIP_MEMBERS = 64
MAX_ZIP_DIRECTORY = 1 << 20
# Members over 1 MiB that claim to inflate more than this many times are refused: a real
# array compresses far less, a bomb far more.
MAX_INFLATION = 250
INFLATION_FLOOR = 1 << 20
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
# A CSV is parsed this many characters of lines at a time; a header row may be this long.
CSV_BLOCK = 1 << 16
CSV_HEADER = 1 << 20
READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    """The dataset limits an upload is judged against."""

    examples: int
    features: int
    values: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """The limits in ``settings``."""
        return cls(settings.max_examples, settings.max_features, settings.max_values)

    def check(self, loc: Loc, examples: int, features: int) -> None:
        """422 when (examples x features) passes a limit."""
        if examples > self.examples:
            raise invalid(loc, f"{examples} examples exceed the limit of {self.examples}")
        if features > self.features:
            raise invalid(loc, f"{features} features exceed the limit of {self.features}")
        if examples * features > self.values:
            raise invalid(
                loc, f"{examples * features} values exceed the limit of {self.values}"
            )


def parse_upload(
    filename: str, content_type: str | None, file: IO[bytes], target: str, settings: Settings
) -> tuple[np.ndarray, np.ndarray]:
    """x (examples, features) and y (examples,) from an uploaded ``.csv``, ``.npy`` or ``.npz``
    file; 415 for anything else. y is text (a ``str`` array) when a CSV target column holds
    values that are not numbers; features are always numbers."""
    name = filename.lower()
    limits = Limits.of(settings)
    file.seek(0)
    if name.endswith(".csv") or content_type in ("text/csv", "application/csv"):
        return _from_csv(file, target, limits)
    if name.endswith(".npy"):
        return _from_npy(file, limits)
    if name.endswith(".npz"):
        return _from_npz(file, target, limits)
    raise ProblemError(
        415, f"unsupported file {filename!r}: upload a .csv (with a header row), .npy or .npz file"
    )


# ------------------------------------------------------------------------- npy


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
            raise invalid(loc, f"unsupported .npy format version {version[0]}.{version[1]}")
    except ProblemError:
        raise
    except Exception as error:  # any malformed header: numpy's parser raises many kinds
        raise invalid(loc, "not a readable .npy array: its header is malformed") from error
    if dtype.hasobject:
        raise invalid(loc, "holds Python objects; only arrays of numbers are read (never pickles)")
    if dtype.names is not None or dtype.subdtype is not None or dtype.kind not in "biuf":
        raise invalid(loc, f"expected a numeric array, got dtype {dtype.str!r}")
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
            raise invalid(loc, f"ends after {filled} of the {len(buffer)} bytes it declares")
        filled += got
    if stream.read(1):
        raise invalid(loc, "holds more data than its header declares")
    if header.fortran_order:
        array = flat.reshape(header.shape[::-1]).transpose()
    else:
        array = flat.reshape(header.shape)
    if header.dtype.kind != "f":
        return array.astype(np.float64)
    return array.astype(header.dtype.newbyteorder("="), copy=False)


def _from_npy(file: IO[bytes], limits: Limits) -> tuple[np.ndarray, np.ndarray]:
    header = read_npy_header(file, ["file"])
    if len(header.shape) != 2 or header.shape[1] < 2:
        raise invalid(
            ["file"],
            f".npy must be a 2-D array whose last column is y, got shape {list(header.shape)}",
        )
    limits.check(["file"], header.shape[0], header.shape[1] - 1)
    start = file.tell()
    held = file.seek(0, io.SEEK_END) - start
    if held != header.nbytes:
        raise invalid(
            ["file"], f"its header describes {header.nbytes} bytes of data but it holds {held}"
        )
    file.seek(start)
    array = read_npy_data(file, header, ["file"])
    return array[:, :-1], array[:, -1]


# ------------------------------------------------------------------------- npz


def _zip_directory_size(file: IO[bytes]) -> tuple[int, int]:
    """Entries and directory bytes the end-of-central-directory record declares, read before
    zipfile parses (and allocates for) the directory."""
    size = file.seek(0, io.SEEK_END)
    tail_size = min(size, 22 + 0xFFFF)
    file.seek(size - tail_size)
    tail = file.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise invalid(["file"], "not a readable .npz archive: no zip directory found")
    if at >= 20 and tail[at - 20 : at - 16] == b"PK\x06\x07":
        raise invalid(["file"], "zip64 archives are not supported (an upload is far smaller)")
    entries, directory_bytes = struct.unpack("<HI", tail[at + 10 : at + 16])
    return entries, directory_bytes


def _check_member(info: zipfile.ZipInfo, loc: Loc, limit_bytes: int) -> None:
    if info.flag_bits & 0x1:
        raise invalid(loc, "is encrypted")
    if info.compress_type not in ZIP_METHODS:
        raise invalid(
            loc, f"uses zip compression method {info.compress_type}; only stored and deflate"
        )
    if info.file_size > limit_bytes:
        raise invalid(
            loc, f"declares {info.file_size} bytes, more than a dataset within the limits needs"
        )
    if info.file_size > INFLATION_FLOOR and info.file_size > MAX_INFLATION * info.compress_size:
        raise invalid(
            loc,
            f"would inflate {info.file_size / max(info.compress_size, 1):.0f} times "
            f"(at most {MAX_INFLATION} is read; save it with np.savez)",
        )


def _open_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, loc: Loc
) -> tuple[IO[bytes], NpyHeader]:
    stream = archive.open(info)
    header = read_npy_header(stream, loc)
    header_bytes = stream.tell()
    if info.file_size != header_bytes + header.nbytes:
        raise invalid(
            loc,
            f"its zip entry declares {info.file_size} bytes but its .npy header "
            f"describes {header_bytes + header.nbytes}",
        )
    return stream, header


def _from_npz(file: IO[bytes], target: str, limits: Limits) -> tuple[np.ndarray, np.ndarray]:
    entries, directory_bytes = _zip_directory_size(file)
    if entries > MAX_ZIP_MEMBERS or directory_bytes > MAX_ZIP_DIRECTORY:
        raise invalid(["file"], f"the archive lists {entries} members; at most {MAX_ZIP_MEMBERS}")
    file.seek(0)
    try:
        with zipfile.ZipFile(file) as archive:
            return _read_npz(archive, target, limits)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, struct.error,
            NotImplementedError, RuntimeError, UnicodeDecodeError, OverflowError) as error:
        # zipfile's own refusals (a bad local header, a wrong CRC, a truncated stream)
        raise invalid(["file"], "not a readable .npz archive: it is damaged") from error


def _read_npz(
    archive: zipfile.ZipFile, target: str, limits: Limits
) -> tuple[np.ndarray, np.ndarray]:
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise invalid(["file", info.filename], "is not an .npy array (all an .npz holds)")
        key = info.filename[: -len(".npy")]
        if key in members:
            raise invalid(["file", key], "appears twice in the archive")
        members[key] = info
    keys = list(members)
    if target not in members:
        raise invalid(["target"], f"key {target!r} is not in the archive (keys: {keys})")
    others = [k for k in keys if k != target]
    x_key = "x" if "x" in others else (others[0] if len(others) == 1 else None)
    if x_key is None:
        raise invalid(["file"], f"archive needs an 'x' array besides {target!r} (keys: {keys})")
    limit_bytes = MAX_NPY_HEADER + 64 + 8 * max(limits.values, limits.examples)
    for key in (x_key, target):
        _check_member(members[key], ["file", key], limit_bytes)
    x_stream, x_header = _open_member(archive, members[x_key], ["file", x_key])
    y_stream, y_header = _open_member(archive, members[target], ["file", target])
    if len(x_header.shape) not in (1, 2):
        raise invalid(["file", x_key], f"must be 1-D or 2-D, got shape {list(x_header.shape)}")
    if len(y_header.shape) != 1:
        raise invalid(
            ["file", target], f"y must be a flat list of numbers, got shape {list(y_header.shape)}"
        )
    examples = x_header.shape[0]
    limits.check(["file", x_key], examples, x_header.shape[1] if len(x_header.shape) == 2 else 1)
    if y_header.shape[0] != examples:
        raise invalid(["file", target], f"x has {examples} examples but y has {y_header.shape[0]}")
    x = read_npy_data(x_stream, x_header, ["file", x_key])
    y = read_npy_data(y_stream, y_header, ["file", target])
    return (x.reshape(-1, 1) if x.ndim == 1 else x), y


# ------------------------------------------------------------------------- csv


class _TextTarget(Exception):
    """The target column holds text: read the file again keeping it as strings."""


def _lines(text: IO[str], first_line: int) -> Iterator[tuple[int, list[str]]]:
    """Blocks of lines and the line number of each block's first line."""
    number = first_line
    while True:
        try:
            block = text.readlines(CSV_BLOCK)
        except UnicodeDecodeError as error:
            raise invalid(["file"], "CSV must be UTF-8 text") from error
        if not block:
            return
        yield number, block
        number += len(block)


def _header(text: IO[str]) -> tuple[list[str], int]:
    """The header row (the first line that is not blank) and the number of the line after it."""
    number = 0
    while True:
        try:
            line = text.readline(CSV_HEADER)
        except UnicodeDecodeError as error:
            raise invalid(["file"], "CSV must be UTF-8 text") from error
        number += 1
        if not line:
            raise invalid(["file"], "CSV needs a header row and at least one data row")
        if len(line) >= CSV_HEADER and not line.endswith(("\n", "\r")):
            raise invalid(["file", "line 1"], f"the header is longer than {CSV_HEADER} characters")
        if line.strip():
            break
    try:
        [header] = list(csv.reader([line]))
    except (csv.Error, ValueError) as error:
        raise invalid(["file", f"line {number}"], "the header row is not valid CSV") from error
    return [h.strip() for h in header], number + 1


def exact_block(
    block: list[str], first_line: int, header: list[str], column: int | None = None,
    text_target: bool = False,
) -> tuple[np.ndarray, np.ndarray | list[str]]:
    """One block of CSV lines read cell by cell: the features and the target column's values
    (none when ``column`` is None; text when ``text_target``), or a 422 naming the line and
    column at fault. Dataset uploads and batch predictions both read their files with it."""
    rows: list[list[float]] = []
    targets: list[Any] = []
    reader = csv.reader(block)
    try:
        for row in reader:
            line = first_line + reader.line_num - 1
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise invalid(
                    ["file", f"line {line}"], f"has {len(row)} fields, the header has {len(header)}"
                )
            values = []
            for j, cell in enumerate(row):
                if j == column and text_target:
                    targets.append(cell.strip())
                    continue
                try:
                    value = float(cell)
                except ValueError as error:
                    if j == column:
                        raise _TextTarget from error
                    raise invalid(
                        ["file", f"line {line}", header[j]],
                        f"{cell.strip()[:40]!r} is not a number",
                    ) from error
                if not math.isfinite(value):
                    raise invalid(["file", f"line {line}", header[j]], "values must be finite")
                if j == column:
                    targets.append(value)
                else:
                    values.append(value)
            rows.append(values)
    except csv.Error as error:
        line = first_line + reader.line_num - 1
        raise invalid(["file", f"line {line}"], f"is not valid CSV ({error})") from error
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


def _from_csv(file: IO[bytes], target: str, limits: Limits) -> tuple[np.ndarray, np.ndarray]:
    try:
        return _read_csv(file, target, limits, text_target=False)
    except _TextTarget:
        file.seek(0)
        return _read_csv(file, target, limits, text_target=True)


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
    file: IO[bytes], target: str, limits: Limits, *, text_target: bool
) -> tuple[np.ndarray, np.ndarray]:
    size = file.seek(0, io.SEEK_END)
    file.seek(0)
    text = io.TextIOWrapper(file, encoding="utf-8-sig", newline="")
    try:
        header, first_line = _header(text)
        if target not in header:
            raise invalid(["target"], f"column {target!r} is not in the CSV header {header}")
        if len(header) < 2:
            raise invalid(["file"], "CSV needs at least one feature column besides the target")
        column, features = header.index(target), len(header) - 1
        limits.check(["file"], 1, features)
        rows: _Rows | None = None
        for line, block in _lines(text, first_line):
            fast = None if text_target else fast_block(block, len(header), column)
            x, y = (fast if fast is not None
                    else exact_block(block, line, header, column, text_target))
            if rows is None:  # the first block's lines tell how many the file holds
                per_line = max(sum(len(b) for b in block) / len(block), 1.0)
                estimate = min(int(size / per_line * 1.05) + len(block), limits.examples + 1)
                rows = _Rows(features, max(estimate, len(x)), text_target)
            limits.check(["file"], rows.count + len(x), features)
            rows.add(x, y)
    finally:
        text.detach()
    if rows is None or rows.count == 0:
        raise invalid(["file"], "CSV needs a header row and at least one data row")
    return rows.arrays()
