"""Prometheus metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from service.store.tables import RunStatus


class _StoreCollector(Collector):
    """Runs by status, epochs trained and executor load, read when scraped."""

    def __init__(self, read: Callable[[], tuple[dict[str, int], int, int, int]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Any]:
        by_status, epochs, busy, queued = self._read()
        runs = GaugeMetricFamily("tapeline_runs", "Runs by status.", labels=["status"])
        for status in RunStatus:
            runs.add_metric([status], by_status.get(status, 0))
        yield runs
        yield CounterMetricFamily(
            "tapeline_epochs_trained", "Epochs trained by all runs.", value=epochs
        )
        yield GaugeMetricFamily("tapeline_workers_busy", "Workers training now.", value=busy)
        yield GaugeMetricFamily("tapeline_runs_waiting", "Runs waiting for a worker.", value=queued)


class Metrics:
    """The app's own registry (so several apps can live in one process, as in tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "tapeline_http_requests",
            "HTTP requests answered.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "tapeline_http_request_duration_seconds",
            "HTTP request latency.",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self._requests.labels(method, route, str(status)).inc()
        self._latency.labels(method, route).observe(seconds)

    def watch_store(self, read: Callable[[], tuple[dict[str, int], int, int, int]]) -> None:
        """Report run counts, epochs trained and executor load from ``read`` at scrape time."""
        self.registry.register(_StoreCollector(read))

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
