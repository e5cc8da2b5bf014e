"""Cheap raw-socket clients for crowd tests and benchmarks: hundreds of SSE readers in one
event loop, connections that stall mid-body, and /healthz sampled while something else runs.

A crowd runs in its own process (:func:`in_process`), so its work does not slow the process
that measures latency."""

from __future__ import annotations

import asyncio
import math
import os
import resource
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import numpy as np

T = TypeVar("T")


def raise_open_files() -> int:
    """Raise this process's open-file limit to its hard limit; the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def in_process(fn: Callable[..., T], *args: Any) -> Future[T]:
    """Run ``fn(*args)`` in a fresh process; its result as a future."""
    pool = ProcessPoolExecutor(1, mp_context=get_context("spawn"))
    future = pool.submit(fn, *args)
    future.add_done_callback(lambda _: pool.shutdown(wait=False))
    return future


@dataclass
class Reading:
    """What one SSE reader received: epoch ids in order, when its stream started (the answer's
    headers) and when the end event came."""

    epochs: list[int] = field(default_factory=list)
    connected_at: float | None = None
    ended_at: float | None = None
    error: str | None = None


async def _read_sse(url: str, path: str) -> Reading:
    parts = urlsplit(url)
    reading = Reading()
    try:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    except OSError as error:
        reading.error = f"connect: {error}"
        return reading
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     "Accept: text/event-stream\r\nConnection: close\r\n\r\n".encode())
        status = await reader.readline()
        if b" 200 " not in status:
            reading.error = status.decode(errors="replace").strip()
            return reading
        while (await reader.readline()).strip():
            pass  # headers
        reading.connected_at = time.time()
        text = ""
        while reading.ended_at is None:
            size = int((await reader.readline()).strip() or b"0", 16)
            if size == 0:
                reading.error = "stream ended without an end event"
                break
            text += (await reader.readexactly(size + 2))[:-2].decode()
            *events, text = text.split("\n\n")
            for event in events:
                fields = dict(line.split(": ", 1) for line in event.splitlines()
                              if ": " in line and not line.startswith(":"))
                if fields.get("event") == "epoch":
                    reading.epochs.append(int(fields["id"]))
                elif fields.get("event") == "end":
                    reading.ended_at = time.time()
    except (OSError, asyncio.IncompleteReadError, ValueError) as error:
        reading.error = f"{type(error).__name__}: {error}"
    finally:
        writer.close()
    return reading


def sse_crowd(url: str, path: str, readers: int, cpus: set[int] | None = None) -> list[Reading]:
    """``readers`` concurrent SSE readers of ``path``, each until the end event; with ``cpus``,
    this process runs on those CPUs only (the readers' own work kept off the service's)."""
    raise_open_files()
    if cpus is not None:
        os.sched_setaffinity(0, cpus)

    async def crowd() -> list[Reading]:
        return list(await asyncio.gather(*(_read_sse(url, path) for _ in range(readers))))

    return asyncio.run(crowd())


def stalled_bodies(url: str, path: str, count: int, hold: float) -> list[bytes]:
    """``count`` connections that send headers promising 1000 body bytes and then only 10;
    after ``hold`` seconds at most, what each received (its answer, if any)."""
    raise_open_files()
    parts = urlsplit(url)

    async def stall() -> bytes:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            writer.write(f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                         "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                         '{"x": [1, '.encode())
            await writer.drain()
            try:
                async with asyncio.timeout(hold):
                    return await reader.read(65536) + await reader.read(65536)
            except TimeoutError:
                return b""
        finally:
            writer.close()

    async def crowd() -> list[bytes]:
        return list(await asyncio.gather(*(stall() for _ in range(count))))

    return asyncio.run(crowd())


class HealthSampler:
    """Times ``GET /healthz`` every ``interval`` seconds on a thread until stopped."""

    def __init__(self, url: str, interval: float = 0.02) -> None:
        self.url, self.interval = url, interval
        self.latencies: list[float] = []
        self.times: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                start = time.perf_counter()
                try:
                    ok = client.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.latencies.append(time.perf_counter() - start)
                    self.times.append(time.time())
                else:
                    self.failures += 1
                self._stop.wait(self.interval)

    def __enter__(self) -> HealthSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def p99_ms(self, start: float = 0.0, end: float = math.inf) -> float:
        """The 99th percentile latency in milliseconds (of the samples taken between the POSIX
        times ``start`` and ``end``)."""
        chosen = [ms for at, ms in zip(self.times, self.latencies, strict=True)
                  if start <= at <= end]
        return percentile(chosen, 99) * 1000


def idle_p99_ms(url: str, seconds: float = 1.0) -> float:
    """/healthz p99 with nothing else going on: what the machine itself adds (on a shared
    machine, other jobs' load), the baseline a measurement under load is judged against."""
    with HealthSampler(url) as idle:
        time.sleep(seconds)
    return idle.p99_ms()


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)


def post_file(url: str, path: str, name: str, content_type: str) -> tuple[int, Any]:
    """POST the file at ``path`` as the multipart field ``file``; the status and JSON answer."""
    with open(path, "rb") as file:
        answer = httpx.post(url, files={"file": (name, file, content_type)}, timeout=300)
    return answer.status_code, answer.json()


def post_json(url: str, path: str) -> tuple[int, Any]:
    """POST the JSON document at ``path``; the status and JSON answer."""
    with open(path, "rb") as file:
        answer = httpx.post(url, content=file.read(), timeout=300,
                            headers={"content-type": "application/json"})
    return answer.status_code, answer.json()


def big_csv(size: int = 64 * (1 << 20) - 4096) -> bytes:
    """A CSV of three features and y just under ``size`` bytes (1.59 million rows for the
    default, just under the 64 MiB body limit)."""
    rng = np.random.default_rng(0)
    block = "".join(f"{a:.7f},{b:.7f},{c:.7f},{d:.7f}\n" for a, b, c, d in
                    rng.normal(size=(10_000, 4)))
    return ("x0,x1,x2,y\n" + block * ((size - 11) // len(block))).encode()
