"""The terminal client's experiment commands against a live server: `tapeline train --name
--tag`, `tapeline runs list` (filter, sort, columns, `--json`, a bad filter), `tapeline runs
compare` across models and `tapeline tag`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.servers import ROOT, LiveServer

LR = "params.optimizer.learning_rate"


def tapeline(server: LiveServer, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TAPELINE_URL": server.url, "COLUMNS": "200", "NO_COLOR": "1",
           "PYTHONPATH": str(ROOT)}
    env.pop("TAPELINE_API_KEY", None)
    return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def sweep(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three runs trained by `tapeline train --name --tag`, one model each."""
    folder = tmp_path_factory.mktemp("sweep")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    lines = ["a,b,y", *(f"{p},{q},{3 * p - q + 1}" for p, q in x)]
    (folder / "line.csv").write_text("\n".join(lines) + "\n")
    for lr in ("0.1", "0.05", "0.01"):
        done = tapeline(live_server, folder, "train", "line.csv", "--epochs", "3", "--lr", lr,
                        "--name", f"lr-{lr}", "--tag", "sweep=lr", "--tag", f"lr={lr}")
        assert done.returncode == 0, done.stdout + done.stderr
    with httpx.Client(base_url=live_server.url) as client:
        runs = client.get("/v1/runs", params={"filter": "tags.sweep = 'lr'",
                                              "sort": LR}).json()["items"]
    return {"folder": folder, "runs": runs}


def test_train_names_and_tags_the_run_and_its_model(live_server: LiveServer,
                                                    sweep: dict[str, Any]) -> None:
    runs = sweep["runs"]
    assert [r["name"] for r in runs] == ["lr-0.01", "lr-0.05", "lr-0.1"]
    assert runs[0]["tags"] == {"sweep": "lr", "lr": "0.01"}
    model = httpx.get(f"{live_server.url}/v1/models/{runs[0]['model_id']}").json()
    assert model["name"] == "lr-0.01" and model["tags"] == {"sweep": "lr", "lr": "0.01"}


def test_runs_list_filters_sorts_and_shows_chosen_columns(live_server: LiveServer,
                                                         sweep: dict[str, Any]) -> None:
    shown = tapeline(live_server, sweep["folder"], "runs", "list", "--filter",
                     f"tags.sweep = 'lr' AND {LR} >= 0.05", f"--sort=-{LR}",
                     "--columns", f"{LR},metrics.loss,model.kind,tags.lr")
    assert shown.returncode == 0, shown.stderr
    lines = [line for line in shown.stdout.splitlines() if "lr-0." in line]
    assert [line.split()[1] for line in lines] == ["lr-0.1", "lr-0.05"]
    assert "linear" in lines[0] and "0.1 " in lines[0] and "2 runs" in shown.stdout
    assert LR in shown.stdout and "metrics.loss" in shown.stdout
    as_json = tapeline(live_server, sweep["folder"], "runs", "list", "--filter",
                       "tags.lr = '0.01'", "--json")
    assert [r["name"] for r in json.loads(as_json.stdout)] == ["lr-0.01"]


def test_a_bad_filter_is_refused_naming_the_column(live_server: LiveServer,
                                                   sweep: dict[str, Any]) -> None:
    refused = tapeline(live_server, sweep["folder"], "runs", "list", "--filter",
                       "metrics.vall_loss < 1")
    assert refused.returncode == 2
    assert "did you mean 'metrics.val_loss'?" in refused.stderr
    assert "column 1" in refused.stderr


def test_runs_compare_shows_what_differs(live_server: LiveServer,
                                         sweep: dict[str, Any]) -> None:
    ids = [r["id"] for r in sweep["runs"]]
    shown = tapeline(live_server, sweep["folder"], "runs", "compare", *ids)
    assert shown.returncode == 0, shown.stderr
    rows = {line.split()[1]: line for line in shown.stdout.splitlines()
            if line.startswith("│") and len(line.split()) > 2}
    assert LR in rows and "0.01" in rows[LR] and "0.1" in rows[LR]
    assert "params.epochs" not in rows  # the same in every run
    assert "lr-0.01" in shown.stdout and "fields differ across 3 runs" in shown.stdout
    every = json.loads(tapeline(live_server, sweep["folder"], "runs", "compare", *ids,
                                "--all", "--json").stdout)
    assert "params.epochs" in every["fields"] and LR in every["differing"]


def test_tag_sets_and_removes_tags(live_server: LiveServer, sweep: dict[str, Any]) -> None:
    run = sweep["runs"][1]
    done = tapeline(live_server, sweep["folder"], "tag", run["id"], "best=yes", "--remove",
                    "lr")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{run['id']}: sweep=lr, best=yes"
    stored = httpx.get(f"{live_server.url}/v1/runs/{run['id']}").json()
    assert stored["tags"] == {"sweep": "lr", "best": "yes"}
    model = tapeline(live_server, sweep["folder"], "tag", run["model_id"], "family=lines")
    assert model.returncode == 0 and "family=lines" in model.stdout
    for bad, message in [(["nope_1", "a=b"], "is not a dataset"),
                         ([run["id"], "novalue"], "expected key=value"),
                         ([run["id"], "study=s1"], "reserved for studies")]:
        refused = tapeline(live_server, sweep["folder"], "tag", *bad)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
