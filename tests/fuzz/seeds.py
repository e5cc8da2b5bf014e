"""The fuzz target of the upload parsers and the honest files its corpus starts from, shared by
the atheris fuzzer (``tests/fuzz/uploads.py``) and the Hypothesis test."""

from __future__ import annotations

import io

import numpy as np

from service.config import Settings
from service.files.arrays import check_dataset
from service.files.errors import Refused
from service.files.uploads import parse_upload

# Small limits: a shape that passes them is cheap to allocate, and limits are part of it.
SETTINGS = Settings(max_examples=5000, max_features=16, max_values=20000)
KINDS = (("d.csv", "text/csv"), ("d.npy", None), ("d.npz", None), ("d.bin", None))
TARGETS = ("y", "x", "label", "")


def one_upload(data: bytes) -> None:
    """Parse ``data`` as an upload: its first byte picks the kind and the target column, the
    rest is the file. Refusals (4xx) are fine; anything else raised is a finding."""
    if not data:
        return
    choice = data[0]
    name, content_type = KINDS[choice % len(KINDS)]
    target = TARGETS[(choice // len(KINDS)) % len(TARGETS)]
    try:
        x, y = parse_upload(name, content_type, io.BytesIO(data[1:]), target, SETTINGS)
        check_dataset(x, y, SETTINGS, (["file"], ["file", target]))
    except Refused as refusal:
        assert 400 <= refusal.status < 500


def seeds() -> dict[str, bytes]:
    """Honest files of each kind (with their kind byte), for a corpus to start from."""
    npy, npz, stored = io.BytesIO(), io.BytesIO(), io.BytesIO()
    np.save(npy, np.arange(12.0).reshape(4, 3))
    np.savez_compressed(npz, x=np.arange(6, dtype=np.int32).reshape(3, 2), y=np.ones(3))
    np.savez(stored, x=np.asfortranarray(np.arange(6.0).reshape(3, 2)), y=np.ones(3, ">f4"))
    return {
        "csv": bytes([0]) + b"a,b,y\n1,2,3\n4.5,-6e3,7\n\n8,9,10\n",
        "csv-quoted": bytes([0]) + b'"a","y"\n"1",2\n3,"4"\n',
        "csv-text-target": bytes([0]) + b"a,y\n1,setosa\n2,virginica\n",
        "npy": bytes([1]) + npy.getvalue(),
        "npz": bytes([2]) + npz.getvalue(),
        "npz-stored": bytes([2]) + stored.getvalue(),
    }
