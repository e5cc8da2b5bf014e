"""Delivering the outbox: a :class:`Courier` makes one attempt of one delivery from claim to
record; the ``local`` executor's :class:`LocalDispatcher` runs couriers in the API process,
woken when deliveries are made due (a commit here, a run's news) and at the next retry's
time; with the ``queue`` executor the API only defers jobs (:class:`QueueDispatcher`), which
``tapeline worker`` processes run (:mod:`service.jobs.webhooks.queued`).

Whoever delivers, a delivery is claimed under a lease before each attempt, so two processes
never make one attempt in parallel; one that dies mid-attempt leaves the delivery to be taken
again when the lease ends (at least once, the same ``webhook-id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.jobs.progress import Progress
from service.jobs.webhooks.schedule import Plan, plan
from service.jobs.webhooks.send import Sender
from service.store import deliveries, outbox
from service.store.deliveries import Attempted, Claimed
from service.store.repo import now
from service.store.secrets import SecretBox

log = logging.getLogger("tapeline.webhooks")

# A claimed delivery is held this much longer than an attempt may last.
LEASE_MARGIN_SECONDS = 5.0
# The local dispatcher looks at the store at least this often (news may be missed).
POLL_SECONDS = 5.0
PRUNE_EVERY_SECONDS = 3600.0
QUEUE = "tapeline-webhooks"
TASK = "tapeline.deliver"


def secret_box(settings: Settings) -> SecretBox:
    """The box of webhook secrets under the server's keys (current, then previous)."""
    return SecretBox([None if key is None else key.get_secret_value()
                      for key in (settings.secret_key, settings.secret_key_previous)])


@dataclass(frozen=True)
class Delivered:
    """One attempt made: the delivery as claimed, what the attempt found, what follows."""

    claimed: Claimed
    attempted: Attempted
    plan: Plan


class Courier:
    """Makes attempts of deliveries for this process: claims, sends, records."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self.sender = Sender(secret_box(settings), settings.webhook_timeout_seconds,
                             settings.webhook_allow_private, settings.webhook_hosts_file,
                             settings.webhook_concurrency)
        self.scale = settings.webhook_retry_scale
        self.lease = timedelta(seconds=settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS)
        self.retention = timedelta(days=settings.webhook_retention_days)

    def lease_end(self) -> datetime:
        """Until when a delivery claimed now is held."""
        return now() + self.lease

    def claim_due(self, limit: int) -> tuple[list[Claimed], datetime | None]:
        """Claim up to ``limit`` due deliveries; and when the next pending one is due."""
        stamp = now()
        with self.sessions() as session:
            due = deliveries.due(session, stamp, limit)
        # One transaction per claim: a claim then holds one delivery's row lock and waits for
        # nothing else, so it cannot close a cycle with a transaction that locks several
        # deliveries in another order (an endpoint's DELETE cascading to its deliveries
        # deadlocked against a claim of two of them, on PostgreSQL).
        claimed = []
        for delivery_id in due:
            with self.sessions.begin() as session:
                found = deliveries.claim(session, delivery_id, stamp, stamp + self.lease)
            if found is not None:
                claimed.append(found)
        with self.sessions() as session:
            return claimed, deliveries.next_due_at(session)

    def claim(self, delivery_id: str) -> Claimed | None:
        """Claim one delivery if it is due."""
        stamp = now()
        with self.sessions.begin() as session:
            return deliveries.claim(session, delivery_id, stamp, stamp + self.lease)

    def held(self, delivery_id: str) -> Claimed | None:
        """A delivery this process holds already (a ping, made leased)."""
        with self.sessions() as session:
            return deliveries.load(session, delivery_id)

    def due_ids(self, limit: int) -> list[str]:
        """Deliveries due now (not claimed)."""
        with self.sessions() as session:
            return deliveries.due(session, now(), limit)

    async def deliver(self, claimed: Claimed) -> Delivered:
        """Attempt a claimed delivery and record what happened and what follows."""
        attempted = await self.sender.attempt(claimed)
        follows = plan(claimed, attempted, self.scale)
        recorded = await asyncio.to_thread(self._record, claimed, attempted, follows)
        log.info("webhook delivery %s attempt %d: %s", claimed.delivery_id,
                 claimed.attempts + 1, attempted.outcome,
                 extra={"fields": {"delivery_id": claimed.delivery_id,
                                   "webhook_id": claimed.webhook_id,
                                   "event_id": claimed.event_id,
                                   "event_type": claimed.event_type,
                                   "status_code": attempted.status_code,
                                   "error": attempted.error, "recorded": recorded,
                                   "next_attempt_at": None if follows.next_attempt_at is None
                                   else follows.next_attempt_at.isoformat(),
                                   "disabled": follows.disable}})
        return Delivered(claimed, attempted, follows)

    def _record(self, claimed: Claimed, attempted: Attempted, follows: Plan) -> bool:
        with self.sessions.begin() as session:
            return deliveries.record(session, claimed, attempted, follows.next_attempt_at,
                                     follows.disable)

    def prune(self) -> int:
        """Delete the log older than the retention."""
        with self.sessions.begin() as session:
            return deliveries.prune(session, now() - self.retention)

    async def close(self) -> None:
        await self.sender.close()


class LocalDispatcher:
    """Delivers in this process (the ``local`` executor): a task on the app's event loop
    claims what is due and attempts it, ``TAPELINE_WEBHOOK_CONCURRENCY`` at a time."""

    def __init__(self, courier: Courier, concurrency: int) -> None:
        self.courier, self.concurrency = courier, concurrency
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Start on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = self._loop.create_task(self._run())

    def told(self, delivery_ids: list[str]) -> None:
        """Deliveries were made due (from any thread)."""
        self.wake()

    def news(self, run_id: str, ended: bool | None, first: bool) -> None:
        """A run had news: its start (its first news) or end may have made deliveries due."""
        if first or ended is not False:
            self.wake()

    def wake(self) -> None:
        """Look at the store now (from any thread)."""
        if self._loop is not None and self._wake is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        assert self._wake is not None
        pruned_at = -PRUNE_EVERY_SECONDS
        while True:
            self._wake.clear()
            wait = POLL_SECONDS
            try:
                if time.monotonic() - pruned_at >= PRUNE_EVERY_SECONDS:
                    pruned_at = time.monotonic()
                    await asyncio.to_thread(self.courier.prune)
                free = self.concurrency - len(self._inflight)
                if free > 0:
                    claimed, next_due = await asyncio.to_thread(self.courier.claim_due, free)
                    for found in claimed:
                        task = asyncio.create_task(self._deliver(found))
                        self._inflight.add(task)
                        task.add_done_callback(self._inflight.discard)
                    if next_due is not None:
                        wait = min(wait, max((next_due - now()).total_seconds(), 0.0))
            except Exception:
                log.warning("webhook dispatch failed; trying again", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _deliver(self, claimed: Claimed) -> None:
        try:
            await self.courier.deliver(claimed)
        except Exception:
            log.warning("webhook delivery %s failed; it is attempted again after its lease",
                        claimed.delivery_id, exc_info=True)
        finally:
            self.wake()  # a slot is free, and the next event of its resource may be due

    async def stop(self) -> None:
        """Stop delivering; attempts in flight are abandoned (taken again after their
        lease)."""
        tasks = [*self._inflight, *([self._task] if self._task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.courier.close()


def delivery_options(delivery_id: str, at: datetime | None = None) -> dict[str, Any]:
    """How a delivery's job is deferred: one waiting per delivery, at ``at`` if given."""
    options: dict[str, Any] = {"queue": QUEUE, "queueing_lock": delivery_id}
    if at is not None:
        options["schedule_at"] = at
    return options


