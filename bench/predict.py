"""Batch prediction throughput through files: rows/s of ``POST /v1/models/{id}/predict`` with
an ``.npy`` body answered as ``.npy``, and a CSV body answered as CSV, against the model's bare
NumPy forward pass on the same array in this process (the floor).

    .venv/bin/python bench/predict.py [--rows 1000000] [--repeats 5]

Serves ``tapeline serve`` on SQLite (body limit raised to fit the CSV), creates two models of
8 features (linear; an MLP with hidden [64, 64], relu), and for each times the .npy round
trips interleaved with the floor, then the CSV round trips interleaved with the floor; each
figure is the median of ``--repeats``, each ratio against the floor of its own
interleaving. Target: .npy end to end at least 25 % of the floor's rows/s. Then, to show
where an .npy request's time goes, the CPU time the server and this client spend on one
(the mean of ``--repeats`` more requests; read from /proc, so Linux only).
"""

from __future__ import annotations

import argparse
import io
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.servers import sqlite_url, start_server  # noqa: E402

FEATURES = 8
MODELS: dict[str, dict[str, Any]] = {
    "linear": {"kind": "linear", "features": FEATURES, "initial": {"random_seed": 1}},
    "mlp [64, 64] relu": {"kind": "mlp", "features": FEATURES, "hidden": [64, 64],
                          "initial": {"random_seed": 1}},
}


SETTLE_SECONDS = 0.25


def bare_forward(model: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """The model's forward pass in plain NumPy (float64, as Tapeline predicts)."""
    params = {name: np.asarray(value, dtype=np.float64) for name, value in
              model["params"].items()}
    if model["kind"] == "linear":
        return x @ params["W"] + params["b"]
    layers = len(model["hidden"]) + 1
    h = x.astype(np.float64)
    for i in range(1, layers + 1):
        h = h @ params[f"W{i}"] + params[f"b{i}"]
        if i < layers:
            np.maximum(h, 0, out=h)
    return h.reshape(-1)


def timed(action: Any) -> float:
    """Seconds ``action`` takes, started after a pause: the previous action's aftermath (BLAS
    threads still spinning after the floor's product, the server freeing a large answer) is
    not timed as this one's."""
    time.sleep(SETTLE_SECONDS)
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_of(action: Any, pid: int) -> tuple[float, float]:
    """CPU seconds the server (``pid``) and this process spent on ``action``."""
    server, client = cpu_seconds(pid), time.process_time()
    action()
    return cpu_seconds(pid) - server, time.process_time() - client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    x = np.random.default_rng(0).normal(size=(args.rows, FEATURES)).astype(np.float32)
    buffer = io.BytesIO()
    np.save(buffer, x)
    npy = buffer.getvalue()
    text = io.StringIO()
    np.savetxt(text, x, fmt="%.7g", delimiter=",",
               header=",".join(f"x{i}" for i in range(FEATURES)), comments="")
    csv = text.getvalue().encode()
    folder = Path(tempfile.mkdtemp())
    server = start_server(sqlite_url(folder), folder / "server.log",
                          TAPELINE_MAX_BODY_BYTES=str(4 * len(csv)),
                          TAPELINE_LOG_LEVEL="warning")
    print(f"{args.rows:,} rows x {FEATURES} features; .npy body {len(npy) / 1e6:.0f} MB, "
          f"CSV body {len(csv) / 1e6:.0f} MB; median of {args.repeats}")
    print("| model | floor (NumPy) | .npy -> .npy | CSV -> CSV | .npy / floor | CSV / floor |")
    print("|---|---|---|---|---|---|")
    cpu_rows: list[str] = []
    try:
        with httpx.Client(base_url=server.url, timeout=600) as client:
            for label, spec in MODELS.items():
                model = client.post("/v1/models", json=spec).json()
                url = f"/v1/models/{model['id']}/predict"

                def by_npy(url: str = url) -> None:
                    answer = client.post(url, content=npy, headers={
                        "content-type": "application/octet-stream",
                        "accept": "application/octet-stream"})
                    assert answer.status_code == 200, answer.text
                    np.load(io.BytesIO(answer.content))

                def by_csv(url: str = url) -> None:
                    answer = client.post(url, content=csv, headers={
                        "content-type": "text/csv", "accept": "text/csv"})
                    assert answer.status_code == 200, answer.text

                def floor(model: dict[str, Any] = model) -> None:
                    bare_forward(model, x)

                by_npy()  # warm up: the route, the model's first read, BLAS
                floor()
                # Each format in a stream of its own requests, interleaved with the floor (a
                # huge CSV request between two .npy ones leaves the server's memory to be
                # faulted in again, which is the CSV's cost, not the .npy's).
                rate: dict[str, float] = {}
                for name, action in (("npy", by_npy), ("csv", by_csv)):
                    floors, times = [], []
                    for _ in range(args.repeats):
                        floors.append(timed(floor))
                        times.append(timed(action))
                    rate[name] = args.rows / statistics.median(times)
                    rate[f"floor {name}"] = args.rows / statistics.median(floors)
                rate["floor"] = statistics.fmean([rate["floor npy"], rate["floor csv"]])
                spent = [cpu_of(by_npy, server.process.pid) for _ in range(args.repeats)]
                cpu_rows.append(
                    f"| {label} | {1e3 / rate['npy'] * args.rows:.0f} ms | "
                    f"{1e3 * statistics.fmean(s for s, _ in spent):.0f} ms | "
                    f"{1e3 * statistics.fmean(c for _, c in spent):.0f} ms | "
                    f"{1e3 / rate['floor'] * args.rows:.0f} ms |")
                print(f"| {label} | {rate['floor'] / 1e6:.2f} M rows/s | "
                      f"{rate['npy'] / 1e6:.2f} M rows/s | {rate['csv'] / 1e6:.3f} M rows/s | "
                      f"**{rate['npy'] / rate['floor npy']:.1%}** | "
                      f"{rate['csv'] / rate['floor csv']:.1%} |")
        print("\nOne .npy request: wall time (median), then the mean CPU time of the server "
              "and of this bench's client (upload, download, np.load); the floor's time")
        print("| model | .npy wall | server CPU | client CPU | floor |")
        print("|---|---|---|---|---|")
        print("\n".join(cpu_rows))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
