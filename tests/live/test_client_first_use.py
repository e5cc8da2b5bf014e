"""The terminal client as a new user meets it, under a pseudo-terminal against a live server:
``--version`` and help in plain words, flags checked before anything is sent, a refused
``train`` that leaves nothing behind and names the flags typed, stored datasets and models
reused, ``cancel``, and the run's final state printed as its last point; and the commands of
the service: ``keys`` that refuse to make a store of their own, the first key's warning, and
``serve`` refusing a taken port before it starts anything; and ``make run``'s one line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.live.test_client import Terminal
from tests.live.test_operations import start_slow
from tests.support.servers import ROOT, LiveServer, free_port


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("first-use")
    rng = np.random.default_rng(1)
    x = rng.uniform(-2, 2, size=(300, 2))
    y = x @ [3.0, -1.0] + 2 + rng.normal(size=300) * 0.1
    np.savetxt(folder / "plane.csv", np.column_stack([x, y]), delimiter=",", header="a,b,y",
               comments="", fmt="%.4f")
    (folder / "typo.csv").write_text("a,y\n1,2\n2,abc\n3,4\n")
    return folder


def stored(api: httpx.Client) -> tuple[int, int]:
    """How many datasets and models the server holds."""
    return (len(api.get("/v1/datasets", params={"limit": 1000}).json()["items"]),
            len(api.get("/v1/models", params={"limit": 1000}).json()["items"]))


@pytest.fixture
def api(live_server: LiveServer) -> Any:
    with httpx.Client(base_url=live_server.url, timeout=60) as client:
        yield client


def test_version_and_help_in_plain_words(live_server: LiveServer, files: Path) -> None:
    version = Terminal(live_server, files, "--version")
    assert version.finish() == 0 and re.fullmatch(r"tapeline \d+\.\d+\.\d+\S*\s*",
                                                  version.text()), version.text()
    top = Terminal(live_server, files, "--help")
    assert top.finish() == 0
    assert "``" not in top.text() and "cancel" in top.text()
    # The first paragraph names every command the list below it shows.
    paragraphs = top.text().replace("\r\n", "\n").split("\n\n")
    described = re.sub(r"\s+", " ", paragraphs[1])
    listed = re.findall(r"^    (\w+)\s", top.text().replace("\r\n", "\n"), re.MULTILINE)
    assert len(listed) >= 13 and all(re.search(rf"\b{c}\b", described) for c in listed), (
        described, listed)
    for command in ("serve", "train", "watch", "cancel", "export", "predict", "keys"):
        shown = Terminal(live_server, files, command, "--help")
        assert shown.finish() == 0
        # A description: a sentence between the usage and the arguments.
        body = shown.text().split("\r\n\r\n")
        assert len(body) > 2 and body[1][:1].isupper() and body[1].rstrip().endswith("."), body
    train = Terminal(live_server, files, "train", "--help")
    train.finish()
    text = re.sub(r"\s+", " ", train.text())
    for shown in ("--epochs N epochs (default: 10)", "--lr RATE learning rate (default: 0.1)",
                  "--optimizer {sgd,momentum,adam} the optimizer (default: sgd)",
                  "DATA a .csv with a header row", "--dataset ID", "--model ID"):
        assert shown in text, text
    watch = Terminal(live_server, files, "watch", "--help")
    watch.finish()
    assert re.search(r"RUN_ID\s+the run", watch.text()), watch.text()


@pytest.mark.parametrize(("flags", "said"), [
    (["--kind", "mlp", "--hidden", "16,x"], "argument --hidden: expected layer widths"),
    (["--validation", "1.5"], "argument --validation: expected a fraction between 0 and 1"),
    (["--lr", "-1"], "argument --lr: expected a number above 0"),
    (["--epochs", "0"], "argument --epochs: expected a whole number of at least 1"),
    (["--hidden", "8"], "--hidden applies to --kind mlp"),
    (["--kind", "mlp", "--hidden", "5000"], "--hidden: at most 4096"),
    (["--kind", "logistic"], "plane.csv: labels must be class indices"),
    (["--loss", "cross_entropy"], "--loss: cross_entropy fits classification"),
    (["--target", "z"], "--target: column 'z' is not in the CSV header"),
])
def test_a_refused_train_leaves_nothing_and_names_the_flag(
        live_server: LiveServer, api: httpx.Client, files: Path, flags: list[str],
        said: str) -> None:
    before = stored(api)
    terminal = Terminal(live_server, files, "train", "plane.csv", *flags)
    assert terminal.finish() == 2, terminal.text()
    assert said in re.sub(r"\s*\r\n\s*", " ", terminal.text()), terminal.text()
    assert "Traceback" not in terminal.text() and "body." not in terminal.text()
    assert stored(api) == before


def test_a_typo_in_the_data_names_its_line_and_the_flag_to_use(
        live_server: LiveServer, api: httpx.Client, files: Path) -> None:
    before = stored(api)
    terminal = Terminal(live_server, files, "train", "typo.csv")
    assert terminal.finish() == 2
    text = re.sub(r"\s*\r\n\s*", " ", terminal.text())
    assert "typo.csv, line 3, column y: 'abc' is not a number" in text, text
    assert "--target-type categorical" in text
    assert stored(api) == before
    names = Terminal(live_server, files, "train", "typo.csv", "--target-type", "categorical",
                     "--kind", "logistic", "--classes", "3", "--epochs", "2")
    assert names.finish() == 0, names.text()


def test_train_reuses_a_stored_dataset_and_model(live_server: LiveServer, api: httpx.Client,
                                                 files: Path) -> None:
    first = Terminal(live_server, files, "train", "plane.csv", "--epochs", "3")
    assert first.finish() == 0, first.text()
    dataset = re.findall(r"dataset (ds_\w+)", first.text())[0]
    model = re.findall(r"model (mdl_\w+)", first.text())[0]
    before = stored(api)
    again = Terminal(live_server, files, "train", "--dataset", dataset, "--model", model,
                     "--epochs", "4")
    assert again.finish() == 0, again.text()
    assert stored(api) == before  # nothing new uploaded or created
    runs = api.get(f"/v1/models/{model}/runs").json()["items"]
    assert [r["epochs"] for r in runs] == [3, 4] and runs[1]["dataset_id"] == dataset
    both = Terminal(live_server, files, "train", "plane.csv", "--dataset", dataset)
    assert both.finish() == 2 and "DATA (a file to upload) or --dataset" in both.text()
    shaped = Terminal(live_server, files, "train", "--dataset", dataset, "--model", model,
                      "--kind", "mlp")
    assert shaped.finish() == 2 and "--model trains a stored one" in shaped.text()
    assert stored(api) == before


def test_cancel_a_run(live_server: LiveServer, api: httpx.Client, files: Path) -> None:
    run_id, _ = start_slow(api)
    terminal = Terminal(live_server, files, "cancel", run_id)
    assert terminal.finish() == 0, terminal.text()
    assert re.search(rf"run {run_id} (is cancelling|cancelled)", terminal.text())
    watched = Terminal(live_server, files, "watch", run_id)
    assert watched.finish() == 1 and f"run {run_id} cancelled" in watched.text()
    again = Terminal(live_server, files, "cancel", run_id)
    assert again.finish() == 0 and f"run {run_id} had already ended: cancelled" in again.text()


def test_the_last_line_is_the_final_state_on_and_off_a_terminal(
        live_server: LiveServer, api: httpx.Client, files: Path) -> None:
    terminal = Terminal(live_server, files, "train", "plane.csv", "--epochs", "20", "--seed",
                        "0")
    assert terminal.finish() == 0, terminal.text()
    run_id = re.findall(r"run (run_\w+)", terminal.text())[-1]
    run = api.get(f"/v1/runs/{run_id}").json()
    final = f"{run['final']['loss']:.6g}"
    # The bar's last redraw shows the final state, marked as final, as the table does.
    assert re.search(rf"20/20.*final\s+loss {final}", terminal.text()), terminal.text()
    assert re.search(rf"loss\s+│\s+{final}", terminal.text())
    piped = subprocess.run(
        [sys.executable, "-m", "service.cli", "train", "plane.csv", "--epochs", "20", "--seed",
         "0"], cwd=files, capture_output=True, text=True, timeout=120,
        env={**os.environ, "TAPELINE_URL": live_server.url, "PYTHONPATH": str(ROOT)})
    assert piped.returncode == 0, piped.stderr
    run_id = re.findall(r"run (run_\w+)", piped.stdout)[-1]
    final = f"{api.get(f'/v1/runs/{run_id}').json()['final']['loss']:.6g}"
    assert f"epoch 20/20  final  loss {final}" in piped.stdout, piped.stdout


def tapeline(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``tapeline ARGS`` in ``cwd`` with the default settings but ``env``."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TAPELINE_")}
    return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120,
                          env={**environment, "PYTHONPATH": str(ROOT), **env})


def test_keys_never_make_a_store_of_their_own(tmp_path: Path) -> None:
    for command in (["keys", "list"], ["keys", "create", "--tenant", "team-a"],
                    ["keys", "revoke", "key_x"]):
        answer = tapeline(tmp_path, *command)
        assert answer.returncode == 3, answer
        assert f"no store at {tmp_path / 'var' / 'tapeline.db'}" in answer.stderr
        assert "Run them in the folder `tapeline serve` runs in" in answer.stderr
        assert not (tmp_path / "var").exists()
    elsewhere = tapeline(tmp_path, "keys", "list",
                         TAPELINE_DATABASE_URL=f"sqlite:///{tmp_path / 'typo.db'}")
    assert elsewhere.returncode == 3 and "TAPELINE_DATABASE_URL" in elsewhere.stderr
    assert not (tmp_path / "typo.db").exists()


def test_the_first_key_warns_that_keys_are_now_required(tmp_path: Path) -> None:
    assert tapeline(tmp_path, "migrate").returncode == 0  # the store, as `serve` makes it
    first = tapeline(tmp_path, "keys", "create", "--tenant", "team-a")
    assert first.returncode == 0, first.stderr
    warning = " ".join(first.stderr.split())
    assert "first key" in warning and "requires a key on every request" in warning
    assert "tenant 'default', not to 'team-a'" in warning and "--key or TAPELINE_API_KEY" in warning
    assert first.stdout.strip().splitlines()[-1].startswith("tl_")  # still the last line
    second = tapeline(tmp_path, "keys", "create", "--tenant", "team-b")
    assert second.returncode == 0 and "first key" not in second.stderr
    listed = tapeline(tmp_path, "keys", "list")
    assert listed.returncode == 0 and "team-a" in listed.stdout and "team-b" in listed.stdout


def test_serve_refuses_a_taken_port_before_starting_anything(live_server: LiveServer,
                                                              tmp_path: Path) -> None:
    port = live_server.url.rsplit(":", 1)[1]
    store = tmp_path / "second.db"
    answer = tapeline(tmp_path, "serve", TAPELINE_PORT=port,
                      TAPELINE_DATABASE_URL=f"sqlite:///{store}")
    assert answer.returncode == 3, answer
    assert f"127.0.0.1:{port} is already in use" in answer.stderr
    assert "--port" in answer.stderr and "TAPELINE_PORT" in answer.stderr
    assert not store.exists()  # refused before the store was opened
    flag = tapeline(tmp_path, "serve", "--port", port, TAPELINE_DATABASE_URL=f"sqlite:///{store}")
    assert flag.returncode == 3 and "is already in use" in flag.stderr


def test_make_run_prints_the_line_a_user_needs_next(tmp_path: Path) -> None:
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TAPELINE_")}
    process = subprocess.Popen(
        ["make", "-s", "-C", str(ROOT), "run"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
        env={**environment, "TAPELINE_PORT": str(port),
             "TAPELINE_DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}"})
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        while line and not line.startswith("Tapeline:"):  # after a first install's output
            line = process.stdout.readline()
        with httpx.Client(timeout=5) as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            page = client.get(f"http://127.0.0.1:{port}/ui/")
        assert page.status_code == 200
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    assert f"open http://127.0.0.1:{port}/ui/" in line, line
    assert ".venv/bin/tapeline" in line and ". .venv/bin/activate" in line, line
    assert line.count("\n") == 1  # one line
