"""Deliveries as procrastinate jobs (the ``queue`` executor), run by ``tapeline worker``
processes beside their training: one job is one attempt of one delivery. A job whose attempt
failed defers the next at its retry time; a job that succeeded defers whatever became due
(the next event of its resource). Each worker's sweep defers every due delivery without a
waiting job (a defer lost, a worker killed mid-attempt once its lease ends) and prunes the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime

import procrastinate
from procrastinate import exceptions as pexc
from sqlalchemy import bindparam, text

from service.jobs.webhooks.dispatch import (
    PRUNE_EVERY_SECONDS,
    QUEUE,
    TASK,
    Courier,
    delivery_options,
    log,
)

# How many due deliveries one sweep defers at most.
SWEEP_LIMIT = 500


async def defer(app: procrastinate.App, delivery_id: str, at: datetime | None = None) -> None:
    """Defer a delivery's job (none if one is waiting already)."""
    with contextlib.suppress(pexc.AlreadyEnqueued):
        await app.configure_task(TASK, **delivery_options(delivery_id, at)).defer_async(
            delivery_id=delivery_id)


def _unjobbed(courier: Courier) -> list[str]:
    """Deliveries due now that no job waits for or runs."""
    due = courier.due_ids(SWEEP_LIMIT)
    if not due:
        return []
    with courier.sessions() as session:
        held = set(session.scalars(text(
            "SELECT args->>'delivery_id' FROM procrastinate_jobs WHERE queue_name = :queue "
            "AND status IN ('todo', 'doing') AND args->>'delivery_id' IN :ids"
        ).bindparams(bindparam("ids", expanding=True)), {"queue": QUEUE, "ids": due}))
    return [delivery_id for delivery_id in due if delivery_id not in held]


async def defer_due(app: procrastinate.App, courier: Courier) -> None:
    """Defer a job for each delivery due now that has none."""
    for delivery_id in await asyncio.to_thread(_unjobbed, courier):
        await defer(app, delivery_id)


def add_task(app: procrastinate.App, courier: Courier) -> None:
    """Give the worker's app the task that makes one attempt of one delivery."""

    @app.task(name=TASK, queue=QUEUE)
    async def deliver(delivery_id: str) -> None:
        claimed = await asyncio.to_thread(courier.claim, delivery_id)
        if claimed is None:  # not due: done, taken, held back, or its endpoint disabled
            return
        done = await courier.deliver(claimed)
        if done.plan.next_attempt_at is not None:
            await defer(app, delivery_id, done.plan.next_attempt_at)
        await defer_due(app, courier)


async def sweep(app: procrastinate.App, courier: Courier, timeout: float) -> None:
    """Once: retry the delivery jobs of stalled workers, defer what is due."""
    for job in await app.job_manager.get_stalled_jobs(queue=QUEUE,
                                                      seconds_since_heartbeat=timeout):
        with contextlib.suppress(Exception):
            await app.job_manager.retry_job(job)
    await defer_due(app, courier)


async def sweep_forever(app: procrastinate.App, courier: Courier, timeout: float) -> None:
    """Sweep every few seconds (a second at least), and prune the log every hour."""
    every = max(min(timeout / 3, 5.0), 0.2)
    pruned_at = -PRUNE_EVERY_SECONDS
    while True:
        try:
            await sweep(app, courier, timeout)
            if time.monotonic() - pruned_at >= PRUNE_EVERY_SECONDS:
                pruned_at = time.monotonic()
                await asyncio.to_thread(courier.prune)
        except Exception:
            log.warning("webhook sweep failed", exc_info=True)
        await asyncio.sleep(every)
