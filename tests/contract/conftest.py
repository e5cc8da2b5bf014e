"""Fixtures of the contract tests: clients generated from the committed spec."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import LiveServer

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "openapi" / "openapi.json"
BIN = Path(sys.executable).parent
CLIENT_PACKAGE = "tapeline_client"


def operation_ids() -> list[str]:
    """Every operationId of the committed spec."""
    spec = json.loads(SPEC.read_text())
    return [op["operationId"] for path in spec["paths"].values() for op in path.values()]


def generate_python_client(folder: Path, spec: Path = SPEC) -> Path:
    """Generate the client package from the committed spec (or ``spec``) into ``folder``, the
    way ``make client`` does (its enums keep a value they do not know: see
    openapi/client-templates), failing on any generator warning; return the package's
    folder."""
    package = folder / CLIENT_PACKAGE
    result = subprocess.run(
        [BIN / "openapi-python-client", "generate", "--path", spec, "--config",
         ROOT / "openapi" / "client.yaml", "--custom-template-path",
         ROOT / "openapi" / "client-templates", "--fail-on-warning",
         "--meta", "none", "--output-path", package, "--overwrite"],
        capture_output=True, text=True, timeout=120, cwd=folder,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert result.returncode == 0, f"generator failed:\n{result.stdout}\n{result.stderr}"
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    return package


@pytest.fixture(scope="session")
def python_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the freshly generated ``tapeline_client`` package (for PYTHONPATH)."""
    folder = tmp_path_factory.mktemp("python-client")
    generate_python_client(folder)
    return folder


@pytest.fixture(scope="module")
def client(python_client: Path, live_server: LiveServer) -> Iterator[Any]:
    """The generated package's ``Client`` for the live server."""
    sys.path.insert(0, str(python_client))
    try:
        package = importlib.import_module(CLIENT_PACKAGE)
        with package.Client(base_url=live_server.url, raise_on_unexpected_status=True,
                            timeout=httpx.Timeout(60.0)) as api:
            yield api
    finally:
        sys.path.remove(str(python_client))
