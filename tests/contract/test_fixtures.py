"""The reference fixtures in tests/fixtures/ are copies of the shared ones (``shared/fixtures/``
beside the clone, where CI keeps them): byte for byte, by sha256, so a reference run changed
or added there cannot drift from the one the tests read."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.conftest import ROOT

SHARED = ROOT.parent / "shared" / "fixtures"
OURS = ROOT / "tests" / "fixtures"


def sha256(path: Path) -> str:
    """The file's SHA-256, hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_each_shared_fixture_has_an_identical_copy() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"no shared fixtures at {SHARED} to compare with")
    shared = sorted(path for path in SHARED.iterdir() if path.is_file())
    assert shared, f"{SHARED} holds no file"
    differ: dict[str, str] = {}
    for path in shared:
        copy = OURS / path.name
        if not copy.is_file():
            differ[path.name] = "missing"
        elif sha256(copy) != sha256(path):
            differ[path.name] = "differs"
    assert not differ, f"tests/fixtures/ is not a copy of {SHARED}: {differ}"
