"""openapi-typescript turns the committed spec into types; a typed script using them compiles
with tsc and runs the tutorial against a live server, keyless and on a server that requires
an API key (sent as a header; node must be present in CI)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.contract.conftest import ROOT, SPEC
from tests.support.node import node_modules
from tests.support.servers import LiveServer, sqlite_url, start_server

pytestmark = pytest.mark.live

HERE = Path(__file__).parent / "typescript"
# Fields with defaults stay optional: the same schemas describe request bodies.
GENERATOR_FLAGS = ["--default-non-nullable", "false"]


def run(command: list[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command; fail the test with its output if it fails."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, **kwargs)
    assert result.returncode == 0, f"{command[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def node_tools() -> Path:
    """node_modules/.bin with the pinned openapi-typescript and tsc (``npm ci`` if needed)."""
    bin_dir = node_modules("the TypeScript contract test") / ".bin"
    assert (bin_dir / "openapi-typescript").exists() and (bin_dir / "tsc").exists()
    return bin_dir


def test_types_generate_compile_and_run(node_tools: Path, live_server: LiveServer,
                                        tmp_path: Path) -> None:
    admin = "tl_" + "T" * 43
    for name in ("tsconfig.json", "tutorial.ts"):
        shutil.copy(HERE / name, tmp_path / name)
    generated = run([node_tools / "openapi-typescript", SPEC, *GENERATOR_FLAGS,
                     "--output", tmp_path / "tapeline.ts"], cwd=ROOT)
    assert "error" not in generated.stderr.lower() and "warn" not in generated.stderr.lower(), (
        generated.stderr)
    types = (tmp_path / "tapeline.ts").read_text()
    for operation in ("datasets-upload", "events-stream", "runs-cancel", "history-model"):
        assert f'"{operation}": {{' in types

    run([node_tools / "tsc", "-p", tmp_path / "tsconfig.json"], cwd=tmp_path)
    answer = run(["node", tmp_path / "out" / "tutorial.js"], cwd=tmp_path,
                 env={**os.environ, "TAPELINE": live_server.url})
    assert answer.stdout.count("ok: ") == 8, answer.stdout
    keyed = start_server(sqlite_url(tmp_path), tmp_path / "server.log",
                         TAPELINE_AUTH="required", TAPELINE_BOOTSTRAP_ADMIN_KEY=admin)
    try:
        made = httpx.post(f"{keyed.url}/v1/keys", json={"tenant": "ts"},
                          headers={"Authorization": f"Bearer {admin}"})
        assert made.status_code == 201, made.text
        answer = run(["node", tmp_path / "out" / "tutorial.js"], cwd=tmp_path,
                     env={**os.environ, "TAPELINE": keyed.url, "TAPELINE_KEY": made.json()["key"]})
        assert answer.stdout.count("ok: ") == 8, answer.stdout
    finally:
        keyed.stop()
