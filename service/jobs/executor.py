"""The executor: a pool of long-lived worker processes that train queued runs in FIFO order.

Training never runs in the server process, so the event loop stays responsive and runs use
every core. Each worker owns a store connection and writes history itself; the parent only
dispatches run ids, relays cancel requests through shared memory, and turns the workers'
announcements into wake-ups for waiting readers.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import queue
import signal
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger("tapeline.jobs")

NO_TOKEN = 0


def _worker_main(
    index: int, database_url: str, tasks: Connection, events: Any, cancel_tokens: Any
) -> None:
    """A worker process: train each run id it is sent until it is sent ``None``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from service.jobs.runner import execute_run
    from service.store.db import make_engine, make_sessionmaker

    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    events.put(("ready", index, None, None))
    while True:
        task = tasks.recv()
        if task is None:
            break
        token, run_id = task

        def cancelled(token: int = token) -> bool:
            return bool(cancel_tokens[index] == token)

        def announce(news_of: str) -> None:
            events.put(("news", index, news_of, None))

        status = execute_run(sessions, run_id, cancelled=cancelled, announce=announce)
        events.put(("done", index, run_id, status))
    engine.dispose()


@dataclass
class _Worker:
    process: Any
    tasks: Connection
    run_id: str | None = None
    token: int = NO_TOKEN
    ready: bool = False


@dataclass
class ExecutorStats:
    """Counters the metrics endpoint reads."""

    epochs_announced: int = 0
    runs_finished: dict[str, int] = field(default_factory=dict)


class ProcessExecutor:
    """Runs queued runs on ``workers`` processes; at most that many train at once."""

    def __init__(
        self,
        database_url: str,
        workers: int,
        on_news: Callable[[str], None],
        on_crash: Callable[[str], None],
    ) -> None:
        self._url = database_url
        self._size = workers
        self._on_news = on_news
        self._on_crash = on_crash
        self._ctx = mp.get_context("spawn")
        self._events: Any = self._ctx.Queue()
        self._cancel_tokens: Any = self._ctx.RawArray("q", workers)
        self._workers: list[_Worker] = []
        self._queue: deque[str] = deque()
        self._lock = threading.Lock()
        self._next_token = NO_TOKEN
        self._stopping = threading.Event()
        self._collector: threading.Thread | None = None
        self.stats = ExecutorStats()

    def _spawn(self, index: int) -> _Worker:
        parent_end, child_end = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=_worker_main,
            name=f"tapeline-worker-{index}",
            daemon=True,
            args=(index, self._url, parent_end, self._events, self._cancel_tokens),
        )
        process.start()
        parent_end.close()
        return _Worker(process=process, tasks=child_end)

    def start(self) -> None:
        """Start the worker processes and the thread that listens to them."""
        self._workers = [self._spawn(i) for i in range(self._size)]
        self._collector = threading.Thread(
            target=self._collect, name="tapeline-collector", daemon=True
        )
        self._collector.start()

    def submit(self, run_id: str) -> None:
        """Queue a run; it starts as soon as a worker is free, in submission order."""
        with self._lock:
            self._queue.append(run_id)
            self._dispatch()

    def cancel(self, run_id: str) -> None:
        """Drop a queued run, or tell the worker training it to stop at the next epoch."""
        with self._lock:
            if run_id in self._queue:
                self._queue.remove(run_id)
                return
            for index, worker in enumerate(self._workers):
                if worker.run_id == run_id:
                    self._cancel_tokens[index] = worker.token

    @property
    def busy(self) -> int:
        """How many workers are training right now."""
        return sum(1 for w in self._workers if w.run_id is not None)

    @property
    def queued(self) -> int:
        """How many runs wait for a worker."""
        return len(self._queue)

    def _dispatch(self) -> None:
        for worker in self._workers:
            if not self._queue:
                return
            if worker.ready and worker.run_id is None:
                run_id = self._queue.popleft()
                self._next_token += 1
                worker.run_id, worker.token = run_id, self._next_token
                worker.tasks.send((worker.token, run_id))

    def _collect(self) -> None:
        while not self._stopping.is_set():
            try:
                kind, index, run_id, status = self._events.get(timeout=0.5)
            except queue.Empty:
                self._check_liveness()
                continue
            except (EOFError, OSError):
                return
            if kind == "news":
                self.stats.epochs_announced += 1
                self._on_news(run_id)
                continue
            with self._lock:
                worker = self._workers[index]
                if kind == "ready":
                    worker.ready = True
                elif kind == "done":
                    worker.run_id, worker.token = None, NO_TOKEN
                    if status is not None:
                        finished = self.stats.runs_finished
                        finished[status] = finished.get(status, 0) + 1
                self._dispatch()
            if kind == "done":
                self._on_news(run_id)

    def _check_liveness(self) -> None:
        crashed: list[str] = []
        with self._lock:
            for index, worker in enumerate(self._workers):
                if self._stopping.is_set() or worker.process.is_alive():
                    continue
                log.error(
                    "worker %d died (exit code %s); starting another",
                    index,
                    worker.process.exitcode,
                )
                if worker.run_id is not None:
                    crashed.append(worker.run_id)
                self._workers[index] = self._spawn(index)
        for run_id in crashed:
            self._on_crash(run_id)
            self._on_news(run_id)

    def stop(self, timeout: float = 3.0) -> list[str]:
        """Stop every worker (a run in progress is abandoned) and return the abandoned run ids
        together with the runs still queued."""
        self._stopping.set()
        with self._lock:
            abandoned = [w.run_id for w in self._workers if w.run_id is not None]
            abandoned.extend(self._queue)
            self._queue.clear()
            for worker in self._workers:
                if worker.run_id is None:
                    with contextlib.suppress(OSError):
                        worker.tasks.send(None)
        for worker in self._workers:
            worker.process.join(timeout if worker.run_id is None else 0)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(timeout)
            worker.tasks.close()
        if self._collector is not None:
            self._collector.join(timeout)
        self._events.close()
        self._events.join_thread()
        return abandoned
