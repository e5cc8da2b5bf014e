"""Both generated clients drive a study (issue 22, point 8): the Python client (generated as
`make client` does) and a TypeScript script typed by openapi-typescript from the committed spec
each create a small grid study against a live server, wait for it to complete and read its
best trial, which is the trial the table says is best."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.contract.conftest import SPEC
from tests.contract.test_typescript import GENERATOR_FLAGS, HERE, node_tools, run
from tests.support.servers import LiveServer
from tests.support.studies import grid_study

pytestmark = pytest.mark.live
__all__ = ["node_tools"]  # a fixture of this module too

POINTS = 4  # learning rate 0.01 or 0.1, hidden [4] or [8]


@pytest.fixture(scope="module")
def moons(live_server: LiveServer) -> str:
    with httpx.Client(base_url=live_server.url, timeout=60) as api:
        answer = api.post("/v1/datasets/synthetic", json={"kind": "moons", "num_examples": 120,
                                                          "noise": 0.2, "seed": 3})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])


def grid(dataset_id: str) -> dict[str, Any]:
    return grid_study(dataset_id, name="client-grid")


def test_the_generated_study_body_keeps_its_space(python_client: Path) -> None:
    sys.path.insert(0, str(python_client))
    try:
        from tapeline_client.models import StudyCreate

        body = grid("ds_x")
        assert StudyCreate.from_dict(body).to_dict()["space"] == body["space"]
    finally:
        sys.path.remove(str(python_client))


def test_the_python_client_drives_a_grid_study(client: Any, moons: str) -> None:
    from tapeline_client.api.studies import studies_create, studies_get, studies_trials
    from tapeline_client.models import Study, StudyCreate, TrialPage

    spec = grid(moons)
    body = StudyCreate.from_dict(spec)
    made = studies_create.sync(client=client, body=body)
    assert isinstance(made, Study) and made.status.value == "running", made
    assert made.max_trials == POINTS
    deadline = time.monotonic() + 180
    study = made
    while study.status.value == "running":
        assert time.monotonic() < deadline, study
        time.sleep(0.2)
        study = studies_get.sync(made.id, client=client)
        assert isinstance(study, Study)
    assert study.status.value == "completed", study
    page = studies_trials.sync(made.id, client=client)
    assert isinstance(page, TrialPage)
    trials = page.items
    assert [t.number for t in trials] == list(range(POINTS))
    assert all(t.status.value == "completed" and t.epochs == 3 for t in trials)
    assert sorted(json.dumps(t.params.to_dict(), sort_keys=True) for t in trials) == sorted(
        json.dumps({"run.optimizer.learning_rate": lr, "model.hidden": hidden}, sort_keys=True)
        for lr in (0.01, 0.1) for hidden in ([4], [8]))
    best = study.best
    assert best is not None and not isinstance(best, type(None))
    top = min(trials, key=lambda t: (t.objective, t.number))
    assert (best.number, best.run_id, best.objective) == (top.number, top.run_id,
                                                          top.objective)
    assert best.params.to_dict() == top.params.to_dict()


def test_a_typescript_script_drives_a_grid_study(node_tools: Path, live_server: LiveServer,
                                                 moons: str, tmp_path: Path) -> None:
    shutil.copy(HERE / "studies.ts", tmp_path / "studies.ts")
    config = json.loads((HERE / "tsconfig.json").read_text())
    (tmp_path / "tsconfig.json").write_text(json.dumps({**config, "files": ["studies.ts"]}))
    run([node_tools / "openapi-typescript", SPEC, *GENERATOR_FLAGS,
         "--output", tmp_path / "tapeline.ts"], cwd=tmp_path)
    run([node_tools / "tsc", "-p", tmp_path / "tsconfig.json"], cwd=tmp_path)
    answer = run(["node", tmp_path / "out" / "studies.js", moons], cwd=tmp_path,
                 env={**os.environ, "TAPELINE": live_server.url})
    assert answer.stdout.count("ok: ") == 4, answer.stdout
