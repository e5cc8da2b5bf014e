"""The webhooks API in-process: endpoints made, read, changed, rotated and deleted; every bad
input a 422 with nothing stored (URLs, event types, addresses refused, too many); secrets shown
once and stored encrypted; scopes and tenants; a ping's attempt in the answer; and each event's
snapshot exactly what the API's GET answered at that moment."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.app import create_app
from service.config import Settings
from service.store.db import make_engine
from service.store.tables import WebhookEventRow, WebhookRow
from tests.support.servers import sqlite_url

HOOK = "https://hooks.example.com/tapeline"  # does not resolve here: accepted, never delivered
ADMIN = "tl_" + "W" * 43


def make(tmp_path: Path, **settings: Any) -> TestClient:
    tmp_path.mkdir(exist_ok=True)
    values = {"database_url": sqlite_url(tmp_path), "workers": 1, **settings}
    return TestClient(create_app(Settings(**values)), base_url="http://localhost",
                      raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with make(tmp_path_factory.mktemp("webhooks"), max_webhooks=5) as client:
        yield client


def stored(client: TestClient) -> list[WebhookRow]:
    engine = make_engine(str(client.app.state.settings.database_url))  # type: ignore[attr-defined]
    with engine.connect() as connection:
        rows = list(connection.execute(select(WebhookRow)).all())
    engine.dispose()
    return rows  # type: ignore[return-value]


def bodies(client: TestClient) -> list[dict[str, Any]]:
    """Every event stored, its body parsed, in order."""
    engine = make_engine(str(client.app.state.settings.database_url))  # type: ignore[attr-defined]
    with engine.connect() as connection:
        found = [json.loads(body) for body in connection.execute(
            select(WebhookEventRow.body).order_by(WebhookEventRow.seq)).scalars()]
    engine.dispose()
    return found


def test_an_endpoint_is_made_read_changed_rotated_and_deleted(client: TestClient) -> None:
    made = client.post("/v1/webhooks", json={"url": HOOK, "events": ["run.*", "run.*", "*"],
                                             "description": "team chat"})
    assert made.status_code == 201, made.text
    hook = made.json()
    assert made.headers["location"] == f"/v1/webhooks/{hook['id']}"
    assert hook["secret"].startswith("whsec_") and hook["events"] == ["run.*", "*"]
    assert hook["enabled"] is True and hook["disabled_reason"] is None
    got = client.get(f"/v1/webhooks/{hook['id']}").json()
    assert got == {k: v for k, v in hook.items() if k != "secret"}
    listed = client.get("/v1/webhooks").json()
    assert hook["id"] in [item["id"] for item in listed["items"]]
    assert "whsec_" not in json.dumps(listed)
    changed = client.patch(f"/v1/webhooks/{hook['id']}", json={
        "events": ["model.created"], "enabled": False, "description": None}).json()
    assert (changed["events"], changed["enabled"], changed["description"]) == (
        ["model.created"], False, None)
    assert changed["url"] == HOOK
    assert client.patch(f"/v1/webhooks/{hook['id']}",
                        json={"url": "https://other.example.com/x"}).json()["url"] == \
        "https://other.example.com/x"
    rotated = client.post(f"/v1/webhooks/{hook['id']}/rotate-secret").json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != hook["secret"]
    until = datetime.fromisoformat(rotated["previous_secret_expires_at"])
    assert timedelta(hours=23) < until - datetime.now(UTC) <= timedelta(hours=24)
    assert client.delete(f"/v1/webhooks/{hook['id']}").status_code == 204
    for method, path in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/test"),
                         ("POST", "/rotate-secret"), ("GET", "/deliveries")):
        answer = client.request(method, f"/v1/webhooks/{hook['id']}{path}",
                                json={} if method == "PATCH" else None)
        assert answer.status_code == 404, (method, path, answer.text)


@pytest.mark.parametrize(("body", "where"), [
    ({"url": "ftp://h.example.com/", "events": ["*"]}, ["body", "url"]),
    ({"url": "/hooks", "events": ["*"]}, ["body", "url"]),
    ({"url": "https://u:p@h.example.com/", "events": ["*"]}, ["body", "url"]),
    ({"url": "http://127.0.0.1:9000/", "events": ["*"]}, ["body", "url"]),
    ({"url": "http://localhost/", "events": ["*"]}, ["body", "url"]),
    ({"url": "http://[::1]/", "events": ["*"]}, ["body", "url"]),
    ({"url": "http://[::ffff:127.0.0.1]/", "events": ["*"]}, ["body", "url"]),
    ({"url": "http://10.0.0.8/", "events": ["*"]}, ["body", "url"]),
    ({"url": "http://192.168.1.1/", "events": ["*"]}, ["body", "url"]),
    ({"url": "http://169.254.169.254/latest/meta-data", "events": ["*"]}, ["body", "url"]),
    ({"url": "http://224.0.0.1/", "events": ["*"]}, ["body", "url"]),
    ({"url": HOOK, "events": ["run.exploded"]}, ["body", "events", 0]),
    ({"url": HOOK, "events": ["trial.*"]}, ["body", "events", 0]),
    ({"url": HOOK, "events": []}, ["body", "events"]),
    ({"url": HOOK}, ["body", "events"]),
    ({"events": ["*"]}, ["body", "url"]),
    ({"url": HOOK, "events": ["*"], "secret": "mine"}, ["body", "secret"]),
    ({"url": HOOK, "events": ["*"], "enabled": "yes"}, ["body", "enabled"]),
    ({"url": HOOK, "events": ["*"], "description": "x" * 501}, ["body", "description"]),
])
def test_bad_input_is_a_422_and_stores_nothing(client: TestClient, body: dict[str, Any],
                                               where: list[Any]) -> None:
    before = len(stored(client))
    answer = client.post("/v1/webhooks", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert where in [error["loc"] for error in answer.json()["errors"]], answer.json()
    assert len(stored(client)) == before


def test_a_change_to_a_refused_url_or_null_is_a_422_and_changes_nothing(
        client: TestClient) -> None:
    hook = client.post("/v1/webhooks", json={"url": HOOK, "events": ["*"]}).json()
    for change in ({"url": "http://127.0.0.1/"}, {"events": ["nope"]}, {"url": None},
                   {"events": None}, {"enabled": None}, {"events": []}):
        answer = client.patch(f"/v1/webhooks/{hook['id']}", json=change)
        assert answer.status_code == 422, (change, answer.text)
    assert client.get(f"/v1/webhooks/{hook['id']}").json()["url"] == HOOK
    client.delete(f"/v1/webhooks/{hook['id']}")


def test_a_tenant_has_at_most_max_webhooks(tmp_path: Path) -> None:
    with make(tmp_path, max_webhooks=2) as client:
        for _ in range(2):
            assert client.post("/v1/webhooks", json={"url": HOOK, "events": ["*"]}
                               ).status_code == 201
        answer = client.post("/v1/webhooks", json={"url": HOOK, "events": ["*"]})
        assert answer.status_code == 422 and "TAPELINE_MAX_WEBHOOKS" in answer.json()["detail"]
        assert len(stored(client)) == 2


def test_private_addresses_pass_when_allowed_metadata_never(tmp_path: Path) -> None:
    with make(tmp_path, webhook_allow_private=True) as client:
        assert client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/",
                                                 "events": ["*"]}).status_code == 201
        refused = client.post("/v1/webhooks", json={"url": "http://169.254.169.254/",
                                                    "events": ["*"]})
        assert refused.status_code == 422 and "metadata" in refused.json()["detail"]


def test_a_ping_is_attempted_at_once_and_answered_with_its_attempt(client: TestClient) -> None:
    hook = client.post("/v1/webhooks", json={"url": "https://no-such-host.invalid/x",
                                             "events": ["model.deleted"]}).json()
    ping = client.post(f"/v1/webhooks/{hook['id']}/test")
    assert ping.status_code == 200, ping.text
    delivery = ping.json()
    assert (delivery["event_type"], delivery["status"], delivery["attempt_count"]) == (
        "ping", "failed", 1)  # a ping is attempted once
    [attempt] = delivery["attempts"]
    assert attempt["outcome"] == "error" and "does not resolve" in attempt["error"]
    assert attempt["status_code"] is None and attempt["latency_ms"] >= 0
    log = client.get(f"/v1/webhooks/{hook['id']}/deliveries").json()
    assert [d["id"] for d in log["items"]] == [delivery["id"]]
    assert client.get(f"/v1/webhooks/{hook['id']}/deliveries",
                      params={"status": "succeeded"}).json()["items"] == []
    assert client.get(f"/v1/webhooks/{hook['id']}/deliveries",
                      params={"event_type": "ping"}).json()["items"][0]["id"] == delivery["id"]
    assert client.get(f"/v1/webhooks/{hook['id']}/deliveries",
                      params={"event_type": "run.exploded"}).status_code == 422
    assert client.get(f"/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}"
                      ).json() == delivery
    again = client.post(f"/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver")
    assert again.status_code == 202 and again.json()["status"] == "pending"
    assert client.get(f"/v1/webhooks/{hook['id']}/deliveries/dlv_nope").status_code == 404
    client.patch(f"/v1/webhooks/{hook['id']}", json={"enabled": False})
    assert client.post(f"/v1/webhooks/{hook['id']}/test").status_code == 409
    redelivery = client.post(f"/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver")
    assert redelivery.status_code == 409 and "disabled" in redelivery.json()["detail"]
    client.delete(f"/v1/webhooks/{hook['id']}")


def test_each_events_data_is_the_resource_as_get_answered_then(tmp_path: Path) -> None:
    with make(tmp_path) as client:
        client.post("/v1/webhooks", json={"url": HOOK, "events": ["*"]})
        assert client.post("/v1/models", params={"dry_run": "true"}).status_code == 200
        dataset = client.post("/v1/datasets/synthetic", json={"seed": 3}).json()
        model = client.post("/v1/models", json={"kind": "mlp", "features": 1,
                                                "hidden": [3], "initial": {"random_seed": 1}}
                            ).json()
        queued = client.post(f"/v1/models/{model['id']}/runs", json={
            "dataset_id": dataset["id"], "epochs": 3, "validation": {"fraction": 0.2},
            "early_stopping": {"patience": 1}, "optimizer": {"kind": "adam"}}).json()
        ended = client.post(f"/v1/runs/{queued['id']}/cancel").json()
        waiting = client.post(f"/v1/models/{model['id']}/runs", json={
            "dataset_id": dataset["id"], "epochs": 2}, headers={"prefer": "wait=60"}).json()
        assert waiting["status"] == "succeeded"
        trained = client.get(f"/v1/models/{model['id']}").json()
        run = client.get(f"/v1/runs/{waiting['id']}").json()
        assert client.delete(f"/v1/models/{model['id']}").status_code == 204
        assert client.delete(f"/v1/datasets/{dataset['id']}").status_code == 204
        events = bodies(client)
    got = {(e["type"], e["data"]["id"]): e["data"] for e in events}
    assert [e["type"] for e in events if e["type"] != "run.started"] == [
        "dataset.created", "model.created", "run.created", "run.cancelled", "run.created",
        "run.succeeded", "model.deleted", "dataset.deleted"]
    assert got["dataset.created", dataset["id"]] == dataset
    assert got["dataset.deleted", dataset["id"]] == dataset
    assert got["model.created", model["id"]] == model
    assert got["model.deleted", model["id"]] == trained  # as it was when deleted: trained
    assert got["run.created", queued["id"]] == queued
    if ended["status"] == "cancelled":  # cancelled while queued: the API's own change
        assert got["run.cancelled", queued["id"]] == ended
    assert got["run.succeeded", run["id"]] == run
    assert got["run.started", run["id"]]["status"] == "running"
    for event in events:
        assert event["timestamp"].endswith("Z") and set(event) == {"type", "timestamp", "data"}


ME = {"Authorization": f"Bearer {ADMIN}"}


def test_scopes_and_tenants(tmp_path: Path) -> None:
    with make(tmp_path, auth="required", bootstrap_admin_key=ADMIN) as client:
        keys = {}
        for tenant, scopes in (("a", ["read"]), ("a", ["write"]), ("b", ["write"])):
            key = client.post("/v1/keys", headers=ME, json={"tenant": tenant, "scopes": scopes})
            keys[tenant, scopes[0]] = {"Authorization": f"Bearer {key.json()['key']}"}
        hook = client.post("/v1/webhooks", headers=keys["a", "write"],
                           json={"url": HOOK, "events": ["*"]}).json()
        for method, path in (("GET", ""), ("GET", f"/{hook['id']}"), ("POST", "")):
            answer = client.request(method, f"/v1/webhooks{path}", headers=keys["a", "read"],
                                    json={"url": HOOK, "events": ["*"]})
            assert answer.status_code == 403, (method, path)
            assert "'write' scope" in answer.json()["detail"]
        other = keys["b", "write"]
        assert client.get("/v1/webhooks", headers=other).json()["items"] == []
        for method, path in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/test"),
                             ("GET", "/deliveries"), ("POST", "/rotate-secret")):
            answer = client.request(method, f"/v1/webhooks/{hook['id']}{path}", headers=other,
                                    json={"enabled": False} if method == "PATCH" else None)
            assert answer.status_code == 404, (method, path)
        client.post("/v1/models", headers=other)  # tenant b's event: a's endpoint hears none
        assert bodies(client) == []
        client.post("/v1/models", headers=keys["a", "write"])
        assert [e["type"] for e in bodies(client)] == ["model.created"]


def test_off_loopback_webhooks_need_the_secret_key_and_keep_secrets_encrypted(
        tmp_path: Path) -> None:
    common = {"host": "0.0.0.0", "allowed_hosts": ["localhost"], "auth": "required",
              "bootstrap_admin_key": ADMIN}
    with make(tmp_path / "without", **common) as client:
        answer = client.post("/v1/webhooks", headers=ME, json={"url": HOOK, "events": ["*"]})
        assert answer.status_code == 503 and "TAPELINE_SECRET_KEY" in answer.json()["detail"]
        assert stored(client) == []
    with make(tmp_path / "with", secret_key="s3cret-server-key", **common) as client:
        made = client.post("/v1/webhooks", headers=ME, json={"url": HOOK, "events": ["*"]})
        assert made.status_code == 201
        [row] = stored(client)
        secret = made.json()["secret"]
        assert secret not in row.secret and secret.removeprefix("whsec_") not in row.secret
        assert not row.secret.startswith("plain:")


def test_the_server_key_rotates_with_the_previous_one_beside_it(tmp_path: Path) -> None:
    """Secrets sealed under key A stay usable when B replaces A with A as the previous key;
    start-up seals them under B, so B alone then opens them; a stranger key opens nothing
    (the attempt says so). Each ping goes to a closed port: its error says how far it got."""
    closed = {"webhook_allow_private": True, "database_url": sqlite_url(tmp_path)}

    def ping(secret_key: str, previous: str | None = None) -> str:
        with TestClient(create_app(Settings(secret_key=secret_key, secret_key_previous=previous,
                                            workers=1, **closed)),
                        base_url="http://localhost", raise_server_exceptions=False) as client:
            if not stored(client):
                client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/", "events": ["*"]})
            [row] = stored(client)
            answer = client.post(f"/v1/webhooks/{row.id}/test").json()
            return str(answer["attempts"][0]["error"])

    assert "ConnectError" in ping("key A")
    assert "ConnectError" in ping("key B", previous="key A")
    assert "ConnectError" in ping("key B")  # resealed under B at the last start
    assert "cannot be decrypted" in ping("key C")
