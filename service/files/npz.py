"""Reading ``.npz`` archives (a zip of ``.npy`` arrays) as datasets: the archive's directory
and each member's declared size are judged before zipfile parses or inflates anything, and a
member never inflates past its declared size."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from typing import IO

import numpy as np

from service.files.errors import InvalidData, Loc
from service.files.limits import Limits
from service.files.npy import MAX_NPY_HEADER, NpyHeader, read_npy_data, read_npy_header

# An .npz holds a few arrays; a directory this large is refused before it is parsed.
MAX_ZIP_MEMBERS = 64
MAX_ZIP_DIRECTORY = 1 << 20
# Members over 1 MiB that claim to inflate more than this many times are refused: a real
# array compresses far less, a bomb far more.
MAX_INFLATION = 250
INFLATION_FLOOR = 1 << 20
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}


def _zip_directory_size(file: IO[bytes]) -> tuple[int, int]:
    """Entries and directory bytes the end-of-central-directory record declares, read before
    zipfile parses (and allocates for) the directory."""
    size = file.seek(0, io.SEEK_END)
    tail_size = min(size, 22 + 0xFFFF)
    file.seek(size - tail_size)
    tail = file.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise InvalidData(["file"], "not a readable .npz archive: no zip directory found")
    if at >= 20 and tail[at - 20 : at - 16] == b"PK\x06\x07":
        raise InvalidData(["file"], "zip64 archives are not supported (an upload is far smaller)")
    entries, directory_bytes = struct.unpack("<HI", tail[at + 10 : at + 16])
    return entries, directory_bytes


def _check_member(info: zipfile.ZipInfo, loc: Loc, limit_bytes: int) -> None:
    if info.flag_bits & 0x1:
        raise InvalidData(loc, "is encrypted")
    if info.compress_type not in ZIP_METHODS:
        raise InvalidData(
            loc, f"uses zip compression method {info.compress_type}; only stored and deflate"
        )
    if info.file_size > limit_bytes:
        raise InvalidData(
            loc, f"declares {info.file_size} bytes, more than a dataset within the limits needs"
        )
    if info.file_size > INFLATION_FLOOR and info.file_size > MAX_INFLATION * info.compress_size:
        raise InvalidData(
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
        raise InvalidData(
            loc,
            f"its zip entry declares {info.file_size} bytes but its .npy header "
            f"describes {header_bytes + header.nbytes}",
        )
    return stream, header


def read_npz_dataset(
    file: IO[bytes], target: str, limits: Limits
) -> tuple[np.ndarray, np.ndarray]:
    """x and y of an uploaded ``.npz`` archive: the array ``target`` is y, and ``x`` (or the one
    other array) holds the features."""
    entries, directory_bytes = _zip_directory_size(file)
    if entries > MAX_ZIP_MEMBERS or directory_bytes > MAX_ZIP_DIRECTORY:
        raise InvalidData(["file"],
                          f"the archive lists {entries} members; at most {MAX_ZIP_MEMBERS}")
    file.seek(0)
    try:
        with zipfile.ZipFile(file) as archive:
            return _read_npz(archive, target, limits)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, struct.error,
            NotImplementedError, RuntimeError, UnicodeDecodeError, OverflowError) as error:
        # zipfile's own refusals (a bad local header, a wrong CRC, a truncated stream)
        raise InvalidData(["file"], "not a readable .npz archive: it is damaged") from error


def _read_npz(
    archive: zipfile.ZipFile, target: str, limits: Limits
) -> tuple[np.ndarray, np.ndarray]:
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise InvalidData(["file", info.filename], "is not an .npy array (all an .npz holds)")
        key = info.filename[: -len(".npy")]
        if key in members:
            raise InvalidData(["file", key], "appears twice in the archive")
        members[key] = info
    keys = list(members)
    if target not in members:
        raise InvalidData(["target"], f"key {target!r} is not in the archive (keys: {keys})")
    others = [k for k in keys if k != target]
    x_key = "x" if "x" in others else (others[0] if len(others) == 1 else None)
    if x_key is None:
        raise InvalidData(["file"], f"archive needs an 'x' array besides {target!r} (keys: {keys})")
    limit_bytes = MAX_NPY_HEADER + 64 + 8 * max(limits.values, limits.examples)
    for key in (x_key, target):
        _check_member(members[key], ["file", key], limit_bytes)
    x_stream, x_header = _open_member(archive, members[x_key], ["file", x_key])
    y_stream, y_header = _open_member(archive, members[target], ["file", target])
    if len(x_header.shape) not in (1, 2):
        raise InvalidData(["file", x_key], f"must be 1-D or 2-D, got shape {list(x_header.shape)}")
    if len(y_header.shape) != 1:
        raise InvalidData(
            ["file", target], f"y must be a flat list of numbers, got shape {list(y_header.shape)}"
        )
    examples = x_header.shape[0]
    limits.check(["file", x_key], examples, x_header.shape[1] if len(x_header.shape) == 2 else 1)
    if y_header.shape[0] != examples:
        raise InvalidData(["file", target],
                          f"x has {examples} examples but y has {y_header.shape[0]}")
    x = read_npy_data(x_stream, x_header, ["file", x_key])
    y = read_npy_data(y_stream, y_header, ["file", target])
    return (x.reshape(-1, 1) if x.ndim == 1 else x), y
