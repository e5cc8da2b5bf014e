"""Run status values may be added (the spec says so): clients generated from a spec written
before `paused` existed (tests/fixtures/openapi_v1.json) list and read a paused run without
raising. The Python client, generated as `make client` does (openapi/client-templates keeps an
enum value it does not know), and a TypeScript script typed by openapi-typescript from the same
old spec; and the client of the committed spec knows `paused`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.contract.conftest import ROOT, generate_python_client
from tests.contract.test_typescript import GENERATOR_FLAGS, HERE, node_tools, run
from tests.support.servers import LiveServer

pytestmark = pytest.mark.live

V1_SPEC = Path(__file__).parents[1] / "fixtures" / "openapi_v1.json"
__all__ = ["node_tools"]  # a fixture of this module too

LIST_AND_GET = """
import sys
from tapeline_client import Client
from tapeline_client.api.runs import runs_get, runs_list

with Client(base_url=sys.argv[1], raise_on_unexpected_status=True) as client:
    page = runs_list.sync(sys.argv[2], client=client)
    run = runs_get.sync(page.items[0].id, client=client)
    print(page.items[0].status.value, run.status.value, run.status == "paused")
"""


@pytest.fixture(scope="module")
def paused_model(live_server: LiveServer) -> str:
    """The id of a model whose one run is paused."""
    with httpx.Client(base_url=live_server.url, timeout=60) as api:
        dataset = api.post("/v1/datasets/synthetic", json={"num_examples": 50}).json()
        model = api.post("/v1/models").json()
        made = api.post(f"/v1/models/{model['id']}/runs",
                        json={"dataset_id": dataset["id"], "epochs": 100000}).json()
        assert api.post(f"/v1/runs/{made['id']}/pause").status_code == 202
        deadline = time.monotonic() + 60
        while api.get(f"/v1/runs/{made['id']}").json()["status"] != "paused":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        return str(model["id"])


@pytest.mark.parametrize("spec", [V1_SPEC, ROOT / "openapi" / "openapi.json"],
                         ids=["before-paused", "committed"])
def test_a_generated_python_client_reads_a_paused_run(live_server: LiveServer,
                                                      paused_model: str, spec: Path,
                                                      tmp_path: Path) -> None:
    generate_python_client(tmp_path, spec)
    result = subprocess.run([sys.executable, "-c", LIST_AND_GET, live_server.url, paused_model],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == ["paused", "paused", "True"]


def test_a_typescript_client_typed_before_paused_lists_a_paused_run(
        node_tools: Path, live_server: LiveServer, paused_model: str, tmp_path: Path) -> None:
    shutil.copy(HERE / "statuses.ts", tmp_path / "statuses.ts")
    config = json.loads((HERE / "tsconfig.json").read_text())
    (tmp_path / "tsconfig.json").write_text(json.dumps({**config, "files": ["statuses.ts"]}))
    run([node_tools / "openapi-typescript", V1_SPEC, *GENERATOR_FLAGS,
         "--output", tmp_path / "tapeline.ts"], cwd=ROOT)
    types = (tmp_path / "tapeline.ts").read_text()
    assert '"queued"' in types and '"paused"' not in types  # typed before paused existed
    run([node_tools / "tsc", "-p", tmp_path / "tsconfig.json"], cwd=tmp_path)
    answer = run(["node", tmp_path / "out" / "statuses.js", paused_model], cwd=tmp_path,
                 env={**os.environ, "TAPELINE": live_server.url})
    assert answer.stdout.split()[1:] == ["other:", "paused"], answer.stdout
