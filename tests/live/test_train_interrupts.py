"""`tapeline train` takes a Ctrl-C between its requests, never inside one, so it
knows what exists: before the run, what it made is deleted and it says so truly; once the run
exists, it asks whether to cancel it. The client runs here in the test's process against a
real server; its Api sends this process a SIGINT just as a chosen request is answered (where
a user's Ctrl-C can come), and the prompt reads its answer from standard input."""

from __future__ import annotations

import argparse
import io
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from rich.console import Console

from service.cli import HelpText
from service.client import commands
from service.client.http import Api
from tests.support.servers import LiveServer


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("interrupts") / "line.csv"
    x = np.linspace(-1, 1, 200)
    np.savetxt(path, np.column_stack([x, 3 * x + 2]), delimiter=",", header="x,y",
               comments="", fmt="%.5f")
    return path


def interrupting(after: str) -> type[Api]:
    """An Api that sends this process SIGINT as soon as a POST whose path ends with ``after``
    is answered."""

    class Interrupting(Api):
        def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
            answer = super().request(method, path, **kwargs)
            if method == "POST" and path.endswith(after) and "dry_run" not in str(kwargs):
                signal.raise_signal(signal.SIGINT)
            return answer

    return Interrupting


def train_args(server: LiveServer, data: Path, *flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    commands.add_commands(parser.add_subparsers(dest="command"), HelpText)
    return parser.parse_args(["train", str(data), "--url", server.url, *flags])


def counts(server: LiveServer) -> tuple[int, int, int]:
    with httpx.Client(base_url=server.url, timeout=30) as api:
        return tuple(len(api.get(f"/v1/{what}", params={"limit": 1000}).json()["items"])
                     for what in ("datasets", "models", "runs"))  # type: ignore[return-value]


def test_a_ctrl_c_while_the_model_is_made_deletes_what_was_made(
        live_server: LiveServer, data: Path, ours: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "Api", interrupting("/v1/models"))
    before = counts(live_server)
    console = Console(file=io.StringIO(), force_terminal=True)
    with pytest.raises(KeyboardInterrupt) as raised:
        commands.train(train_args(live_server, data), console)
    assert counts(live_server) == before
    assert raised.value.__notes__ == ["nothing was kept: the dataset and model made for this "
                                      "run were deleted"]


def test_a_ctrl_c_as_the_run_is_made_asks_whether_to_cancel_it(
        live_server: LiveServer, data: Path, ours: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The run exists once its POST is answered: the interrupt is not an exit with 130 and a
    # run left training, but the question, answered yes.
    monkeypatch.setattr(commands, "Api", interrupting("/runs"))
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    code = commands.train(train_args(live_server, data, "--epochs", "100000",
                                     "--batch-size", "1"), console)
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "Cancel run" in shown and "asked run" in shown, shown
    run_id = shown.split("asked run ")[1].split()[0]
    with httpx.Client(base_url=live_server.url, timeout=30) as api:
        run = api.get(f"/v1/runs/{run_id}").json()
    assert run["status"] == "cancelled", run
    assert code != 0 and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_off_a_terminal_a_ctrl_c_as_the_upload_answers_leaves_nothing(
        live_server: LiveServer, data: Path, ours: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A pipe or a log: no question can be asked, but the upload answered whole is known and
    # deleted (raised where it landed, it was left behind).
    monkeypatch.setattr(commands, "Api", interrupting("/v1/datasets/upload"))
    before = counts(live_server)
    console = Console(file=io.StringIO(), force_terminal=False)
    with pytest.raises(KeyboardInterrupt):
        commands.train(train_args(live_server, data), console)
    assert counts(live_server) == before
