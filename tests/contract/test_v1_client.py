"""A client generated from the v1 spec (tests/fixtures/openapi_v1.json, the spec of commit
3744ea8) keeps working unchanged against this server (v1_client_workflow.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.contract.conftest import generate_python_client
from tests.support.servers import LiveServer

pytestmark = pytest.mark.live

V1_SPEC = Path(__file__).parents[1] / "fixtures" / "openapi_v1.json"


def test_a_v1_generated_client_keeps_working(live_server: LiveServer, tmp_path: Path) -> None:
    generate_python_client(tmp_path, V1_SPEC)
    result = subprocess.run(
        [sys.executable, Path(__file__).with_name("v1_client_workflow.py"), live_server.url],
        capture_output=True, text=True, timeout=180,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "v1 client: ok"
