"""Webhook latency: from a run's end to a receiver's receipt of its ``run.succeeded``, against
the same run's ``end`` event read on an SSE stream in the same run.

    .venv/bin/python bench/webhooks.py                 # 200 runs, `local` then `queue`
    .venv/bin/python bench/webhooks.py --runs 50 --only local

Each run (a small linear model, 5 epochs of 200 examples) is started with an SSE reader of
its events already open; the run's end is its stored ``finished_at`` (stamped in the
transaction that ends it, on this machine's clock, like both receipts). A receiver on a
loopback port (verifying every signature with ``standardwebhooks``) records when each
``run.succeeded`` arrives; the reader records when the ``end`` event arrives. Figures: p50
and p99 of each latency over the runs, and the ratio of the p50s (target with ``local``:
<= 2). ``queue`` runs one API server and one ``tapeline worker`` on a fresh PostgreSQL schema
(TAPELINE_BENCH_POSTGRES_URL, default the local server's ``test`` database); reported only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.postgres import fresh_schema  # noqa: E402
from tests.support.receiver import Receiver  # noqa: E402
from tests.support.servers import sqlite_url, start_server, start_worker  # noqa: E402

BASE = os.environ.get("TAPELINE_BENCH_POSTGRES_URL",
                      "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ENV = {"TAPELINE_WEBHOOK_ALLOW_PRIVATE": "true", "TAPELINE_LOG_LEVEL": "warning",
       "TAPELINE_WORKERS": "1"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def topology(executor: str) -> Iterator[str]:
    """A server (and, for ``queue``, a worker) ready to serve; its URL."""
    folder = Path(tempfile.mkdtemp(prefix=f"tapeline-bench-webhooks-{executor}-"))
    if executor == "local":
        server = start_server(sqlite_url(folder), folder / "server.log", **ENV)
        try:
            yield server.url
        finally:
            server.stop()
        return
    with fresh_schema(BASE) as url:
        env = {**ENV, "TAPELINE_EXECUTOR": "queue", "TAPELINE_WORKER_TIMEOUT": "10"}
        server = start_server(url, folder / "server.log", **env)
        worker = start_worker(url, folder / "worker.log", **env)
        try:
            yield server.url
        finally:
            worker.stop()
            server.stop()


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def measure(executor: str, runs: int) -> dict[str, Any]:
    """Latencies of ``runs`` runs' ends: by webhook and by SSE, in ms."""
    receiver = Receiver().start()
    hooked, streamed = [], []
    with topology(executor) as url, httpx.Client(base_url=url, timeout=120) as api:
        made = api.post("/v1/webhooks", json={"url": receiver.url, "events": ["run.succeeded"]})
        receiver.secrets.append(made.json()["secret"])
        dataset = api.post("/v1/datasets/synthetic", json={"num_examples": 200}).json()["id"]
        model = api.post("/v1/models").json()["id"]
        for index in range(runs + 2):  # the first two warm up
            run = api.post(f"/v1/models/{model}/runs",
                           json={"dataset_id": dataset, "epochs": 5}).json()["id"]
            with api.stream("GET", f"/v1/runs/{run}/events",
                            headers={"accept": "text/event-stream"}) as stream:
                for line in stream.iter_lines():
                    if line == "event: end":
                        ended_on_stream = time.time()
                        break
            receiver.wait_for(lambda got, run=run: any(
                r.body["data"]["id"] == run for r in got))
            [received] = [r for r in receiver.received if r.body["data"]["id"] == run]
            finished = stamp(api.get(f"/v1/runs/{run}").json()["finished_at"])
            if index >= 2:
                hooked.append((received.at - finished) * 1000)
                streamed.append((ended_on_stream - finished) * 1000)
    receiver.stop()
    assert receiver.unsigned == 0
    figures = {"executor": executor, "runs": runs,
               "webhook_p50_ms": pct(hooked, 0.5), "webhook_p99_ms": pct(hooked, 0.99),
               "sse_p50_ms": pct(streamed, 0.5), "sse_p99_ms": pct(streamed, 0.99)}
    figures["p50_ratio"] = figures["webhook_p50_ms"] / figures["sse_p50_ms"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--only", choices=["local", "queue"])
    args = parser.parse_args()
    for executor in [args.only] if args.only else ["local", "queue"]:
        figures = measure(executor, args.runs)
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v
                          for k, v in figures.items()}))
        print(f"{executor}: run end -> webhook p50 {figures['webhook_p50_ms']:.1f} ms, "
              f"p99 {figures['webhook_p99_ms']:.1f} ms; -> SSE end p50 "
              f"{figures['sse_p50_ms']:.1f} ms, p99 {figures['sse_p99_ms']:.1f} ms; "
              f"p50 ratio {figures['p50_ratio']:.2f}"
              + (" (target <= 2)" if executor == "local" else ""))


if __name__ == "__main__":
    main()
