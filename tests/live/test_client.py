"""The terminal client against a live server, run under a pseudo-terminal and read as a user
sees it: live progress, the final metrics, exit statuses, Ctrl-C, exported and predicted
files; a stream that drops mid-run and the client following on from its last epoch; a
server that requires API keys, with `--key` and without."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from tests.live.test_operations import start_slow
from tests.support.servers import ROOT, LiveServer, sqlite_url, start_server

KEY = "tl_" + "K" * 43


class Terminal:
    """``tapeline ARGS`` on a 120-column pseudo-terminal; with ``sigint_ignored``, started as a
    non-interactive shell starts a background job (SIGINT inherited as ignored)."""

    def __init__(self, server: LiveServer, cwd: Path, *args: str,
                 sigint_ignored: bool = False, **extra: str) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        env = {**os.environ, "TAPELINE_URL": server.url, "TERM": "xterm-256color",
               "COLUMNS": "120", "LINES": "40", "PYTHONPATH": str(ROOT), **extra}
        env.pop("NO_COLOR", None)
        env.pop("TAPELINE_API_KEY", None)
        def ignore_sigint() -> None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)

        self.process = subprocess.Popen([sys.executable, "-m", "service.cli", *args], cwd=cwd,
                                        env=env, stdin=slave, stdout=slave, stderr=slave,
                                        start_new_session=True,
                                        preexec_fn=ignore_sigint if sigint_ignored else None)
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


@pytest.mark.parametrize(("sigint_ignored", "moment"), [
    (False, "training"), (True, "training"), (False, "at once"), (True, "at once")],
    ids=["sigint-default", "sigint-inherited-ignored", "at-once", "at-once-ignored"])
def test_ctrl_c_asks_whether_to_cancel(live_server: LiveServer, data: Path,
                                       sigint_ignored: bool, moment: str) -> None:
    """However the client was started (a script's background job inherits SIGINT ignored),
    Ctrl-C while it follows a run asks whether to cancel it: as soon as the run is named
    (before the first epoch line) as well as mid-run."""
    terminal = Terminal(live_server, data, "train", "train.csv", "--kind", "mlp", "--hidden",
                        "64,64", "--epochs", "100000", "--batch-size", "32",
                        sigint_ignored=sigint_ignored)
    try:
        wanted = r"epoch\s+[1-9]\d*/100000" if moment == "training" else r"run_\w+: 100000 epochs"
        screen = terminal.read_until(wanted)
        assert re.search(wanted, screen), screen
        os.killpg(terminal.process.pid, signal.SIGINT)
        asked = terminal.read_until(r"Cancel run run_\w+\?", timeout=30)
        assert re.search(r"Cancel run run_\w+\?", asked), terminal.text()
        os.write(terminal.master, b"y\r")
        assert terminal.finish() == 1
        assert re.search(r"run run_\w+ cancelled", terminal.text()), terminal.text()
    finally:
        if terminal.process.poll() is None:  # never left running after a failure
            os.killpg(terminal.process.pid, signal.SIGKILL)
            terminal.process.wait()


class DroppingProxy:
    """A loopback proxy to ``upstream`` that ends the first event stream it relays after
    ``cut`` epochs, cleanly and without the end event, as a replica going away does. It
    records each stream's query and the epochs it relayed, and the run's status at the cut."""

    def __init__(self, upstream: str, cut: int) -> None:
        self.upstream, self.cut = upstream, cut
        self.streams: list[tuple[dict[str, str], list[int]]] = []
        self.status_at_cut: str | None = None
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy.relay(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def relay(self, handler: BaseHTTPRequestHandler) -> None:
        """Answer a GET with upstream's answer; an event stream line by line, cut the first
        time, and then the connection closed."""
        headers = {k: v for k, v in handler.headers.items() if k.lower() in ("accept",)}
        path = urlsplit(handler.path)
        if not path.path.endswith("/events"):
            answer = httpx.get(self.upstream + handler.path, headers=headers, timeout=60)
            handler.send_response(answer.status_code)
            handler.send_header("Content-Type", answer.headers["content-type"])
            handler.send_header("Content-Length", str(len(answer.content)))
            handler.end_headers()
            handler.wfile.write(answer.content)
            return
        epochs: list[int] = []
        self.streams.append((dict(parse_qsl(path.query)), epochs))
        first = len(self.streams) == 1
        with httpx.stream("GET", self.upstream + handler.path, headers=headers,
                          timeout=httpx.Timeout(60, read=None)) as answer:
            handler.send_response(answer.status_code)
            handler.send_header("Content-Type", answer.headers["content-type"])
            handler.send_header("Connection", "close")  # the body ends where the stream does
            handler.end_headers()
            for line in answer.iter_lines():
                handler.wfile.write(line.encode() + b"\n")
                handler.wfile.flush()
                item = json.loads(line) if line.strip() else {}
                if item.get("type") == "epoch":
                    epochs.append(item["epoch"])
                if first and len(epochs) == self.cut:
                    run = httpx.get(f"{self.upstream}/v1/runs/{item['run_id']}").json()
                    self.status_at_cut = run["status"]
                    break
        handler.close_connection = True

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(live_server: LiveServer) -> Iterator[DroppingProxy]:
    relay = DroppingProxy(live_server.url, cut=2)
    yield relay
    relay.close()


def test_watch_follows_on_after_the_stream_drops_mid_run(live_server: LiveServer, data: Path,
                                                         proxy: DroppingProxy) -> None:
    with httpx.Client(base_url=live_server.url, timeout=60) as api:
        run_id, _ = start_slow(api)
    terminal = Terminal(live_server, data, "watch", run_id, "--url", proxy.url)
    assert terminal.finish() == 0, terminal.text()
    assert f"run {run_id} succeeded after 30 epochs" in terminal.text()
    assert proxy.status_at_cut == "running"  # the stream dropped mid-run
    (first, before), (again, after) = proxy.streams  # one reconnection, from the last epoch
    assert first == {} and before == [0, 1]
    assert again == {"after": "1"} and after == list(range(2, 30))


def test_a_server_with_keys_trains_with_key_and_refuses_without(tmp_path: Path,
                                                                data: Path) -> None:
    server = start_server(sqlite_url(tmp_path), tmp_path / "server.log", TAPELINE_AUTH="required",
                          TAPELINE_BOOTSTRAP_ADMIN_KEY=KEY, TAPELINE_WORKERS="1")
    try:
        made = httpx.post(f"{server.url}/v1/keys", headers={"Authorization": f"Bearer {KEY}"},
                          json={"tenant": "client", "scopes": ["write"]})
        assert made.status_code == 201, made.text
        key = made.json()["key"]

        refused = Terminal(server, data, "train", "train.csv", "--epochs", "3")
        assert refused.finish() == 2, refused.text()
        assert "this operation needs an API key" in refused.text() and "(401)" in refused.text()
        assert "--key or TAPELINE_API_KEY" in refused.text()
        assert "Traceback" not in refused.text()

        trained = Terminal(server, data, "train", "train.csv", "--epochs", "3", "--key", key)
        assert trained.finish() == 0, trained.text()
        assert re.search(r"run run_\w+ succeeded after 3 epochs", trained.text()), trained.text()
        assert "Traceback" not in trained.text()
    finally:
        server.stop()


def test_pause_and_resume_from_the_terminal(live_server: LiveServer, data: Path) -> None:
    """`tapeline pause` and `resume`; `watch` of a paused run says so and keeps following;
    pausing an ended run is refused (exit 2, the problem's detail)."""
    with httpx.Client(base_url=live_server.url, timeout=60) as api:
        run_id, _ = start_slow(api)
        paused = Terminal(live_server, data, "pause", run_id)
        assert paused.finish() == 0
        assert re.search(rf"run {run_id} (is paused after|pauses at the end)", paused.text())
        deadline = time.monotonic() + 60
        while api.get(f"/v1/runs/{run_id}").json()["status"] != "paused":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        watching = Terminal(live_server, data, "watch", run_id)
        said = rf"run {run_id} paused after \d+ epochs"
        assert re.search(said, watching.read_until(said)), watching.text()
        resumed = Terminal(live_server, data, "resume", run_id)
        assert resumed.finish() == 0 and f"run {run_id} resumed: queued" in resumed.text()
        assert api.post(f"/v1/runs/{run_id}/cancel").status_code == 202
        assert watching.finish() == 1  # it followed the run on to its end: cancelled
        refused = Terminal(live_server, data, "pause", run_id)
        assert refused.finish() == 2 and "Traceback" not in refused.text()
        assert "(409)" in refused.text(), refused.text()
