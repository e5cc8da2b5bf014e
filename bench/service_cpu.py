"""Where the tutorial workflow's time goes, in CPU time (robust on a shared machine).

    .venv/bin/python bench/service_cpu.py [--repeats 200]

Starts the real server (SQLite, 2 workers) and, for each request of the workflow and for bare
``/healthz``, sends it ``--repeats`` times from one client and reads the CPU time (user +
system, from /proc) that the server process and its worker processes spent meanwhile, per
request; with the wall time of each, median. The wall time minus the CPU time is waiting:
the loopback, wake-ups, the hand-off to a worker and back.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.servers import sqlite_url, start_server  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


def measure(pid: int, workers: list[int], call: Callable[[], object], repeats: int
            ) -> tuple[float, float, float]:
    """Per call: median wall ms, server CPU ms, workers' CPU ms."""
    walls = []
    server0, workers0 = cpu_seconds(pid), sum(cpu_seconds(w) for w in workers)
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        walls.append((time.perf_counter() - start) * 1000)
    server = (cpu_seconds(pid) - server0) * 1000 / repeats
    work = (sum(cpu_seconds(w) for w in workers) - workers0) * 1000 / repeats
    return statistics.median(walls), server, work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="tapeline-cpu-"))
    server = start_server(sqlite_url(folder), folder / "server.log",
                          TAPELINE_LOG_LEVEL="warning", TAPELINE_WORKERS="2")
    try:
        pid = server.process.pid
        with httpx.Client(base_url=server.url, timeout=60) as client:
            dataset = client.post("/v1/datasets/synthetic", json={"seed": 1}).json()["id"]
            time.sleep(1.0)
            workers = children(pid)
            models: list[str] = []
            runs: list[str] = []

            def model() -> None:
                models.append(client.post("/v1/models").json()["id"])

            def run() -> None:
                answer = client.post(f"/v1/models/{models.pop()}/runs",
                                     headers={"prefer": "wait=30"},
                                     json={"dataset_id": dataset})
                assert answer.json()["status"] == "succeeded", answer.text
                runs.append(answer.json()["id"])

            def history() -> None:
                assert len(client.get(f"/v1/runs/{runs.pop()}/history").json()["items"]) == 10

            for _ in range(20):  # warm up
                model()
                run()
                history()
                client.get("/healthz")
            rows = [
                ("/healthz", lambda: client.get("/healthz")),
                ("synthesize", lambda: client.post("/v1/datasets/synthetic", json={"seed": 1})),
                ("create model", model),
                ("run, Prefer: wait", run),
                ("history", history),
            ]
            print(f"{args.repeats} of each, one client; per request: wall median, server CPU, "
                  f"workers' CPU (mean); {len(workers)} child processes")
            total = [0.0, 0.0, 0.0]
            for name, call in rows:
                wall, cpu, work = measure(pid, workers, call, args.repeats)
                print(f"  {name:<20}{wall:7.2f} ms wall {cpu:7.2f} ms server {work:7.2f} ms "
                      "workers")
                if name != "/healthz":
                    total = [total[0] + wall, total[1] + cpu, total[2] + work]
                else:
                    health = (wall, cpu)
            print(f"  {'workflow (sum)':<20}{total[0]:7.2f} ms wall {total[1]:7.2f} ms server "
                  f"{total[2]:7.2f} ms workers")
            print(f"  ratio to 4 x /healthz: wall {total[0] / (4 * health[0]):.2f}, CPU "
                  f"{(total[1] + total[2]) / (4 * health[1]):.2f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
