"""Hostile uploads for tests: zip bombs, lying headers, archives no honest tool writes."""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

DEFLATED, STORED = zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED


def npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    """An ``.npy`` header declaring ``shape`` of ``descr``, whatever follows it."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def npy(array: np.ndarray) -> bytes:
    """An honest ``.npy`` file of ``array``."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def zip_archive(members: list[tuple[str, bytes, int, int, int, int]]) -> bytes:
    """A zip written by hand, so it can say anything: each member is (name, stored bytes,
    method, crc, declared inflated size, flag bits)."""
    local, central = io.BytesIO(), io.BytesIO()
    for name, data, method, crc, size, flags in members:
        offset = local.tell()
        encoded = name.encode()
        local.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, flags, method, 0, 0x21, crc,
                                len(data), size, len(encoded), 0) + encoded + data)
        central.write(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, flags, method,
                                  0, 0x21, crc, len(data), size, len(encoded), 0, 0, 0, 0, 0,
                                  offset) + encoded)
    directory = central.getvalue()
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members),
                      len(directory), local.tell(), 0)
    return local.getvalue() + directory + end


def zeros_bomb(path: Path, mebibytes: int = 2048) -> Path:
    """An ``.npz`` whose ``x.npy`` inflates to ``mebibytes`` MiB of zeros (2 GiB: a 2 MB
    file) next to a small ``y``. The deflate stream repeats one fully flushed block of a MiB
    of zeros, so it takes milliseconds to write."""
    block_size = 1 << 20
    header = npy_header((mebibytes * block_size // 8,))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(bytes(block_size)) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.flush(zlib.Z_FINISH)
    crc = _crc_combine(zlib.crc32(header), _zeros_crc(mebibytes, block_size),
                       mebibytes * block_size)
    y = npy(np.zeros(10))
    path.write_bytes(zip_archive([
        ("x.npy", head + block * mebibytes + tail, DEFLATED, crc,
         len(header) + mebibytes * block_size, 0),
        ("y.npy", y, STORED, zlib.crc32(y), len(y), 0),
    ]))
    return path


def _zeros_crc(blocks: int, block_size: int) -> int:
    """crc32 of ``blocks * block_size`` zero bytes, by doubling (no need to hash 2 GiB)."""
    crc, length, unit, unit_length = 0, 0, zlib.crc32(bytes(block_size)), block_size
    while blocks:
        if blocks & 1:
            crc, length = _crc_combine(crc, unit, unit_length), length + unit_length
        unit, unit_length = _crc_combine(unit, unit, unit_length), unit_length * 2
        blocks >>= 1
    return crc


def _gf2_times(matrix: list[int], vector: int) -> int:
    total, row = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[row]
        vector >>= 1
        row += 1
    return total


def _crc_combine(crc1: int, crc2: int, length2: int) -> int:
    """crc32(a + b) from crc32(a), crc32(b) and len(b): zlib's crc32_combine."""
    odd = [0xEDB88320] + [1 << n for n in range(31)]
    even = [_gf2_times(odd, odd[n]) for n in range(32)]
    odd = [_gf2_times(even, even[n]) for n in range(32)]
    while length2:
        even = [_gf2_times(odd, odd[n]) for n in range(32)]
        if length2 & 1:
            crc1 = _gf2_times(even, crc1)
        length2 >>= 1
        if not length2:
            break
        odd = [_gf2_times(even, even[n]) for n in range(32)]
        if length2 & 1:
            crc1 = _gf2_times(odd, crc1)
        length2 >>= 1
    return crc1 ^ crc2


def honest_npz(**arrays: np.ndarray) -> bytes:
    """``np.savez`` of ``arrays``."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def patched_member(archive: bytes, name: str, *, method: int | None = None,
                   flags: int | None = None) -> bytes:
    """``archive`` with member ``name``'s compression method or flag bits changed in both its
    local and its central header."""
    data = bytearray(archive)
    # signature: offsets of the flag bits, the method, the name's length and the name
    layouts = {b"PK\x03\x04": (6, 8, 26, 30), b"PK\x01\x02": (8, 10, 28, 46)}
    for signature, (flag_at, method_at, length_at, name_at) in layouts.items():
        at = data.find(signature)
        while at >= 0:
            length = struct.unpack_from("<H", data, at + length_at)[0]
            if bytes(data[at + name_at : at + name_at + length]) == name.encode():
                if method is not None:
                    struct.pack_into("<H", data, at + method_at, method)
                if flags is not None:
                    struct.pack_into("<H", data, at + flag_at, flags)
            at = data.find(signature, at + 4)
    return bytes(data)


class Sentinel:
    """Unpickling this touches a file: proof that something was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def pickle_bomb(marker: Path) -> bytes:
    """A pickle that creates ``marker`` when it is loaded."""
    return pickle.dumps(Sentinel(str(marker)))


def npz_with_members(**members: bytes) -> bytes:
    """A zip of raw members (names as given), stored."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# ------------------------------------------------------------------ model files

MODEL_TAG = "tapeline.model/1"


def safetensors_file(tensors: dict[str, tuple[str, list[int], bytes]],
                     metadata: dict[str, str] | None = None) -> bytes:
    """A safetensors file written by hand, so it can say anything: each tensor is (dtype,
    shape, data), laid out one after the other."""
    header: dict[str, object] = {}
    data, offset = [], 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [offset, offset + len(raw)]}
        data.append(raw)
        offset += len(raw)
    if metadata is not None:
        header["__metadata__"] = metadata
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + b"".join(data)


def linear_metadata(features: int = 1, **provenance: object) -> dict[str, str]:
    """The metadata of a linear model's safetensors export."""
    return {"format": MODEL_TAG, "kind": "linear", "config": json.dumps({"features": features}),
            "provenance": json.dumps(provenance)}


def unknown_name_safetensors(mebibytes: int) -> bytes:
    """A linear model's file whose one large tensor has a name the kind does not have: its
    ``mebibytes`` MiB of float32 must never be widened to be refused."""
    raw = bytes(mebibytes << 20)
    return safetensors_file({"W": ("F64", [1], bytes(8)), "b": ("F64", [], bytes(8)),
                             "surplus": ("F32", [len(raw) // 4], raw)}, linear_metadata())


def tiny_tensors_safetensors(count: int) -> bytes:
    """A safetensors file whose header lists ``count`` empty tensors."""
    tensors = {f"t{i}": ("F64", [0], b"") for i in range(count)}
    return safetensors_file(tensors, linear_metadata())


def json_model(params: object, kind: str = "linear", config: dict[str, object] | None = None,
               provenance: dict[str, object] | None = None) -> bytes:
    """A JSON model file (``ensure_ascii``: lone surrogates travel as escapes)."""
    return json.dumps({"format": MODEL_TAG, "kind": kind, "config": config or {"features": 1},
                       "params": params, "provenance": provenance or {}}).encode()


def json_numbers(count: int) -> bytes:
    """A JSON model file whose W is a list of ``count`` numbers (written without building
    them)."""
    head = b'{"format": "tapeline.model/1", "kind": "linear", "config": {"features": 1}, '
    return head + b'"params": {"b": 0, "W": [' + b"0," * (count - 1) + b"0]}}"
