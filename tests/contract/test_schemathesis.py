"""Schemathesis runs every operation with generated valid and invalid inputs against a live
server, on SQLite and on PostgreSQL, with all of its checks (see schemathesis.toml). The
server requires API keys; Schemathesis sends an admin key of its own tenant (not tenant
`admin`, so the quotas it may set and the keys it may revoke are only its own)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.contract.conftest import BIN, ROOT, operation_ids
from tests.support.ci import IN_CI
from tests.support.servers import sqlite_url, start_server

pytestmark = [pytest.mark.live, pytest.mark.slow, pytest.mark.timeout(600)]

CONFIG = ROOT / "tests" / "contract" / "schemathesis.toml"
# Small limits keep generated datasets and runs quick; the spec the server serves states them,
# so Schemathesis generates within them (the committed spec is the same code at the defaults).
LIMITS = {
    "TAPELINE_MAX_EPOCHS": "10",
    "TAPELINE_MAX_EXAMPLES": "1000",
    "TAPELINE_MAX_FEATURES": "8",
    "TAPELINE_MAX_VALUES": "2000",
    "TAPELINE_MAX_PAGE_SIZE": "50",
    "TAPELINE_MAX_PARAMS": "5000",
    "TAPELINE_MAX_CLASSES": "10",
    "TAPELINE_MAX_HIDDEN_LAYERS": "4",
    "TAPELINE_MAX_LAYER_WIDTH": "64",
    "TAPELINE_MAX_WAIT_SECONDS": "1",
    "TAPELINE_WORKERS": "1",
    "TAPELINE_SSE_PING_SECONDS": "0.5",
    "TAPELINE_WEBHOOK_TIMEOUT_SECONDS": "2",
}
# Keys required; rate limits far above what two Schemathesis workers send.
KEYS = {
    "TAPELINE_AUTH": "required",
    "TAPELINE_BOOTSTRAP_ADMIN_KEY": "tl_" + "F" * 43,
    "TAPELINE_TENANT_RATE_LIMIT": "100000/second",
}
# CI fuzzes with a fixed seed so a red build reproduces; elsewhere each run explores anew.
SEED = os.environ.get("TAPELINE_FUZZ_SEED", "20240611" if IN_CI else "")


def fuzz(database_url: str, folder: Path) -> None:
    """Serve on ``database_url`` and run Schemathesis against it; fail with its report."""
    server = start_server(database_url, folder / "server.log", **LIMITS, **KEYS)
    try:
        admin = {"Authorization": f"Bearer {KEYS['TAPELINE_BOOTSTRAP_ADMIN_KEY']}"}
        made = httpx.post(f"{server.url}/v1/keys", json={"tenant": "fuzz", "scopes": ["admin"]},
                          headers=admin)
        assert made.status_code == 201, made.text
        command = [BIN / "st", "--config-file", CONFIG, "--no-color", "run",
                   f"{server.url}/openapi.json", "--workers", "2",
                   "--header", f"Authorization: Bearer {made.json()['key']}"]
        if SEED:
            command += ["--seed", SEED]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=540,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        server.stop()
    report = result.stdout + result.stderr
    assert result.returncode == 0, f"Schemathesis found problems:\n{report[-30000:]}"
    total = len(operation_ids())
    assert re.search(rf"Selected: {total}/{total}\s+Tested: {total}\b", report), report
    # Errors inside a stream (after its 200 went out) or in a training run reach only the log.
    errors = [line for line in (folder / "server.log").read_text().splitlines()
              if '"level": "error"' in line]
    assert not errors, "the server logged errors:\n" + "\n".join(errors)[-30000:]


def test_fuzz_on_sqlite(tmp_path: Path) -> None:
    fuzz(sqlite_url(tmp_path), tmp_path)


@pytest.mark.postgres
def test_fuzz_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    fuzz(postgres_url, tmp_path)
