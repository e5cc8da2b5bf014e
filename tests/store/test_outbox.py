"""The outbox on SQLite and PostgreSQL: events are written in the transaction of the change
that makes them (and only for tenants with an endpoint that wants them), a run's start and end
write theirs, deliveries of one resource are due one at a time in order, one claim wins, a
stale attempt records nothing, giving up disables the endpoint with a ``webhook.disabled``
event, and the log is pruned. Also the event catalogue and the sealed secrets."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.store import deliveries, documents, event_types, lifecycle, outbox
from service.store.deliveries import Attempted
from service.store.repo import Conflict, Repository, now
from service.store.secrets import PLAIN, SecretBox, SecretUnreadable, new_secret
from service.store.tables import DeliveryRow, RunStatus, WebhookEventRow, WebhookRow
from service.store.webhooks import Webhooks
from tests.store.rows import dataset, model, outcome, own, queued_run, record

CLAIM = {"worker": "w", "timeout": 30.0, "max_attempts": 3}
BOX = SecretBox(["server key"])


def endpoint(session: Session, events: list[str], tenant: str = "default",
             enabled: bool = True) -> str:
    row, _ = Webhooks(Repository(session, tenant), BOX).create(
        url="https://hooks.example.com/x", events=events, description=None, enabled=enabled,
        most=20)
    return row.id


def events(session: Session) -> list[tuple[str, dict[str, Any]]]:
    """Every event stored: its type and its body."""
    rows = session.scalars(select(WebhookEventRow).order_by(WebhookEventRow.seq))
    return [(row.type, json.loads(row.body)) for row in rows]


def test_the_catalogue_has_one_list_of_types_families_and_patterns() -> None:
    assert event_types.families() == ["run", "model", "dataset", "study", "webhook"]
    assert {"*", "run.*", "run.succeeded", "webhook.disabled"} <= set(event_types.patterns())
    for unknown in ("trial.*", "run.exploded", "run", "", "*.*", "ping"):
        assert unknown not in event_types.patterns(), unknown
    assert event_types.matches(["run.*"], "run.failed")
    assert event_types.matches(["*"], "webhook.disabled")
    assert not event_types.matches(["model.created"], "model.deleted")
    every_status = {str(s) for s in RunStatus} - {"queued", "cancelling"}
    assert set(event_types.RUN_STATUS_EVENTS) == every_status
    assert set(event_types.RUN_STATUS_EVENTS.values()) <= set(event_types.EVENT_TYPES)


def test_an_event_is_written_with_its_change_or_not_at_all(
        sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        dataset(session)  # no endpoint: nothing is written
        wanted = endpoint(session, ["dataset.*", "model.deleted"])
        endpoint(session, ["run.*"])  # not this tenant's events of datasets
        endpoint(session, ["*"], tenant="other")  # another tenant's endpoint hears nothing
        endpoint(session, ["*"], enabled=False)  # a disabled endpoint neither
    with sessions.begin() as session:
        assert events(session) == []
        made = dataset(session)
        model(session, [1.0], 0.0)  # model.created: nobody subscribes
    with pytest.raises(RuntimeError), sessions.begin() as session:
        own(session).delete_dataset(made.id)
        raise RuntimeError("the transaction rolls back: its event with it")
    with sessions() as session:
        [(kind, body)] = events(session)
        assert kind == "dataset.created" and body["type"] == "dataset.created"
        assert body["data"] == documents.dataset(own(session).get_dataset(made.id))
        assert body["timestamp"].endswith("Z")
        [delivery] = session.scalars(select(DeliveryRow)).all()
        assert (delivery.webhook_id, delivery.status, delivery.resource) == (
            wanted, "pending", f"dataset:{made.id}")


def test_a_runs_first_start_and_its_end_write_events_a_fenced_end_none(
        sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        endpoint(session, ["run.*"])
    run_id, _, _ = queued_run(sessions)
    with sessions.begin() as session:
        started = lifecycle.claim_run(session, run_id, **CLAIM)
        assert started is not None
    with sessions.begin() as session:  # a takeover (the worker went silent) is no new start
        session.execute(lifecycle.RUNS.update().values(heartbeat_at=now() - timedelta(hours=1)))
        assert lifecycle.claim_run(session, run_id, **CLAIM) is not None
    with sessions.begin() as session, pytest.raises(lifecycle.Fenced):
        lifecycle.finish_run(session, run_id, RunStatus.SUCCEEDED,
                             final=outcome([1.0, 1.0], 0.5, 0.25), attempt=started.attempt)
    with sessions.begin() as session:
        lifecycle.append_epochs(session, session.scalars(
            select(lifecycle.RunRow).where(lifecycle.RunRow.id == run_id)).one(),
            [record(0, [0, 0], 0.0, 1.0)], attempt=2)
        lifecycle.finish_run(session, run_id, RunStatus.SUCCEEDED,
                             final=outcome([1.0, 1.0], 0.5, 0.25), attempt=2)
    with sessions() as session:
        found = events(session)
        assert [kind for kind, _ in found] == ["run.created", "run.started", "run.succeeded"]
        created, running, succeeded = (body["data"] for _, body in found)
        assert (created["status"], running["status"], succeeded["status"]) == (
            "queued", "running", "succeeded")
        assert succeeded["final"]["W"] == [1.0, 1.0] and succeeded["epochs_completed"] == 1
        assert succeeded == documents.run(own(session).get_run(run_id))


def test_a_queued_run_cancelled_and_a_run_failed_write_their_events(
        sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        endpoint(session, ["run.cancelled", "run.failed"])
    cancelled, _, _ = queued_run(sessions)
    failed, _, _ = queued_run(sessions)
    with sessions.begin() as session:
        own(session).request_cancel(cancelled)
        lifecycle.finish_run(session, failed, RunStatus.FAILED, error=("error", "boom", None))
    with sessions() as session:
        found = {body["data"]["id"]: kind for kind, body in events(session)}
        assert found == {cancelled: "run.cancelled", failed: "run.failed"}


def claimed_all(sessions: sessionmaker[Session], limit: int = 10) -> list[deliveries.Claimed]:
    stamp = now()
    with sessions.begin() as session:
        return [c for d in deliveries.due(session, stamp, limit)
                if (c := deliveries.claim(session, d, stamp, stamp + timedelta(seconds=30)))]


def attempted(outcome_: str, status: int | None = 200) -> Attempted:
    return Attempted(now(), outcome_, status, 1.5, None if outcome_ == "succeeded" else "no")


def test_a_resources_events_are_due_one_at_a_time_in_order(
        sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        endpoint(session, ["run.*"])
    first, _, _ = queued_run(sessions)
    queued_run(sessions)  # a second run: its events do not wait for the first's
    with sessions.begin() as session:
        own(session).request_cancel(first)
    [a, b] = claimed_all(sessions)  # run.created of each run: other resources do not wait
    assert {a.event_type, b.event_type} == {"run.created"}
    assert claimed_all(sessions) == []  # first's run.cancelled waits behind its run.created
    with sessions.begin() as session:
        retry_at = now() - timedelta(seconds=1)  # failed, due again at once
        assert deliveries.record(session, a, attempted("failed", 500), retry_at)
        assert deliveries.record(session, b, attempted("succeeded"), None)
    [again] = claimed_all(sessions)
    assert again.delivery_id == a.delivery_id and again.attempts == 1
    assert again.first_attempt_at is not None
    with sessions.begin() as session:
        assert deliveries.record(session, again, attempted("succeeded"), None)
        assert not deliveries.record(session, again, attempted("succeeded"), None)  # stale
    [last] = claimed_all(sessions)
    assert last.event_type == "run.cancelled"
    with sessions.begin() as session:
        hooks = Webhooks(own(session), BOX)
        with pytest.raises(Conflict, match="still pending"):
            hooks.redeliver(last.webhook_id, last.delivery_id)
        again_due = hooks.redeliver(last.webhook_id, b.delivery_id)  # delivered: sent again
        assert (again_due["status"], again_due["attempt_count"]) == ("pending", 1)


def test_one_of_two_racing_claims_wins(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        endpoint(session, ["dataset.created"])
        dataset(session)
    stamp = now()
    with sessions() as session:
        [delivery_id] = deliveries.due(session, stamp, 10)
    winners = []
    for _ in range(2):
        with sessions.begin() as session:
            winners.append(deliveries.claim(session, delivery_id, stamp,
                                            stamp + timedelta(seconds=30)))
    assert winners[0] is not None and winners[1] is None
    with sessions() as session:  # held, not due; and nothing else is
        assert deliveries.due(session, now(), 10) == []
        assert deliveries.next_due_at(session) == stamp + timedelta(seconds=30)


def test_giving_up_disables_the_endpoint_and_tells_the_others(
        sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        failing = endpoint(session, ["dataset.created"])
        watcher = endpoint(session, ["webhook.disabled"])
        dataset(session)
    [claimed] = claimed_all(sessions)
    with sessions.begin() as session:
        deliveries.record(session, claimed, attempted("error", None), None, disable="failing")
    with sessions() as session:
        row = session.scalars(select(WebhookRow).where(WebhookRow.id == failing)).one()
        assert (row.enabled, row.disabled_reason) == (False, "failing")
        kinds = [kind for kind, _ in events(session)]
        assert kinds == ["dataset.created", "webhook.disabled"]
        [disabled] = [body for kind, body in events(session) if kind == "webhook.disabled"]
        assert disabled["data"]["id"] == failing and disabled["data"]["enabled"] is False
        assert "whsec_" not in json.dumps(disabled) and '"secret"' not in json.dumps(disabled)
        pending = session.scalars(select(DeliveryRow).where(DeliveryRow.status == "pending"))
        assert [d.webhook_id for d in pending] == [watcher]
        assert deliveries.counts(session)["error"] == 1


def test_old_deliveries_are_pruned_with_their_attempts_and_events(
        sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        endpoint(session, ["dataset.created"])
        dataset(session)
    [claimed] = claimed_all(sessions)
    with sessions.begin() as session:
        deliveries.record(session, claimed, attempted("succeeded"), None)
        assert deliveries.oldest_pending(session) is None
        dataset(session)  # a newer one, pending
        assert deliveries.oldest_pending(session) is not None
    with sessions.begin() as session:
        cutoff = session.scalars(select(DeliveryRow).order_by(DeliveryRow.seq.desc())).first()
        assert cutoff is not None
        assert deliveries.prune(session, cutoff.created_at) == 1
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(WebhookEventRow)) == 1
        assert [d.status for d in session.scalars(select(DeliveryRow))] == ["pending"]
        assert deliveries.counts(session)["succeeded"] == 1  # counts outlive the log


def test_secrets_are_sealed_under_the_server_key_and_readable_after_a_rotation(
        sessions: sessionmaker[Session]) -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(secret) > 30
    old, new = SecretBox(["old key"]), SecretBox(["new key", "old key"])
    sealed = old.seal(secret)
    assert secret not in sealed and not sealed.startswith(PLAIN)
    assert new.open(sealed) == secret
    with pytest.raises(SecretUnreadable, match="TAPELINE_SECRET_KEY"):
        SecretBox(["new key"]).open(sealed)
    assert SecretBox(["new key"]).open(new.rotate(sealed)) == secret
    assert SecretBox([None]).seal(secret) == PLAIN + secret
    assert new.open(PLAIN + secret) == secret
    Fernet(Fernet.generate_key())  # the library the box is made of
    with sessions.begin() as session:
        plain = Webhooks(Repository(session, "t"), SecretBox([None]))
        row, _ = plain.create(url="https://h.example.com", events=["*"], description=None,
                              enabled=True, most=1)
        assert row.secret.startswith(PLAIN)
        assert deliveries.reseal(session, new) == 1
        assert not row.secret.startswith(PLAIN) and new.open(row.secret).startswith("whsec_")


def test_the_outbox_tells_after_a_commit_and_not_after_a_rollback(
        sessions: sessionmaker[Session]) -> None:
    told: list[list[str]] = []
    outbox.watch(sessions, told.append)
    with sessions.begin() as session:
        endpoint(session, ["dataset.created"])
    with pytest.raises(RuntimeError), sessions.begin() as session:
        dataset(session)
        raise RuntimeError("rolled back")
    assert told == []
    with sessions.begin() as session:
        dataset(session)
    assert len(told) == 1 and len(told[0]) == 1
