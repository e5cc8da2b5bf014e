"""Compare the tutorial workflow of two checkouts, interleaved: a change's cost on the service.

    git worktree add /tmp/before main
    .venv/bin/python bench/service_ab.py /tmp/before [--workflows 250]

Starts ``tapeline serve`` from each checkout (this one and the other, each on SQLite with two
workers) and drives them alternately with bench/service.py's workflow (synthesize, create a
model, run 10 epochs with ``Prefer: wait``, fetch the history), each workflow followed by
four bare ``/healthz`` round trips on the same server. Both servers see the same load on a
shared machine, so the ratio of each one's workflow median to its own floor compares them
fairly; per-request medians show where a difference comes from.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.servers import free_port  # noqa: E402

STEPS = ("synthesize", "model", "run", "history")


def serve(checkout: Path, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``tapeline serve`` from ``checkout`` (its own code first on the path) on a fresh store."""
    port = free_port()
    environment = {**os.environ, "TAPELINE_DATABASE_URL": f"sqlite:///{folder}/tapeline.db",
                   "TAPELINE_PORT": str(port), "TAPELINE_HOST": "127.0.0.1",
                   "TAPELINE_LOG_LEVEL": "warning", "TAPELINE_WORKERS": "2"}
    process = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], cwd=checkout,
                               env=environment, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the server of {checkout} did not start")


def workflow(client: httpx.Client) -> list[float]:
    """The tutorial over HTTP; the milliseconds of each of its four requests."""
    marks = [time.perf_counter()]
    dataset = client.post("/v1/datasets/synthetic", json={"seed": 1})
    marks.append(time.perf_counter())
    model = client.post("/v1/models")
    marks.append(time.perf_counter())
    run = client.post(f"/v1/models/{model.json()['id']}/runs", headers={"prefer": "wait=30"},
                      json={"dataset_id": dataset.json()["id"]})
    assert run.status_code == 200 and run.json()["status"] == "succeeded", run.text
    marks.append(time.perf_counter())
    history = client.get(f"/v1/runs/{run.json()['id']}/history")
    marks.append(time.perf_counter())
    assert len(history.json()["items"]) == 10
    return [(b - a) * 1000 for a, b in itertools.pairwise(marks)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("other", type=Path, help="the checkout to compare this one with")
    parser.add_argument("--workflows", type=int, default=250)
    args = parser.parse_args()
    checkouts = {"other": args.other.resolve(), "this": ROOT}
    servers = {name: serve(path, Path(tempfile.mkdtemp(prefix="tapeline-ab-")))
               for name, path in checkouts.items()}
    steps: dict[str, list[list[float]]] = {name: [] for name in servers}
    floors: dict[str, list[float]] = {name: [] for name in servers}
    try:
        clients = {name: httpx.Client(base_url=url, timeout=60)
                   for name, (_, url) in servers.items()}
        for client in clients.values():
            for _ in range(10):
                workflow(client)
        for _ in range(args.workflows):
            for name, client in clients.items():
                steps[name].append(workflow(client))
                start = time.perf_counter()
                for _ in range(4):
                    client.get("/healthz")
                floors[name].append((time.perf_counter() - start) * 1000)
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait()
    print(f"tutorial workflow, {args.workflows} interleaved rounds, medians")
    ratios = {}
    for name, path in checkouts.items():
        total = statistics.median(sum(s) for s in steps[name])
        floor = statistics.median(floors[name])
        ratios[name] = total / floor
        parts = "  ".join(f"{step} {statistics.median(s[i] for s in steps[name]):.2f}"
                          for i, step in enumerate(STEPS))
        print(f"  {name:<5} {path}: workflow {total:.2f} ms, 4 x /healthz {floor:.2f} ms, "
              f"ratio {ratios[name]:.2f}  ({parts} ms)")
    print(f"  this / other: {ratios['this'] / ratios['other']:.3f}")


if __name__ == "__main__":
    main()
