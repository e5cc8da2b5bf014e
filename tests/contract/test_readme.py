"""The README is true: its shell examples run against a live server as written, its Python
example runs through the generated client, and its settings table matches ``Settings``."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import TypeAdapter

from service.config import Settings
from tests.contract.conftest import ROOT
from tests.support.servers import LiveServer, sqlite_url, start_server

pytestmark = pytest.mark.live

README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
DOCUMENTED_BASE = "http://127.0.0.1:8000"


def documents(text: str) -> list[Any]:
    """The JSON values printed one after another (curl adds no newline after a body)."""
    decoder, values, position = json.JSONDecoder(), [], 0
    while (position := len(text) - len(text[position:].lstrip())) < len(text):
        value, position = decoder.raw_decode(text, position)
        values.append(value)
    return values


def blocks(language: str) -> list[str]:
    """The README's fenced blocks of one language, in order."""
    return [body for lang, body in FENCE.findall(README) if lang == language]


def test_sh_blocks_run_as_written(live_server: LiveServer, tmp_path: Path) -> None:
    scripts = blocks("sh")
    assert scripts[0].startswith(f"export TAPELINE_URL={DOCUMENTED_BASE}\n")  # the client's
    assert scripts[1].startswith(f"export TAPELINE={DOCUMENTED_BASE}\n")  # the tutorial's
    # The one substitution: the live server's port for the documented one.
    scripts[:2] = [script.replace(DOCUMENTED_BASE, live_server.url, 1) for script in scripts[:2]]
    marked = "".join(f"echo '=== block {i}'\n{body}\necho\n" for i, body in enumerate(scripts))
    # The terminal client's `tapeline` is the one installed beside this Python.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    result = subprocess.run(["bash", "-c", "set -euo pipefail\n" + marked], cwd=tmp_path,
                            capture_output=True, text=True, timeout=240,
                            env={**os.environ, "PATH": path})
    assert result.returncode == 0, f"a README block failed:\n{result.stdout}\n{result.stderr}"
    outputs = {int(m[1]): m[2] for m in re.finditer(r"^=== block (\d+)\n(.*?)(?=^=== block|\Z)",
                                                    result.stdout, re.M | re.S)}
    assert len(outputs) == len(scripts)

    def output_of(command: str) -> str:
        [index] = [i for i, body in enumerate(scripts) if command in body]
        return outputs[index]

    [dataset] = documents(output_of('"true_W": [3.0]'))
    assert dataset["num_examples"] == 1000 and dataset["synthetic"]["seed"] == 42
    assert documents(output_of("line.csv"))[0]["num_examples"] == 3
    [run] = documents(output_of("RUN=$(curl"))
    assert run["status"] == "succeeded" and run["epochs_completed"] == 10
    rows, columns = documents(output_of("history?limit=2"))
    assert [r["epoch"] for r in rows["items"]] == [0, 1]
    assert columns["epoch"] == list(range(10))
    assert len(documents(output_of('{"x": [-1.0, 0.0, 1.0]}'))[0]["y"]) == 3
    sampled, sample, newest = documents(output_of("max_points="))
    assert sampled["epoch"][0] == 0 and sampled["epoch"][-1] == 9 and len(sampled["epoch"]) <= 4
    assert len(sample["x"]) == len(sample["y"]) == 3
    assert len(newest["items"]) == 1

    [softmax] = documents(output_of('"kind": "blobs"'))
    assert (softmax["status"], softmax["loss"]) == ("succeeded", "cross_entropy")
    assert softmax["final"]["metrics"]["accuracy"] > 0.95 and softmax["final"]["W"] is None
    assert np.shape(softmax["final"]["params"]["W"]) == (2, 3)
    fit, final_metrics, first_row = documents(output_of('FIT=$(curl'))
    assert fit["status"] == "succeeded" and fit["stopped_early"] is not None
    assert fit["epochs_completed"] == fit["stopped_early"]["epoch"] < 500
    assert final_metrics["val_accuracy"] > 0.9
    assert set(first_row) == set(final_metrics) and len(first_row["val_loss"]) == 1
    mlp, pets = documents(output_of("pets.csv"))
    assert mlp["y"] == [0, 1, 1] and mlp["labels"] is None
    assert np.allclose(np.sum(mlp["probabilities"], axis=1), 1.0)
    assert pets["labels"] == ["cat", "dog"] and pets["y"] == [0, 1]

    [imported] = documents(output_of("softmax.json"))
    assert imported["y"] == [1, 0] and len(imported["probabilities"][0]) == 3
    assert (tmp_path / "softmax.onnx").stat().st_size > 0
    batch = output_of("Accept: text/csv").splitlines()
    assert batch[0] == "y,p_0,p_1,p_2" and [line.split(",")[0] for line in batch[1:3]] == \
        ["1", "0"]
    assert output_of("dry_run=true").split() == ["None", "[16]", "relu", "65"]
    terminal = output_of("tapeline train")
    assert "succeeded after 100 epochs" in terminal and "val_r2" in terminal
    assert terminal.split("wrote predictions.csv")[1].split()[0] == "y"
    assert (tmp_path / "plane.onnx").stat().st_size > 0

    sse = output_of("text/event-stream")
    assert sse.count("event: epoch") == 30 and "event: end" in sse
    lines = [json.loads(line) for line in output_of("application/jsonl").splitlines() if line]
    assert [line["type"] for line in lines] == ["epoch", "epoch", "end"]
    assert documents(output_of("/cancel"))[0]["status"] in ("cancelling", "cancelled")
    errors = output_of("mdl_00000000000000000000")
    assert "HTTP/1.1 404" in errors and "content-type: application/problem+json" in errors
    assert '"status":422' in errors and "x has 3 examples but y has 2" in errors
    refusals = documents(output_of("evil.example"))
    assert [r["status"] for r in refusals] == [400, 403]


