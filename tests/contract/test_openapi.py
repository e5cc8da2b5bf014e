"""The committed spec is what the code generates, and it follows the conventions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from service.app import create_app

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "openapi" / "openapi.json"


def test_committed_spec_matches_the_code() -> None:
    generated = json.loads(json.dumps(create_app().openapi()))
    assert json.loads(COMMITTED.read_text()) == generated, (
        "openapi/openapi.json is stale: run `make openapi` and commit it")


def test_cli_writes_the_spec_without_a_server(tmp_path: Path) -> None:
    out = tmp_path / "spec.json"
    subprocess.run([sys.executable, "-m", "service.cli", "openapi", "--output", str(out)],
                   check=True, cwd=ROOT, timeout=60)
    assert json.loads(out.read_text()) == json.loads(COMMITTED.read_text())


def test_operation_ids_tags_and_error_answers() -> None:
    spec = json.loads(COMMITTED.read_text())
    seen = set()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert len(operation["tags"]) == 1, (method, path)
            assert operation["operationId"].startswith(operation["tags"][0] + "-")
            assert operation["operationId"] not in seen
            seen.add(operation["operationId"])
            assert operation.get("summary"), (method, path)
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert list(answer["content"]) == ["application/problem+json"], (path, status)
    names = spec["components"]["schemas"]
    assert not [n for n in names if n.endswith(("-Input", "-Output"))]
    assert names["LinearSynthetic"]["properties"]["num_examples"]["maximum"] > 0
    assert names["RunCreate"]["properties"]["epochs"]["maximum"] > 0
    events = spec["paths"]["/v1/runs/{run_id}/events"]["get"]["responses"]["200"]["content"]
    assert {"text/event-stream", "application/jsonl"} <= events.keys()
    assert all("itemSchema" in media for media in events.values())
