"""The manual builds: ``mkdocs build --strict`` (every page in the nav, every link and anchor
resolved, the Material theme) succeeds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.contract.conftest import ROOT


def test_the_manual_builds_strictly(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = subprocess.run(
        [Path(sys.executable).parent / "mkdocs", "build", "--strict", "--site-dir", site],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr
    assert (site / "index.html").exists() and (site / "development" / "index.html").exists()
