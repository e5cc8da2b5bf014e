"""``tapeline worker``: processes that train the queue's runs, one run at a time each, and
deliver webhooks beside (``TAPELINE_WEBHOOK_CONCURRENCY`` attempts at a time each).

The command's process supervises ``concurrency`` worker processes (training is CPU-bound
NumPy: one process per core by default), restarts one that dies, and on SIGTERM / SIGINT
drains: every process hands its run back at the next epoch boundary with a checkpoint (the
next worker resumes it there) and exits. Each worker process runs a procrastinate worker
(heartbeats, LISTEN/NOTIFY for new jobs) and sweeps for stalled jobs and orphaned runs. With
``TAPELINE_WORKER_METRICS_PORT`` the supervisor serves Prometheus metrics (runs trained,
epochs per second and heartbeat age per worker process) and a liveness check, ``/healthz``
(:mod:`service.jobs.worker_probe`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from service.config import Settings
from service.jobs.worker_probe import BEAT, EPOCHS, PROGRESS, RUNS, STATS

log = logging.getLogger("tapeline.worker")

RESTART_BACKOFF_SECONDS = 2.0


def _child(index: int, settings: Settings, name: str, stats: Any, parent_pid: int) -> None:
    """A worker process: a procrastinate worker that trains one run at a time, its sweeps,
    and its figures in ``stats``; it drains on SIGTERM / SIGINT."""
    from service.jobs.attempt import Claim
    from service.jobs.notify import Listener
    from service.jobs.pool import exit_with_parent
    from service.jobs.queue import WorkerState, build_worker_app, conninfo, sweep_forever
    from service.jobs.webhooks import queued
    from service.jobs.webhooks.dispatch import Courier
    from service.logs import configure_logging
    from service.store import outbox
    from service.store.db import make_engine, make_sessionmaker

    exit_with_parent(parent_pid)
    configure_logging(settings.log_level)
    engine = make_engine(settings.database_url)
    state = WorkerState(make_sessionmaker(engine), Claim.of(settings, name))

    def ran() -> None:
        stats[index * STATS + RUNS] += 1

    def epochs(count: int) -> None:
        stats[index * STATS + EPOCHS] += count

    def progress(training: bool) -> None:
        stats[index * STATS + PROGRESS] = time.time() if training else 0.0

    state.on_run = ran
    state.on_epochs = epochs
    state.on_progress = progress
    app = build_worker_app(settings.database_url, state)
    courier = Courier(settings, state.sessions)
    # News of the run it trains (a pause asked) reaches the attempt at its next boundary.
    listener = Listener(conninfo(settings.database_url), state.told)
    listener.start()
    queued.add_task(app, courier)

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def made_due(delivery_ids: list[str]) -> None:  # in the thread that trains
            for delivery_id in delivery_ids:
                asyncio.run_coroutine_threadsafe(queued.defer(app, delivery_id), loop)

        outbox.watch(state.sessions, made_due)
        # How both procrastinate workers (training runs, webhook deliveries) poll and beat.
        polling: dict[str, Any] = {
            "install_signal_handlers": False,
            "update_heartbeat_interval": max(settings.worker_timeout / 3, 0.2),
            "stalled_worker_timeout": settings.worker_timeout,
            "fetch_job_polling_interval": max(min(settings.worker_timeout / 3, 5.0), 0.2),
            "listen_notify": True,
            "delete_jobs": "successful",
        }
        async with app.open_async():
            delivering = asyncio.create_task(app.run_worker_async(
                queues=[queued.QUEUE],
                concurrency=settings.webhook_concurrency,
                name=f"{name}:webhooks",
                **polling,
            ))
            worker = asyncio.create_task(app.run_worker_async(
                queues=["tapeline-runs"],
                concurrency=1,
                name=name,
                **polling,
            ))

            def drain() -> None:
                log.info("worker %s draining", name)
                state.draining.set()
                sweeper.cancel()  # its own job looks stalled once it unregisters
                webhook_sweeper.cancel()
                worker.cancel()
                delivering.cancel()  # an attempt in flight is taken again after its lease

            sweeper = asyncio.create_task(sweep_forever(app, state))
            webhook_sweeper = asyncio.create_task(
                queued.sweep_forever(app, courier, settings.worker_timeout))
            loop.add_signal_handler(signal.SIGTERM, drain)
            loop.add_signal_handler(signal.SIGINT, drain)

            async def beat() -> None:
                while True:
                    stats[index * STATS + BEAT] = time.time()
                    await asyncio.sleep(1.0)

            beating = asyncio.create_task(beat())
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            with contextlib.suppress(asyncio.CancelledError):
                await delivering
            sweeper.cancel()
            webhook_sweeper.cancel()
            beating.cancel()
            await courier.close()

    asyncio.run(main())
    listener.stop()
    engine.dispose()


class Supervisor:
    """Keeps ``count`` processes made by ``spawn(index)`` running: one that exits is replaced
    (after ``RESTART_BACKOFF_SECONDS``, so a broken install does not spin) until :meth:`stop`,
    which sends every process SIGTERM (they drain and exit)."""

    def __init__(self, count: int, spawn: Callable[[int], Any]) -> None:
        self._spawn = spawn
        self.stopping = threading.Event()
        self.processes = [spawn(i) for i in range(count)]

    def stop(self, signum: int = signal.SIGTERM, frame: object = None) -> None:
        """Stop (a signal handler): tell every process to drain."""
        self.stopping.set()
        for process in self.processes:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)

    def watch(self) -> int:
        """Replace processes that exit until told to stop; then wait for every one; the exit
        status."""
        processes = self.processes
        while True:
            for index, process in enumerate(processes):
                process.join(0.2)
                if process.exitcode is not None and not self.stopping.is_set():
                    log.error("worker process %d exited (%s); starting another", index,
                              process.exitcode)
                    time.sleep(RESTART_BACKOFF_SECONDS)
                    processes[index] = self._spawn(index)
            if self.stopping.is_set():
                for process in processes:
                    process.join()
                log.info("worker stopped")
                return 0


def run_worker(settings: Settings, concurrency: int | None = None) -> int:
    """Run ``concurrency`` worker processes until told to stop; the exit status."""
    from service.jobs.queue import conninfo, ensure_queue_schema
    from service.store.db import open_store

    conninfo(settings.database_url)  # ValueError unless PostgreSQL
    count = concurrency or os.cpu_count() or 1
    engine = open_store(settings.database_url)
    ensure_queue_schema(engine)
    engine.dispose()
    ctx = mp.get_context("spawn")
    stats = ctx.RawArray("d", count * STATS)
    host = socket.gethostname()
    tag = uuid.uuid4().hex[:6]

    def spawn(index: int) -> Any:
        process = ctx.Process(
            target=_child,
            args=(index, settings, f"{host}:{os.getpid()}:{tag}:{index}", stats, os.getpid()),
            name=f"tapeline-worker-{index}",
        )
        # A new process is as alive as can be until it beats itself (or fails to).
        stats[index * STATS + BEAT], stats[index * STATS + PROGRESS] = time.time(), 0.0
        process.start()
        return process

    supervisor = Supervisor(count, spawn)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    if settings.worker_metrics_port is not None:
        from service.jobs.worker_probe import serve

        serve(settings.worker_metrics_port, stats, count, settings.worker_liveness_seconds)
    log.info("worker started", extra={"fields": {"processes": count}})
    return supervisor.watch()
