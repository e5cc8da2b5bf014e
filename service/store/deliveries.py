"""The dispatchers' side of the outbox, for the service itself (not bound to a tenant): which
deliveries are due, claiming one for an attempt under a lease, recording the attempt and
what follows (success, a retry, giving up, disabling the endpoint), pruning the log, and the
figures the metrics report.

Events of one resource reach an endpoint in order: a delivery is due only when no earlier
delivery of the same resource to the same endpoint is still pending. A claimed delivery stays
pending, its ``next_attempt_at`` moved to the end of its lease, so it holds back the later ones
of its resource; a dispatcher that dies mid-attempt leaves it to be taken again once the lease
ends. Recording an attempt is fenced by the delivery's attempt count, so an attempt that
outlived its lease records nothing over its successor's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.orm import Session, aliased

from service.store import outbox
from service.store.repo import now
from service.store.secrets import SecretBox
from service.store.tables import (
    AttemptRow,
    DeliveryRow,
    WebhookCounterRow,
    WebhookEventRow,
    WebhookRow,
)
from service.store.webhooks import document

PENDING, SUCCEEDED, FAILED = outbox.PENDING, "succeeded", "failed"
OUTCOMES = ("succeeded", "failed", "error", "refused", "gone")

_EARLIER = aliased(DeliveryRow)
_HEAD = ~exists().where(
    _EARLIER.webhook_id == DeliveryRow.webhook_id,
    _EARLIER.resource == DeliveryRow.resource,
    _EARLIER.status == PENDING,
    _EARLIER.seq < DeliveryRow.seq,
)
_ENABLED = exists().where(WebhookRow.id == DeliveryRow.webhook_id, WebhookRow.enabled)


@dataclass(frozen=True)
class Claimed:
    """A delivery held for one attempt: what the attempt sends, where, signed with what
    (sealed secrets), and where the delivery stands."""

    delivery_id: str
    webhook_id: str
    event_id: str
    event_type: str
    body: str
    url: str
    secret: str
    previous_secret: str | None
    previous_until: datetime | None
    attempts: int
    first_attempt_at: datetime | None


@dataclass(frozen=True)
class Attempted:
    """What an attempt found: its outcome (one of :data:`OUTCOMES`), the answer's status code,
    its latency, the error, the first KiB of the answer."""

    at: datetime
    outcome: str
    status_code: int | None
    latency_ms: float
    error: str | None = None
    response: str | None = None


def due(session: Session, stamp: datetime, limit: int) -> list[str]:
    """Deliveries due at ``stamp`` (each the earliest pending one of its resource to its
    endpoint, which is enabled), the most overdue first."""
    return list(session.scalars(
        select(DeliveryRow.id)
        .where(DeliveryRow.status == PENDING, DeliveryRow.next_attempt_at <= stamp,
               _ENABLED, _HEAD)
        .order_by(DeliveryRow.next_attempt_at)
        .limit(limit)))


def next_due_at(session: Session) -> datetime | None:
    """When the next pending delivery of an enabled endpoint is due (None: none pending)."""
    return session.scalar(select(func.min(DeliveryRow.next_attempt_at))
                          .where(DeliveryRow.status == PENDING, _ENABLED))


_LOAD = (
    select(DeliveryRow, WebhookEventRow.body, WebhookRow)
    .join(WebhookEventRow, WebhookEventRow.id == DeliveryRow.event_id)
    .join(WebhookRow, WebhookRow.id == DeliveryRow.webhook_id)
)


def load(session: Session, delivery_id: str) -> Claimed | None:
    """A delivery as an attempt needs it (None when it is gone)."""
    found = session.execute(_LOAD.where(DeliveryRow.id == delivery_id)).one_or_none()
    if found is None:
        return None
    delivery, body, webhook = found
    return Claimed(delivery.id, webhook.id, delivery.event_id, delivery.event_type,
                   body, webhook.url, webhook.secret, webhook.previous_secret,
                   webhook.previous_secret_until, delivery.attempts, delivery.first_attempt_at)


def claim(session: Session, delivery_id: str, stamp: datetime,
          lease_until: datetime) -> Claimed | None:
    """Hold a due delivery for one attempt until ``lease_until`` (one conditional UPDATE: of
    dispatchers racing for it, one wins); None when it is not due (taken, done, held back by
    an earlier one of its resource, its endpoint disabled)."""
    held = session.execute(
        update(DeliveryRow)
        .where(DeliveryRow.id == delivery_id, DeliveryRow.status == PENDING,
               DeliveryRow.next_attempt_at <= stamp, _ENABLED, _HEAD)
        .values(next_attempt_at=lease_until)
        .execution_options(synchronize_session=False))
    if held.rowcount == 0:  # type: ignore[attr-defined]
        return None
    return load(session, delivery_id)


def record(session: Session, claimed: Claimed, attempted: Attempted,
           next_attempt_at: datetime | None, disable: str | None = None) -> bool:
    """Record an attempt and what follows: success (``outcome`` succeeded), another attempt
    at ``next_attempt_at``, or (None) giving up; with ``disable``, the endpoint is disabled
    for that reason (``gone``, ``failing``) and a ``webhook.disabled`` event recorded. False
    (nothing recorded) when the attempt is stale: the delivery was taken by another attempt,
    redelivered, or deleted with its endpoint."""
    status = (SUCCEEDED if attempted.outcome == SUCCEEDED
              else PENDING if next_attempt_at is not None else FAILED)
    done = session.execute(
        update(DeliveryRow)
        .where(DeliveryRow.id == claimed.delivery_id, DeliveryRow.attempts == claimed.attempts,
               DeliveryRow.status == PENDING)
        .values(status=status, attempts=claimed.attempts + 1,
                first_attempt_at=func.coalesce(DeliveryRow.first_attempt_at, attempted.at),
                last_attempt_at=attempted.at, last_status_code=attempted.status_code,
                next_attempt_at=next_attempt_at)
        .execution_options(synchronize_session=False))
    if done.rowcount == 0:  # type: ignore[attr-defined]
        return False
    session.execute(insert(AttemptRow).values(
        delivery_id=claimed.delivery_id, at=attempted.at, status_code=attempted.status_code,
        latency_ms=attempted.latency_ms, error=attempted.error, response=attempted.response,
        outcome=attempted.outcome))
    session.execute(update(WebhookCounterRow)
                    .where(WebhookCounterRow.outcome == attempted.outcome)
                    .values(count=WebhookCounterRow.count + 1))
    if disable is not None:
        disable_endpoint(session, claimed.webhook_id, disable)
    return True


def disable_endpoint(session: Session, webhook_id: str, reason: str) -> None:
    """Disable an endpoint for ``reason`` and record a ``webhook.disabled`` event (for the
    tenant's other endpoints that subscribe to it)."""
    row = session.scalars(select(WebhookRow).where(WebhookRow.id == webhook_id)).one_or_none()
    if row is None or not row.enabled:
        return
    row.enabled, row.disabled_reason, row.updated_at = False, reason, now()
    session.flush()
    outbox.record(session, row.owner, "webhook.disabled", f"webhook:{row.id}",
                  lambda: document(row))


def prune(session: Session, before: datetime) -> int:
    """Delete deliveries made before ``before`` (with their attempts), then events none of
    whose deliveries are left; how many deliveries went."""
    gone = session.execute(delete(DeliveryRow).where(DeliveryRow.created_at < before))
    session.execute(delete(AttemptRow).where(~exists().where(
        DeliveryRow.id == AttemptRow.delivery_id)))
    session.execute(delete(WebhookEventRow).where(
        WebhookEventRow.created_at < before,
        ~exists().where(DeliveryRow.event_id == WebhookEventRow.id)))
    return int(gone.rowcount)  # type: ignore[attr-defined]


def oldest_pending(session: Session) -> datetime | None:
    """When the oldest event still pending to an enabled endpoint happened."""
    return session.scalar(select(func.min(DeliveryRow.created_at))
                          .where(DeliveryRow.status == PENDING, _ENABLED))


def counts(session: Session) -> dict[str, int]:
    """Attempts made so far, by outcome."""
    return {outcome: int(count) for outcome, count in
            session.execute(select(WebhookCounterRow.outcome, WebhookCounterRow.count))}


def reseal(session: Session, box: SecretBox) -> int:
    """Re-encrypt every stored secret under the server's current key (after the key was
    rotated, or first set); how many changed."""
    changed = 0
    for row in session.scalars(select(WebhookRow)):
        values: dict[str, Any] = {"secret": box.rotate(row.secret)}
        if row.previous_secret is not None:
            values["previous_secret"] = box.rotate(row.previous_secret)
        if any(getattr(row, key) != value for key, value in values.items()):
            for key, value in values.items():
                setattr(row, key, value)
            changed += 1
    return changed

