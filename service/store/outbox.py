"""The outbox of events: a state change writes its event in its own transaction, with a
delivery to each endpoint of the tenant subscribed to it, so an event is stored exactly when
its change is (nothing lost across crashes, nothing sent for a change rolled back).

A tenant with no endpoint subscribed to an event's type stores nothing for it (and its
snapshot is never rendered). The snapshot is the resource as ``GET`` answered at that moment
(:mod:`service.store.documents`), kept in the event's body, which every attempt sends as it
is. After the commit, this process's dispatcher is told (:func:`watch`) and, on PostgreSQL,
every process listening on ``tapeline_webhooks``.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, event, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from service.store.documents import Document, rfc3339
from service.store.event_types import matches
from service.store.tables import DeliveryRow, WebhookEventRow, WebhookRow

CHANNEL = "tapeline_webhooks"
PENDING = "pending"
# Where a session keeps the ids of the deliveries it made due, until it commits.
_DUE = "tapeline.webhook_deliveries"
_SUBSCRIBERS = select(WebhookRow.id, WebhookRow.events).where(
    WebhookRow.owner == bindparam("owner"), WebhookRow.enabled)
_NOTIFY = select(func.pg_notify(CHANNEL, ""))


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def _finite(value: Any) -> Any:
    """``value`` with every non-finite number made null, as the API's answers make them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def body(event_type: str, stamp: datetime, data: Document) -> str:
    """An event's body: ``{"type", "timestamp", "data"}`` in compact JSON."""
    content = {"type": event_type, "timestamp": rfc3339(stamp), "data": data}
    try:
        return json.dumps(content, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(content), separators=(",", ":"), allow_nan=False)


def record(session: Session, owner: str, event_type: str, resource: str,
           render: Callable[[], Document], only: str | None = None) -> str | None:
    """Write an event of ``owner`` about ``resource`` (``run:<id>``: its events are delivered
    in order) to the outbox, with a delivery to each of the owner's enabled endpoints whose
    subscriptions match ``event_type`` (or to endpoint ``only``, whatever they are), in the
    caller's transaction; ``render`` makes the snapshot. The event's id, or None when no
    endpoint wants it (nothing is written)."""
    endpoints = [webhook_id for webhook_id, subscribed
                 in session.execute(_SUBSCRIBERS, {"owner": owner})
                 if webhook_id == only or (only is None and matches(subscribed, event_type))]
    if not endpoints:
        return None
    stamp = datetime.now(UTC)
    event_id = _id("msg")
    session.execute(insert(WebhookEventRow).values(
        id=event_id, owner=owner, type=event_type, resource=resource,
        body=body(event_type, stamp, render()), created_at=stamp))
    deliveries: list[dict[str, Any]] = [
        {"id": _id("dlv"), "webhook_id": webhook_id, "event_id": event_id,
         "event_type": event_type, "resource": resource, "status": PENDING, "attempts": 0,
         "next_attempt_at": stamp, "created_at": stamp}
        for webhook_id in endpoints]
    session.execute(insert(DeliveryRow), deliveries)
    made_due(session, [d["id"] for d in deliveries])
    return event_id


def made_due(session: Session, delivery_ids: list[str]) -> None:
    """Tell dispatchers, once this transaction commits, that these deliveries are due: this
    process's (:func:`watch`), and on PostgreSQL every process listening on the channel."""
    session.info.setdefault(_DUE, []).extend(delivery_ids)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_NOTIFY)


def watch(sessions: sessionmaker[Session], told: Callable[[list[str]], None]) -> None:
    """Call ``told`` with the ids of the deliveries a session of ``sessions`` made due, once
    its transaction commits (not when it rolls back)."""

    def committed(session: Session) -> None:
        written = session.info.pop(_DUE, None)
        if written:
            told(written)

    def rolled_back(session: Session, previous_transaction: Any) -> None:
        session.info.pop(_DUE, None)

    event.listen(sessions, "after_commit", committed)
    event.listen(sessions, "after_soft_rollback", rolled_back)
