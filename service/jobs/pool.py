"""The process pool of the ``local`` executor: long-lived worker processes in the server that
train queued runs, taken fairly across tenants.

Training never runs in the server process, so the event loop stays responsive and runs use
every core. Each worker owns a store connection and writes history itself; the parent only
dispatches run ids over one pipe per worker, relays cancel requests through shared memory,
and turns the workers' announcements into wake-ups for waiting readers. One thread waits on
every pipe and every process sentinel, so news and a worker's death are seen at once.

A worker never outlives the server: the kernel kills it the moment its parent dies (and an
idle one also leaves at its pipe's end), so it writes nothing after; the next start settles
its run as interrupted, and no run is ever trained by two processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.jobs.attempt import Claim

log = logging.getLogger("tapeline.jobs")

NO_TOKEN = 0
RESPAWN_BACKOFF_SECONDS = 2.0
PR_SET_PDEATHSIG = 1
PARENT_WATCH_SECONDS = 0.2


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_WATCH_SECONDS)
    os._exit(1)


def exit_with_parent(parent_pid: int) -> None:
    """Make this process die the moment ``parent_pid`` does: SIGKILL from the kernel on Linux
    (nothing more is written), a watchdog thread elsewhere."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    else:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    if os.getppid() != parent_pid:  # it died before we asked
        os._exit(1)


def _worker_main(
    index: int,
    database_url: str,
    conn: Connection,
    cancel_tokens: Any,
    looks: Any,
    parent_pid: int,
    log_level: str,
    claim: Claim | None = None,
) -> None:
    """A worker process: train each run id it is sent until it is sent ``None`` or its parent
    is gone."""
    exit_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from service.jobs.attempt import execute_run
    from service.logs import configure_logging
    from service.store.db import make_engine, make_sessionmaker

    configure_logging(log_level)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    conn.send(("ready", None, None))
    while True:
        try:
            task = conn.recv()
        except EOFError:
            os._exit(1)  # the server is gone: leave without touching the store
        if task is None:
            break
        token, run_id = task

        def cancelled(token: int = token) -> bool:
            return bool(cancel_tokens[index] == token)

        def announce(news_of: str, ended: bool | None) -> None:
            conn.send(("news", news_of, ended))

        status = execute_run(sessions, run_id, claim=claim, cancelled=cancelled,
                             announce=announce, looked=lambda: int(looks[index]))
        conn.send(("done", run_id, status))
    engine.dispose()


class FairQueue:
    """Run ids waiting for a worker, taken round-robin across their owners (tenants): one
    owner's thousand queued runs never starve another owner's one."""

    def __init__(self) -> None:
        self._by_owner: dict[str, deque[str]] = {}
        self._turns: deque[str] = deque()  # owners with runs waiting, next turn first

    def append(self, run_id: str, owner: str) -> None:
        waiting = self._by_owner.get(owner)
        if waiting is None:
            waiting = self._by_owner[owner] = deque()
            self._turns.append(owner)
        waiting.append(run_id)

    def popleft(self) -> str:
        owner = self._turns.popleft()
        waiting = self._by_owner[owner]
        run_id = waiting.popleft()
        if waiting:
            self._turns.append(owner)
        else:
            del self._by_owner[owner]
        return run_id

    def remove(self, run_id: str) -> None:
        for owner, waiting in list(self._by_owner.items()):
            if run_id in waiting:
                waiting.remove(run_id)
                if not waiting:
                    del self._by_owner[owner]
                    self._turns.remove(owner)
                return

    def drain(self) -> list[str]:
        taken = [self.popleft() for _ in range(len(self))]
        return taken

    def __contains__(self, run_id: object) -> bool:
        return any(run_id in waiting for waiting in self._by_owner.values())

    def __len__(self) -> int:
        return sum(len(waiting) for waiting in self._by_owner.values())

    def __bool__(self) -> bool:
        return bool(self._turns)


@dataclass
class _Worker:
    process: Any
    conn: Connection
    run_id: str | None = None
    token: int = NO_TOKEN
    ready: bool = False
    born: float = field(default_factory=time.monotonic)


