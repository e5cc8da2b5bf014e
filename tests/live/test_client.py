"""The terminal client against a live server, run under a pseudo-terminal and read as a user
sees it: live progress, the final metrics, exit statuses, Ctrl-C, exported and predicted
files."""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.support.servers import ROOT, LiveServer


class Terminal:
    """``tapeline ARGS`` on a 120-column pseudo-terminal."""

    def __init__(self, server: LiveServer, cwd: Path, *args: str) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        env = {**os.environ, "TAPELINE_URL": server.url, "TERM": "xterm-256color",
               "COLUMNS": "120", "LINES": "40", "PYTHONPATH": str(ROOT)}
        env.pop("NO_COLOR", None)
        self.process = subprocess.Popen([sys.executable, "-m", "service.cli", *args], cwd=cwd,
                                        env=env, stdin=slave, stdout=slave, stderr=slave,
                                        start_new_session=True)
        os.close(slave)
        self.master, self.screen = master, b""

    def read_until(self, pattern: str | None, timeout: float = 120) -> str:
        """The screen so far, once it matches ``pattern`` (or the process ends)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pattern is not None and re.search(pattern, self.text()):
                return self.text()
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                self.screen += chunk
        return self.text()

    def finish(self, timeout: float = 120) -> int:
        """The exit status, once the output is read to its end."""
        self.read_until(None, timeout)
        code = self.process.wait(timeout)
        os.close(self.master)
        return code

    def text(self) -> str:
        """What was written, escape sequences removed."""
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.screen.decode(errors="replace"))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("client")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 2))
    y = x @ [3.0, -1.0] + 2 + rng.normal(size=2000) * 0.1
    np.savetxt(folder / "train.csv", np.column_stack([x, y]), delimiter=",", header="a,b,y",
               comments="", fmt="%.6f")
    np.savetxt(folder / "inputs.csv", x[:50], delimiter=",", header="a,b", comments="",
               fmt="%.6f")
    return folder


def test_train_shows_live_progress_and_final_metrics(live_server: LiveServer,
                                                     data: Path) -> None:
    terminal = Terminal(live_server, data, "train", "train.csv", "--kind", "mlp", "--hidden",
                        "32,32", "--epochs", "400", "--optimizer", "adam", "--lr", "0.01",
                        "--validation", "0.2")
    code = terminal.finish()
    screen = terminal.text()
    assert code == 0, screen
    counts = {int(m) for m in re.findall(r"epoch\s+(\d+)/400", screen)}
    assert len(counts) >= 3 and max(counts) == 400, screen  # redrawn as epochs went by
    assert re.search(r"loss \d\.\d+.*val_loss \d", screen) and "ETA" in screen
    assert "succeeded after 400 epochs" in screen and re.search(r"val_r2\s+│\s+0\.9", screen)
    assert "Traceback" not in screen
    model_id = re.findall(r"model (mdl_\w+)", screen)[-1]
    run_id = re.findall(r"run (run_\w+)", screen)[-1]

    watched = Terminal(live_server, data, "watch", run_id)  # a finished run replays and ends
    assert watched.finish() == 0, watched.text()
    assert re.search(r"epoch\s+400/400", watched.text())
    assert f"run {run_id} succeeded after 400 epochs" in watched.text()

    exported = Terminal(live_server, data, "export", model_id, "--format", "onnx", "-o",
                        "model.onnx")
    assert exported.finish() == 0, exported.text()
    predicted = Terminal(live_server, data, "predict", model_id, "inputs.csv", "-o", "out.csv")
    assert predicted.finish() == 0, predicted.text()
    y = np.loadtxt(data / "out.csv", delimiter=",", skiprows=1)
    inputs = np.loadtxt(data / "inputs.csv", delimiter=",", skiprows=1).astype(np.float32)
    session = ort.InferenceSession((data / "model.onnx").read_bytes(),
                                   providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": inputs})[0], y, rtol=1e-4, atol=1e-5)


def test_a_diverged_run_exits_non_zero(live_server: LiveServer, data: Path) -> None:
    terminal = Terminal(live_server, data, "train", "train.csv", "--epochs", "50", "--lr",
                        "1000")
    assert terminal.finish() == 1
    assert re.search(r"diverged at epoch \d+", terminal.text()), terminal.text()


def test_problems_print_their_detail_not_a_traceback(live_server: LiveServer,
                                                     data: Path) -> None:
    terminal = Terminal(live_server, data, "watch", "run_missing")
    assert terminal.finish() == 2
    assert "no run with id 'run_missing' (404)" in terminal.text()
    terminal = Terminal(live_server, data, "predict", "mdl_missing", "train.csv")
    assert terminal.finish() == 2 and "Traceback" not in terminal.text()


def test_ctrl_c_asks_whether_to_cancel(live_server: LiveServer, data: Path) -> None:
    terminal = Terminal(live_server, data, "train", "train.csv", "--kind", "mlp", "--hidden",
                        "64,64", "--epochs", "100000", "--batch-size", "32")
    screen = terminal.read_until(r"epoch\s+[1-9]\d*/100000")
    assert re.search(r"epoch\s+[1-9]\d*/100000", screen), screen
    os.killpg(terminal.process.pid, signal.SIGINT)
    assert "Cancel run" in terminal.read_until(r"Cancel run run_\w+\?"), terminal.text()
    os.write(terminal.master, b"y\r")
    assert terminal.finish() == 1
    assert re.search(r"run run_\w+ cancelled", terminal.text()), terminal.text()
