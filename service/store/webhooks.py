"""A tenant's webhook endpoints and their delivery log, read and written in one session (the
caller owns the transaction), every query filtered by the tenant like :class:`Repository`'s.

Secrets are stored sealed (:mod:`service.store.secrets`) and leave this module only when made:
at creation and at rotation, to be shown once. Endpoints and deliveries render as the API
answers them (:func:`document`, :func:`delivery_document`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from service.store import outbox
from service.store.documents import Document, rfc3339
from service.store.event_types import PING
from service.store.repo import Conflict, NotFound, Repository, new_id, now
from service.store.secrets import SecretBox, new_secret
from service.store.tables import AttemptRow, DeliveryRow, WebhookRow
from service.training.errors import SpecError

# How long a rotated-out secret keeps signing beside the new one.
PREVIOUS_SECRET_HOURS = 24
# The most attempts a delivery lists (the latest; a delivery counts them all).
ATTEMPTS_LISTED = 50


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else rfc3339(moment)


def document(row: WebhookRow) -> Document:
    """An endpoint as the API answers it (never its secrets)."""
    return {
        "id": row.id,
        "url": row.url,
        "description": row.description,
        "events": list(row.events),
        "enabled": row.enabled,
        "disabled_reason": row.disabled_reason,
        "previous_secret_expires_at": _when(row.previous_secret_until),
        "created_at": rfc3339(row.created_at),
        "updated_at": rfc3339(row.updated_at),
    }


def delivery_document(row: DeliveryRow, attempts: Sequence[AttemptRow]) -> Document:
    """A delivery as the log shows it, with its latest attempts (oldest first)."""
    return {
        "id": row.id,
        "webhook_id": row.webhook_id,
        "event_id": row.event_id,
        "event_type": row.event_type,
        "status": row.status,
        "attempt_count": row.attempts,
        "created_at": rfc3339(row.created_at),
        "last_attempt_at": _when(row.last_attempt_at),
        "next_attempt_at": _when(row.next_attempt_at) if row.status == "pending" else None,
        "last_status_code": row.last_status_code,
        "attempts": [{
            "at": rfc3339(a.at),
            "status_code": a.status_code,
            "latency_ms": a.latency_ms,
            "error": a.error,
            "response": a.response,
            "outcome": a.outcome,
        } for a in attempts],
    }


class Webhooks:
    """The webhook endpoints of one tenant and their delivery log."""

    def __init__(self, repo: Repository, box: SecretBox) -> None:
        self.repo = repo
        self.session = repo.session
        self.tenant = repo.tenant
        self.box = box

    # ------------------------------------------------------------ endpoints

    def create(self, *, url: str, events: list[str], description: str | None, enabled: bool,
               most: int) -> tuple[WebhookRow, str]:
        """A new endpoint and its secret (shown once); a :class:`SpecError` when the tenant
        has ``most`` already."""
        self.repo.lock_tenant()
        count = self.session.scalar(
            select(func.count()).where(WebhookRow.owner == self.tenant)) or 0
        if count >= most:
            raise SpecError(("body",), f"tenant {self.tenant!r} has {count} webhooks, the most "
                                       f"allowed (TAPELINE_MAX_WEBHOOKS); delete one first")
        secret, stamp = new_secret(), now()
        row = WebhookRow(id=new_id("wh"), owner=self.tenant, url=url, description=description,
                         events=events, enabled=enabled, secret=self.box.seal(secret),
                         created_at=stamp, updated_at=stamp)
        self.session.add(row)
        self.session.flush()
        return row, secret

    def get(self, webhook_id: str) -> WebhookRow:
        """The tenant's endpoint with this id, or :class:`NotFound`."""
        row = self.session.scalar(select(WebhookRow).where(
            WebhookRow.id == webhook_id, WebhookRow.owner == self.tenant))
        if row is None:
            raise NotFound("webhook", webhook_id)
        return row

    def page(self, limit: int, after_seq: int | None, newest_first: bool = False,
             fitting: Callable[[Sequence[WebhookRow]], int] | None = None,
             ) -> tuple[Sequence[WebhookRow], int | None]:
        """A page of the tenant's endpoints (no more than ``fitting`` keeps of them)."""
        return self.repo.page(WebhookRow, limit, after_seq, newest_first=newest_first,
                              fitting=fitting)

    def update(self, webhook_id: str, changes: dict[str, Any]) -> WebhookRow:
        """Change an endpoint's ``url``, ``events``, ``description`` or ``enabled``. Enabling
        one clears why it was disabled, and its pending deliveries start their retries anew."""
        row = self.get(webhook_id)
        for name, value in changes.items():
            setattr(row, name, value)
        if changes.get("enabled"):
            row.disabled_reason = None
            self.session.execute(
                update(DeliveryRow)
                .where(DeliveryRow.webhook_id == row.id, DeliveryRow.status == "pending")
                .values(first_attempt_at=None).execution_options(synchronize_session=False))
        row.updated_at = now()
        self.session.flush()
        return row

    def delete(self, webhook_id: str) -> None:
        """Delete an endpoint with its deliveries (events other endpoints still deliver
        stay). Its deliveries' rows are locked first, in id order, then the endpoint's: a
        dispatcher's transaction holds one delivery and may then want the endpoint (to
        disable it), so taking the endpoint first could close a cycle with it."""
        row = self.get(webhook_id)
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(select(DeliveryRow.id).where(DeliveryRow.webhook_id == row.id)
                                 .order_by(DeliveryRow.id).with_for_update())
        self.session.delete(row)

    def rotate_secret(self, webhook_id: str) -> tuple[WebhookRow, str]:
        """A new secret for the endpoint (shown once); the current one keeps signing beside
        it for 24 hours (a previous one still valid then is dropped)."""
        row = self.get(webhook_id)
        secret, stamp = new_secret(), now()
        row.previous_secret = row.secret
        row.previous_secret_until = stamp + timedelta(hours=PREVIOUS_SECRET_HOURS)
        row.secret = self.box.seal(secret)
        row.updated_at = stamp
        self.session.flush()
        return row, secret

    def ping(self, webhook_id: str, leased_until: datetime) -> str:
        """A ``ping`` event to this endpoint only (its data: the endpoint), its delivery held
        until ``leased_until`` by the caller, who attempts it; the delivery's id."""
        row = self.get(webhook_id)
        if not row.enabled:
            raise Conflict(f"webhook {webhook_id!r} is disabled; enable it first")
        event_id = outbox.record(self.session, self.tenant, PING, f"ping:{new_id('p')}",
                                 lambda: document(row), only=row.id)
        delivery = self.session.scalars(
            select(DeliveryRow).where(DeliveryRow.event_id == event_id)).one()
        delivery.next_attempt_at = leased_until
        self.session.flush()
        return delivery.id

    # ------------------------------------------------------------ the log

    def deliveries(self, webhook_id: str, limit: int, after_seq: int | None,
                   status: str | None = None, event_type: str | None = None
                   ) -> tuple[list[Document], int | None]:
        """A page of an endpoint's deliveries, newest first, of one status or event type if
        asked, each with its latest attempts."""
        self.get(webhook_id)
        query = (select(DeliveryRow).where(DeliveryRow.webhook_id == webhook_id)
                 .order_by(DeliveryRow.seq.desc()).limit(limit + 1))
        if after_seq is not None:
            query = query.where(DeliveryRow.seq < after_seq)
        if status is not None:
            query = query.where(DeliveryRow.status == status)
        if event_type is not None:
            query = query.where(DeliveryRow.event_type == event_type)
        rows = list(self.session.scalars(query))
        after = rows[limit - 1].seq if len(rows) > limit else None
        rows = rows[:limit]
        attempts = self._attempts([row.id for row in rows])
        return [delivery_document(row, attempts[row.id]) for row in rows], after

    def delivery(self, webhook_id: str, delivery_id: str) -> Document:
        """One delivery of the endpoint, with its latest attempts."""
        row = self._delivery(webhook_id, delivery_id)
        return delivery_document(row, self._attempts([row.id])[row.id])

    def redeliver(self, webhook_id: str, delivery_id: str) -> Document:
        """Send a delivery again (same event, same ``webhook-id``), with a new round of
        retries; :class:`Conflict` while it is still pending or the endpoint is disabled."""
        row = self._delivery(webhook_id, delivery_id)
        if not self.get(webhook_id).enabled:
            raise Conflict(f"webhook {webhook_id!r} is disabled; enable it first")
        if row.status == "pending":
            raise Conflict(f"delivery {delivery_id!r} is still pending (next attempt at "
                           f"{_when(row.next_attempt_at)})")
        stamp = now()
        row.status, row.next_attempt_at, row.first_attempt_at = "pending", stamp, None
        self.session.flush()
        outbox.made_due(self.session, [row.id])
        return delivery_document(row, self._attempts([row.id])[row.id])

    def _delivery(self, webhook_id: str, delivery_id: str) -> DeliveryRow:
        self.get(webhook_id)
        row = self.session.scalar(select(DeliveryRow).where(
            DeliveryRow.id == delivery_id, DeliveryRow.webhook_id == webhook_id))
        if row is None:
            raise NotFound("delivery", delivery_id)
        return row

    def _attempts(self, delivery_ids: list[str]) -> dict[str, list[AttemptRow]]:
        """The latest attempts of each delivery, oldest first."""
        found: dict[str, list[AttemptRow]] = {delivery_id: [] for delivery_id in delivery_ids}
        if delivery_ids:
            for attempt in self.session.scalars(
                    select(AttemptRow).where(AttemptRow.delivery_id.in_(delivery_ids))
                    .order_by(AttemptRow.id)):
                found[attempt.delivery_id].append(attempt)
        return {key: rows[-ATTEMPTS_LISTED:] for key, rows in found.items()}
