"""What ``tapeline worker`` serves on ``TAPELINE_WORKER_METRICS_PORT``: Prometheus metrics (runs
trained, epochs stored and heartbeat age per worker process) and, at ``/healthz``, a liveness
check that answers 503 once a worker process has shown no sign of life for longer than
``TAPELINE_WORKER_LIVENESS_SECONDS``: its event loop stopped beating, or the run it trains
reached no epoch boundary (a training loop stuck). The supervisor serves both from a thread;
the figures are doubles in shared memory that each worker process writes.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

# The figures of worker process i are stats[i * STATS + field]: runs trained, epochs stored,
# its event loop's last beat and, while it trains a run, the run's last sign of progress (the
# attempt starting, then each epoch boundary; 0 while it trains nothing). Times are time.time().
RUNS, EPOCHS, BEAT, PROGRESS = range(4)
STATS = 4


def heartbeat_age(stats: Any, index: int, now: float) -> float:
    """Seconds since worker process ``index`` last showed it is alive: the older of its event
    loop's beat and, while it trains, its run's progress (infinite before the first beat)."""
    beat = stats[index * STATS + BEAT]
    if not beat:
        return math.inf
    age = now - beat
    progress = stats[index * STATS + PROGRESS]
    if progress:
        age = max(age, now - progress)
    return max(age, 0.0)


def health(stats: Any, count: int, bound: float, now: float | None = None
           ) -> tuple[bool, dict[str, Any]]:
    """Whether every worker process showed a sign of life within ``bound`` seconds, and the
    report ``/healthz`` answers with."""
    now = time.time() if now is None else now
    processes = []
    for index in range(count):
        age = heartbeat_age(stats, index, now)
        processes.append({
            "process": index,
            "heartbeat_age_seconds": round(age, 3) if math.isfinite(age) else None,
            "training": bool(stats[index * STATS + PROGRESS]),
            "alive": age <= bound,
        })
    alive = all(process["alive"] for process in processes)
    return alive, {"status": "ok" if alive else "stuck", "liveness_seconds": bound,
                   "processes": processes}


class WorkerCollector:
    """The worker processes' figures as Prometheus metrics."""

    def __init__(self, stats: Any, count: int) -> None:
        self._stats, self._count = stats, count

    def collect(self) -> Iterator[Any]:
        stats = self._stats
        runs = CounterMetricFamily("tapeline_worker_runs", "Run attempts trained",
                                   labels=["process"])
        epochs = CounterMetricFamily("tapeline_worker_epochs", "Epochs stored (their rate() is "
                                     "epochs per second)", labels=["process"])
        age = GaugeMetricFamily("tapeline_worker_heartbeat_age_seconds", "Seconds since the "
                                "worker process last showed it is alive (its event loop, and "
                                "while it trains, an epoch boundary)", labels=["process"])
        now = time.time()
        for i in range(self._count):
            runs.add_metric([str(i)], stats[i * STATS + RUNS])
            epochs.add_metric([str(i)], stats[i * STATS + EPOCHS])
            age.add_metric([str(i)], heartbeat_age(stats, i, now))
        yield runs
        yield epochs
        yield age


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood the log: say nothing."""


def serve(port: int, stats: Any, count: int, bound: float, host: str = "0.0.0.0") -> WSGIServer:
    """Serve ``/healthz`` and the metrics (any other path) on ``host:port`` from a daemon
    thread; the server (``shutdown()`` stops it)."""
    REGISTRY.register(WorkerCollector(stats, count))
    metrics = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/healthz":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        alive, report = health(stats, count, bound)
        body = json.dumps(report).encode()
        start_response("200 OK" if alive else "503 Service Unavailable",
                       [("Content-Type", "application/json"),
                        ("Content-Length", str(len(body))), ("Cache-Control", "no-store")])
        return [body]

    server = make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
    return server
