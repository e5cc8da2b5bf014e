"""Whether the tests run in CI (``CI=true``), and what a missing server or tool means there:
in CI it fails the test loudly, elsewhere it skips the test with the reason."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> NoReturn:
    """Fail the test in CI, where everything it needs must be there; skip it elsewhere."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)