class QueueDispatcher:
    """The API side of the ``queue`` executor: defers a job per delivery made due here; the
    workers deliver. (A defer lost is made good by the workers' sweep.)"""

    def __init__(self, conninfo: str, courier: Courier) -> None:
        import procrastinate

        self.courier = courier
        self._app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(
            conninfo=conninfo, min_size=1, max_size=2))

    def start(self) -> None:
        self._app.open()

    def told(self, delivery_ids: list[str]) -> None:
        """Defer the deliveries' jobs (blocking, in the committing thread)."""
        from procrastinate import exceptions as pexc

        for delivery_id in delivery_ids:
            try:
                with contextlib.suppress(pexc.AlreadyEnqueued):
                    self._app.configure_task(TASK, **delivery_options(delivery_id)).defer(
                        delivery_id=delivery_id)
            except Exception:
                log.warning("could not defer webhook delivery %s; a worker's sweep will",
                            delivery_id, exc_info=True)

    def news(self, run_id: str, ended: bool | None, first: bool) -> None:
        """Nothing: workers defer the deliveries of the runs they train."""

    async def stop(self) -> None:
        self._app.close()
        await self.courier.close()


Dispatcher = LocalDispatcher | QueueDispatcher


async def start_dispatcher(settings: Settings, sessions: sessionmaker[Session],
                           progress: Progress) -> Dispatcher:
    """Start delivering as the executor the settings choose: in this process (``local``) or
    by deferring jobs (``queue``); told of deliveries made due by this process's commits and
    of runs' news. Secrets stored under a previous server key (or none) are encrypted under
    the current one first."""
    courier = Courier(settings, sessions)
    if courier.sender.box.encrypts:
        def reseal() -> int:
            with sessions.begin() as session:
                return deliveries.reseal(session, courier.sender.box)

        if resealed := await asyncio.to_thread(reseal):
            log.info("webhook secrets encrypted under the current key",
                     extra={"fields": {"webhooks": resealed}})
    dispatcher: Dispatcher
    if settings.executor == "queue":
        from service.jobs.queue import conninfo

        dispatcher = QueueDispatcher(conninfo(settings.database_url), courier)
        await asyncio.to_thread(dispatcher.start)
    else:
        dispatcher = LocalDispatcher(courier, settings.webhook_concurrency)
        dispatcher.start()
    outbox.watch(sessions, dispatcher.told)
    progress.listen(dispatcher.news)
    return dispatcher