class ProcessPool:
    """Runs queued runs on ``workers`` processes; at most that many train at once."""

    def __init__(
        self,
        database_url: str,
        workers: int,
        on_news: Callable[[str, bool | None], None],
        on_crash: Callable[[str], None],
        log_level: str = "info",
        claim: Claim | None = None,
    ) -> None:
        self._url = database_url
        self._claim = claim
        self._log_level = log_level
        self._size = workers
        self._on_news = on_news
        self._on_crash = on_crash
        self._ctx = mp.get_context("spawn")
        self._cancel_tokens: Any = self._ctx.RawArray("q", workers)
        self._looks: Any = self._ctx.RawArray("q", workers)  # bumped: read the run's controls
        self._workers: list[_Worker] = []
        self._queue: FairQueue = FairQueue()
        self._lock = threading.Lock()
        self._next_token = NO_TOKEN
        self._stopping = threading.Event()
        self._wake_read, self._wake_write = self._ctx.Pipe(duplex=False)
        self._collector: threading.Thread | None = None

    def _spawn(self, index: int) -> _Worker:
        parent_end, child_end = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_worker_main,
            name=f"tapeline-worker-{index}",
            daemon=True,
            args=(index, self._url, child_end, self._cancel_tokens, self._looks, os.getpid(),
                  self._log_level, self._claim),
        )
        process.start()
        child_end.close()
        return _Worker(process=process, conn=parent_end)

    def start(self) -> None:
        """Start the worker processes and the thread that listens to them."""
        self._workers = [self._spawn(i) for i in range(self._size)]
        self._collector = threading.Thread(
            target=self._collect, name="tapeline-collector", daemon=True
        )
        self._collector.start()

    def submit(self, run_id: str, owner: str = "default") -> None:
        """Queue a run; it starts as soon as a worker is free: round-robin across owners,
        each owner's runs in submission order."""
        with self._lock:
            self._queue.append(run_id, owner)
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

    def look(self, run_id: str) -> None:
        """Tell the worker training the run (if one is) to read its controls in the store at
        its next epoch boundary."""
        with self._lock:
            for index, worker in enumerate(self._workers):
                if worker.run_id == run_id:
                    self._looks[index] += 1

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
                worker.conn.send((worker.token, run_id))

    def _collect(self) -> None:
        """Wait on every worker's pipe and process at once: messages and deaths alike."""
        while not self._stopping.is_set():
            with self._lock:
                by_handle: dict[Any, tuple[int, str]] = {self._wake_read: (-1, "wake")}
                for index, worker in enumerate(self._workers):
                    by_handle[worker.conn] = (index, "message")
                    by_handle[worker.process.sentinel] = (index, "exit")
            for handle in wait(list(by_handle)):
                index, kind = by_handle[handle]
                if kind == "wake" or self._stopping.is_set():
                    return
                if kind == "message":
                    try:
                        message = self._workers[index].conn.recv()
                    except (EOFError, OSError):
                        continue  # the sentinel reports the death
                    self._handle(index, *message)
                else:
                    self._replace_dead(index)

    def _handle(self, index: int, kind: str, run_id: str | None, said: Any) -> None:
        """A worker's message: ``ready``; ``news`` of a run (``said``: whether it ended, None if
        not known); ``done`` with a run (``said``: its status)."""
        with self._lock:
            worker = self._workers[index]
            if kind == "ready":
                worker.ready = True
            elif kind == "done":
                worker.run_id, worker.token = None, NO_TOKEN
            self._dispatch()
        if kind == "news" and run_id is not None:
            self._on_news(run_id, said)

    def _replace_dead(self, index: int) -> None:
        worker = self._workers[index]
        if time.monotonic() - worker.born < RESPAWN_BACKOFF_SECONDS:
            # It died young (a broken install, say): don't spin; queued runs wait meanwhile.
            self._stopping.wait(RESPAWN_BACKOFF_SECONDS)
        with self._lock:
            if worker.process.is_alive() or self._stopping.is_set():
                return
            log.error(
                "worker %d died (exit code %s); starting another", index, worker.process.exitcode
            )
            crashed = worker.run_id
            worker.conn.close()
            self._workers[index] = self._spawn(index)
        if crashed is not None:
            self._on_crash(crashed)
            self._on_news(crashed, None)

    def stop(self, timeout: float = 3.0) -> list[str]:
        """Stop every worker (a run in progress is abandoned) and return the abandoned run ids
        together with the runs still queued."""
        self._stopping.set()
        self._wake_write.send(None)
        if self._collector is not None:
            self._collector.join(timeout)
        with self._lock:
            abandoned = [w.run_id for w in self._workers if w.run_id is not None]
            abandoned.extend(self._queue.drain())
            for worker in self._workers:
                if worker.run_id is None:
                    with contextlib.suppress(OSError):
                        worker.conn.send(None)
        for worker in self._workers:
            worker.process.join(timeout if worker.run_id is None else 0)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(timeout)
            worker.conn.close()
        return abandoned