def test_every_other_curl_line_runs(live_server: LiveServer) -> None:
    """The curl lines of the non-runnable blocks (deployment) hit ``localhost:8000``: each
    runs against the live server, and its answer matches the JSON in its comment."""
    others = [line.strip() for lang, body in FENCE.findall(README) if lang not in ("sh", "shell")
              for line in body.splitlines() if line.strip().startswith("curl ")]
    assert others, "expected curl lines in the deployment section"
    port = live_server.url.rsplit(":", 1)[1]
    for line in others:
        command, _, comment = line.partition("#")
        args = [a.replace("localhost:8000", f"127.0.0.1:{port}") for a in shlex.split(command)]
        result = subprocess.run(args, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, (line, result.stderr)
        expected = re.search(r"\{.*?\}", comment)
        if expected:
            assert json.loads(result.stdout) == json.loads(expected[0]), line


def test_tenants_block_runs_against_a_server_that_requires_keys(tmp_path: Path) -> None:
    """The `shell` block of "Tenants and API keys" runs, as written, against a server with
    TAPELINE_AUTH=required and the block's key as its bootstrap admin key."""
    [script] = blocks("shell")
    admin = re.search(r"^export ADMIN_KEY=(\S+)$", script, re.M)
    assert admin and script.startswith(f"export TAPELINE={DOCUMENTED_BASE}\n")
    server = start_server(sqlite_url(tmp_path), tmp_path / "server.log",
                          TAPELINE_AUTH="required", TAPELINE_BOOTSTRAP_ADMIN_KEY=admin[1])
    try:
        result = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + script.replace(DOCUMENTED_BASE, server.url, 1)],
            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    finally:
        server.stop()
    assert result.returncode == 0, f"the block failed:\n{result.stdout}\n{result.stderr}"
    me, end = json.JSONDecoder().raw_decode(result.stdout)  # curl adds no newline
    assert me["tenant"] == "team-a" and me["usage"]["models"] == 1
    foreign, forbidden, rest = result.stdout[end:].split("\n", 2)
    assert (foreign, forbidden) == ("404", "403")  # B's read key: A's model; creating
    assert rest.startswith("HTTP/1.1 401 Unauthorized")
    assert 'www-authenticate: Bearer realm="tapeline"' in rest
    quotas = documents(rest.split("\n\n", 1)[1])[-1]
    assert quotas == {"max_active_runs": 2, "max_stored_bytes": 1024**3,
                      "rate_limit": "20/second"}
    assert admin[1] not in (tmp_path / "server.log").read_text()


def run_python(example: str, python_client: Path, live_server: LiveServer) -> str:
    """What a README Python block prints, run against the live server."""
    code = example.replace(DOCUMENTED_BASE, live_server.url)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(python_client)})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_python_examples_run(python_client: Path, live_server: LiveServer) -> None:
    tutorial, files = blocks("python")
    assert run_python(tutorial, python_client, live_server).startswith("succeeded ")
    # The .npy body through the generated method and the CSV body through its httpx client
    # predict the same values.
    by_npy, by_csv = run_python(files, python_client, live_server).strip().split("] [")
    assert len(by_npy.strip("[]").split(",")) == 2 and by_npy.strip("[]") == by_csv.strip("[]")


def settings_rows() -> dict[str, list[str]]:
    """The settings table: variable name -> its cells."""
    rows = {}
    for line in README.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"`TAPELINE_[A-Z_]+`", cells[0]):
            rows[cells[0].strip("`")] = cells
    return rows


def test_settings_table_matches_the_settings() -> None:
    rows = settings_rows()
    fields = Settings.model_fields
    assert set(rows) == {f"TAPELINE_{name.upper()}" for name in fields}
    for name, field in fields.items():
        _, default, meaning = rows[f"TAPELINE_{name.upper()}"]
        expected = field.get_default(call_default_factory=True)
        assert meaning, name
        if default == "none":  # an empty list, or a default worked out at start-up
            assert expected in (None, []), (name, expected)
            continue
        value: Any = TypeAdapter(field.annotation).validate_python(default.strip("`"),
                                                                    strict=False)
        assert value == expected, (name, default, expected)


def test_quick_start_is_the_two_commands_and_the_terminal_client() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands, terminal, _ = blocks_in(quick_start)  # then the terminal client and its output
    assert [line.split("#")[0].strip() for line in commands.splitlines()] == [
        "make run", "make test"]
    assert "tapeline train" in terminal


def blocks_in(text: str) -> list[str]:
    """Fenced blocks of any language inside ``text``."""
    return [body for _, body in FENCE.findall(text)]
