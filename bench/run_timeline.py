"""Where a run with ``Prefer: wait`` spends its time, from the run's stored stamps.

    .venv/bin/python bench/run_timeline.py [--runs 120]

Starts the real server (SQLite, 2 worker processes) on a loopback port, then runs the
tutorial's 10 epochs with ``Prefer: wait=30`` ``--runs`` times (the first 20 warm up) and
splits each request's wall time at the run's ``created_at``, ``started_at`` and
``finished_at`` (the server's clock is this machine's clock):

* send -> created: HTTP, authentication, validation, the queue's checks, up to the INSERT;
* created -> started: the commit, the hand-off to a worker process, its claim;
* started -> finished: the worker loads the data, trains, writes the history and the end;
* finished -> answer: the commit, the worker's news to the server, the read of the ended
  run, the response.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.servers import sqlite_url, start_server

WARM_UP = 20


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=120)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="tapeline-timeline-"))
    server = start_server(sqlite_url(folder), folder / "server.log",
                          TAPELINE_LOG_LEVEL="warning", TAPELINE_WORKERS="2")
    parts: list[tuple[float, ...]] = []
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            dataset = client.post("/v1/datasets/synthetic", json={}).json()["id"]
            for index in range(args.runs + WARM_UP):
                model = client.post("/v1/models").json()["id"]
                sent = time.time()
                run = client.post(f"/v1/models/{model}/runs",
                                  json={"dataset_id": dataset, "epochs": 10},
                                  headers={"Prefer": "wait=30"}).json()
                answered = time.time()
                assert run["status"] == "succeeded", run
                if index >= WARM_UP:
                    created, started, finished = (stamp(run[k]) for k in
                                                  ("created_at", "started_at", "finished_at"))
                    parts.append((created - sent, started - created, finished - started,
                                  answered - finished, answered - sent))
    finally:
        server.stop()
    names = ("send -> created", "created -> started", "started -> finished",
             "finished -> answer", "whole request")
    print(f"run with Prefer: wait, tutorial (10 epochs), medians of {len(parts)}:")
    for k, name in enumerate(names):
        print(f"  {name:20s} {statistics.median(p[k] for p in parts) * 1000:6.2f} ms")


if __name__ == "__main__":
    main()
