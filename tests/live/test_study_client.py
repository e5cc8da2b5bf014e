"""The terminal client's study commands against a live server: `tapeline study create SPEC`
(the spec posted, a table of every trial and the best so far until the study ends, exit 0
when it completed; a refused spec exits 2 with the problem's words, nothing stored),
`tapeline study watch ID` (an ended study replayed, a cancelled one exits 1) and
`tapeline study best ID --export FORMAT -o FILE` (the best model's file, as the export
endpoint writes it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live.test_runs_client import tapeline
from tests.support.servers import LiveServer

pytestmark = pytest.mark.live

LR = "run.optimizer.learning_rate"


def spec(dataset_id: str, epochs: int = 2) -> dict[str, Any]:
    """A 2 × 2 grid study of tiny moons models."""
    return {
        "name": "cli-grid", "dataset_id": dataset_id,
        "model": {"kind": "mlp", "features": 2, "task": "classification", "classes": 2,
                  "hidden": [4]},
        "run": {"epochs": epochs, "optimizer": {"kind": "adam", "learning_rate": 0.01},
                "batch_size": 16, "validation": {"fraction": 0.25}},
        "space": {LR: {"type": "choice", "values": [0.003, 0.1]},
                  "model.hidden": {"type": "choice", "values": [[2], [8]]}},
        "objective": {"metric": "val_loss", "goal": "minimize"},
        "sampler": {"kind": "grid"}, "concurrency": 2}


@pytest.fixture(scope="module")
def dataset(live_server: LiveServer) -> str:
    answer = httpx.post(f"{live_server.url}/v1/datasets/synthetic", json={
        "kind": "moons", "num_examples": 80, "noise": 0.2, "seed": 3})
    return answer.json()["id"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def created(live_server: LiveServer, dataset: str,
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A study made and followed by `tapeline study create`."""
    folder = tmp_path_factory.mktemp("study")
    (folder / "spec.json").write_text(json.dumps(spec(dataset)))
    done = tapeline(live_server, folder, "study", "create", "spec.json")
    studies = httpx.get(f"{live_server.url}/v1/studies").json()["items"]
    return {"folder": folder, "done": done, "study": studies[-1]}


def test_study_create_follows_the_study_to_its_end(live_server: LiveServer,
                                                   created: dict[str, Any]) -> None:
    done, study = created["done"], created["study"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert study["status"] == "completed" and study["name"] == "cli-grid"
    out = done.stdout
    assert f"study {study['id']}: 4 trials, grid sampler" in out
    assert "completed: 4 completed" in out
    trials = httpx.get(f"{live_server.url}/v1/studies/{study['id']}/trials").json()["items"]
    for trial in trials:  # every trial's row: its number (the best marked), status, run
        mark = " *" if trial["number"] == study["best"]["number"] else ""
        row = next(line for line in out.splitlines() if trial["run_id"] in line)
        assert f"{trial['number']}{mark} " in row and "completed" in row
    best = study["best"]
    assert (f"best so far: trial {best['number']}, val_loss {best['objective']:.6g}, "
            f"{LR}={best['params'][LR]:.6g}") in out


def test_study_watch_replays_an_ended_study(live_server: LiveServer,
                                            created: dict[str, Any]) -> None:
    study = created["study"]
    done = tapeline(live_server, created["folder"], "study", "watch", study["id"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "completed: 4 completed" in done.stdout
    assert f"best so far: trial {study['best']['number']}" in done.stdout


def test_study_watch_of_a_cancelled_study_exits_1(live_server: LiveServer, dataset: str,
                                                  tmp_path: Path) -> None:
    made = httpx.post(f"{live_server.url}/v1/studies", json=spec(dataset, epochs=200)).json()
    cancelled = httpx.post(f"{live_server.url}/v1/studies/{made['id']}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    done = tapeline(live_server, tmp_path, "study", "watch", made["id"])
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"study {made['id']} ended cancelled" in done.stdout


def test_study_best_exports_the_best_model(live_server: LiveServer,
                                           created: dict[str, Any]) -> None:
    study, folder = created["study"], created["folder"]
    best = study["best"]
    done = tapeline(live_server, folder, "study", "best", study["id"], "--export", "onnx",
                    "-o", "best.onnx")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"trial {best['number']}: val_loss {best['objective']:.6g} (minimize)" in done.stdout
    assert f"model {best['model_id']}" in done.stdout
    written = (folder / "best.onnx").read_bytes()
    exported = httpx.get(f"{live_server.url}/v1/models/{best['model_id']}/export",
                         params={"format": "onnx"}).content
    assert written == exported and len(written) > 0
    plain = tapeline(live_server, folder, "study", "best", study["id"])
    assert plain.returncode == 0 and f"  {LR} = " in plain.stdout


def test_refusals_exit_2_with_the_problems_words(live_server: LiveServer, dataset: str,
                                                 tmp_path: Path) -> None:
    before = len(httpx.get(f"{live_server.url}/v1/studies").json()["items"])
    bad = spec(dataset)
    bad["space"][LR] = {"type": "float", "low": 0.1, "high": 0.001}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    refused = tapeline(live_server, tmp_path, "study", "create", "bad.json")
    assert refused.returncode == 2
    assert refused.stderr.startswith("tapeline: ") and LR in refused.stderr
    assert "(422)" in refused.stderr
    (tmp_path / "broken.json").write_text("{not json")
    broken = tapeline(live_server, tmp_path, "study", "create", "broken.json")
    assert broken.returncode == 2 and "broken.json is not JSON" in broken.stderr
    missing = tapeline(live_server, tmp_path, "study", "create", "absent.json")
    assert missing.returncode == 2 and "cannot read absent.json" in missing.stderr
    unknown = tapeline(live_server, tmp_path, "study", "watch", "st_unknown")
    assert unknown.returncode == 2 and "(404)" in unknown.stderr
    assert len(httpx.get(f"{live_server.url}/v1/studies").json()["items"]) == before
