"""API keys, scopes, quotas and rate limits, in-process: every 401 and 403 case, expiry and
revocation, the auth modes, /v1/me, the keys API, and the quotas' 429s with their headers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, update
from sqlalchemy.orm import sessionmaker

from service.api.http.access import KeyCache
from service.app import create_app
from service.config import Settings
from service.store import keys
from service.store.db import make_engine
from service.store.tables import ApiKeyRow
from tests.support.servers import sqlite_url

ADMIN = "tl_" + "A" * 43
RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def app(tmp_path: Path, **settings: Any) -> TestClient:
    tmp_path.mkdir(exist_ok=True)
    values = {"database_url": sqlite_url(tmp_path), "workers": 1, "auth": "required",
              "bootstrap_admin_key": ADMIN, **settings}
    return TestClient(create_app(Settings(**values)), base_url="http://localhost",
                      raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with app(tmp_path_factory.mktemp("keys"), tenant_rate_limit="10000/second") as client:
        yield client


def new_key(client: TestClient, tenant: str = "team-a", **body: Any) -> dict[str, Any]:
    answer = client.post("/v1/keys", headers=bearer(ADMIN), json={"tenant": tenant, **body})
    assert answer.status_code == 201, answer.text
    assert answer.headers["location"] == f"/v1/keys/{answer.json()['id']}"
    return dict(answer.json())


def assert_401(answer: Any, detail: str) -> None:
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["www-authenticate"].startswith('Bearer realm="tapeline"')
    assert detail in answer.json()["detail"]


def set_expiry(client: TestClient, key_id: str, when: datetime) -> None:
    """Write a key's expiry straight into the store, as another process would."""
    engine = make_engine(str(client.app.state.settings.database_url))  # type: ignore[attr-defined]
    with engine.begin() as connection:
        connection.execute(update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(
            expires_at=when))
    engine.dispose()


def test_every_401(client: TestClient, tmp_path: Path) -> None:
    assert_401(client.get("/v1/models"), "needs an API key")
    # ... and says how to send one, from a program and from the terminal client.
    assert_401(client.get("/v1/models"), "send `Authorization: Bearer tl_...` (the terminal "
               "client: --key or TAPELINE_API_KEY")
    assert_401(client.get("/v1/models", headers={"Authorization": "Basic dTpw"}), "Bearer")
    assert_401(client.get("/v1/models", headers={"Authorization": "Bearer"}), "Bearer")
    assert_401(client.get("/v1/models", headers=bearer("tl_short")), "malformed")
    assert_401(client.get("/v1/models", headers=bearer("tl_" + "x" * 43)), "unknown")
    key = new_key(client, expires_in_days=1)
    set_expiry(client, key["id"], datetime.now(UTC) - timedelta(seconds=1))  # before any use
    expired = client.get("/v1/models", headers=bearer(key["key"]))
    assert_401(expired, "expired")
    assert key["key"] not in expired.text
    other = new_key(client)
    assert client.get("/v1/me", headers=bearer(other["key"])).status_code == 200
    assert client.delete(f"/v1/keys/{other['id']}", headers=bearer(ADMIN)).status_code == 204
    assert_401(client.get("/v1/me", headers=bearer(other["key"])), "revoked")  # the next one
    assert client.delete(f"/v1/keys/{other['id']}", headers=bearer(ADMIN)).status_code == 204


def test_scopes_read_write_admin(client: TestClient) -> None:
    reader = bearer(new_key(client, scopes=["read"])["key"])
    writer = bearer(new_key(client, scopes=["write"])["key"])
    admin = bearer(new_key(client, scopes=["admin"])["key"])
    dataset = client.post("/v1/datasets/synthetic", headers=writer, json={"seed": 1}).json()
    model = client.post("/v1/models", headers=writer).json()
    run = client.post(f"/v1/models/{model['id']}/runs", headers={**writer, "prefer": "wait=60"},
                      json={"dataset_id": dataset["id"], "epochs": 2}).json()
    forbidden = [
        ("POST", "/v1/datasets/synthetic", {}), ("POST", "/v1/models", {}),
        ("POST", f"/v1/models/{model['id']}/runs", {"dataset_id": dataset["id"]}),
        ("POST", f"/v1/runs/{run['id']}/cancel", None),
        ("DELETE", f"/v1/datasets/{dataset['id']}", None),
        ("DELETE", f"/v1/models/{model['id']}", None),
    ]
    for method, path, body in forbidden:
        answer = client.request(method, path, headers=reader, json=body)
        assert answer.status_code == 403, (path, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert "'write' scope" in answer.json()["detail"]
    for path in ("/v1/models", f"/v1/runs/{run['id']}/history", "/v1/me",
                 f"/v1/datasets/{dataset['id']}/data"):
        assert client.get(path, headers=reader).status_code == 200
    assert client.post(f"/v1/models/{model['id']}/predict", headers=reader,
                       json={"x": [1.0]}).status_code == 200  # predicting changes nothing
    for headers in (reader, writer):
        assert client.get("/v1/keys", headers=headers).status_code == 403
        assert client.post("/v1/keys", headers=headers, json={}).status_code == 403
        assert client.get("/metrics", headers=headers).status_code == 403
    # admin ⊇ write ⊇ read
    assert client.post("/v1/models", headers=admin).status_code == 201
    assert client.get("/v1/models", headers=writer).status_code == 200
    assert client.get("/metrics", headers=admin).status_code == 200
    assert client.get("/metrics").status_code == 401
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200


def test_an_admin_manages_its_own_tenant_and_only_tenant_admin_manages_others(
        client: TestClient) -> None:
    own = new_key(client, "team-c", scopes=["admin"])
    team = bearer(own["key"])
    itself = client.delete(f"/v1/keys/{own['id']}", headers=team)
    assert itself.status_code == 409 and "another admin key" in itself.json()["detail"]
    made = client.post("/v1/keys", headers=team, json={"name": "ci", "scopes": ["read"]})
    assert made.status_code == 201 and made.json()["tenant"] == "team-c"
    assert made.json()["key"].startswith("tl_") and len(made.json()["key"]) >= 46
    assert client.post("/v1/keys", headers=team, json={"tenant": "team-d"}).status_code == 403
    listed = client.get("/v1/keys", headers=team).json()["items"]
    assert {k["tenant"] for k in listed} == {"team-c"}
    assert all("key" not in k for k in listed)
    assert client.get("/v1/keys", headers=team, params={"tenant": "team-a"}).status_code == 403
    foreign = new_key(client, "team-d")
    assert client.delete(f"/v1/keys/{foreign['id']}", headers=team).status_code == 404
    assert client.get("/v1/me", headers=bearer(foreign["key"])).status_code == 200
    assert client.put("/v1/tenants/team-c/quotas", headers=team,
                      json={"max_active_runs": 100}).status_code == 403
    everyone = client.get("/v1/keys", headers=bearer(ADMIN)).json()["items"]
    assert {"admin", "team-c", "team-d"} <= {k["tenant"] for k in everyone}


def test_me_answers_tenant_scopes_quotas_and_usage(client: TestClient) -> None:
    key = new_key(client, "team-m", scopes=["write"])
    headers = bearer(key["key"])
    client.post("/v1/datasets/synthetic", headers=headers, json={"num_examples": 10})
    me = client.get("/v1/me", headers=headers).json()
    assert me["tenant"] == "team-m" and me["scopes"] == ["read", "write"]
    assert me["key_id"] == key["id"]
    assert me["quotas"] == {"max_active_runs": 8, "max_stored_bytes": 1024**3,
                            "rate_limit": "10000/second"}
    assert me["usage"]["datasets"] == 1 and me["usage"]["models"] == 0
    assert me["usage"]["stored_bytes"] > 10 * 8
    quotas = client.put("/v1/tenants/team-m/quotas", headers=bearer(ADMIN),
                        json={"max_active_runs": 2, "rate_limit": "500/minute"})
    assert quotas.status_code == 200, quotas.text
    assert quotas.json() == {"max_active_runs": 2, "max_stored_bytes": 1024**3,
                             "rate_limit": "500/minute"}
    assert client.get("/v1/me", headers=headers).json()["quotas"] == quotas.json()
    assert client.get("/v1/me", headers=headers).headers["RateLimit-Limit"] == "500"
    bad = client.put("/v1/tenants/team-m/quotas", headers=bearer(ADMIN),
                     json={"rate_limit": "lots"})
    assert bad.status_code == 422


def test_last_used_at_is_written_at_most_once_a_minute(client: TestClient) -> None:
    key = new_key(client, "team-u")
    assert key["last_used_at"] is None
    client.get("/v1/me", headers=bearer(key["key"]))
    first = next(k for k in client.get("/v1/keys", headers=bearer(ADMIN)).json()["items"]
                 if k["id"] == key["id"])["last_used_at"]
    client.get("/v1/me", headers=bearer(key["key"]))
    again = next(k for k in client.get("/v1/keys", headers=bearer(ADMIN)).json()["items"]
                 if k["id"] == key["id"])["last_used_at"]
    assert first is not None and again == first


def test_a_kept_key_record_still_expires_at_its_instant(tmp_path: Path) -> None:
    """A key's record kept for a minute (TAPELINE_KEY_CACHE_SECONDS=60) is still checked
    against the clock on every request: the first request after the expiry is refused."""
    with app(tmp_path, key_cache_seconds=60) as client:
        key = new_key(client, "team-e")
        expires = datetime.now(UTC) + timedelta(seconds=2)
        set_expiry(client, key["id"], expires)  # before the record is first read
        assert client.get("/v1/me", headers=bearer(key["key"])).status_code == 200  # kept now
        time.sleep(max((expires - datetime.now(UTC)).total_seconds(), 0) + 0.05)
        assert_401(client.get("/v1/me", headers=bearer(key["key"])), "expired")


def test_a_kept_key_record_spares_the_store_until_it_is_stale_or_dropped(tmp_path: Path) -> None:
    """The cost the key cache removes: while a key's record is kept, its requests read nothing
    of api_keys; a revocation made here drops it (the next request reads the store, and is
    refused)."""
    with app(tmp_path, key_cache_seconds=60) as client:
        key = new_key(client, "team-k")
        engine = client.app.state.runtime.engine  # type: ignore[attr-defined]
        reads: list[str] = []

        def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if "api_keys" in statement:
                reads.append(statement)

        event.listen(engine, "before_cursor_execute", record)
        try:
            assert client.get("/v1/me", headers=bearer(key["key"])).status_code == 200
            assert len(reads) == 2  # read once, and last_used_at written
            for _ in range(3):
                assert client.get("/v1/me", headers=bearer(key["key"])).status_code == 200
            assert len(reads) == 2
            assert client.delete(f"/v1/keys/{key['id']}", headers=bearer(ADMIN)).status_code == 204
            del reads[:]
            assert_401(client.get("/v1/me", headers=bearer(key["key"])), "revoked")
            assert len(reads) == 1  # dropped at the revocation: read again
        finally:
            event.remove(engine, "before_cursor_execute", record)


def test_a_read_begun_before_a_revocation_is_not_kept() -> None:
    """A record read while the key was being revoked here must not be kept afterwards, or the
    revocation would wait for the record to go stale."""
    cache = KeyCache(60)
    record = keys.KeyRecord("key_1", "team", frozenset({"read"}), None, False, None, None)
    generation = cache.generation  # a read begins
    cache.forget(key_id="key_1")  # the revocation commits and drops the record
    cache.put("digest", record, time.monotonic(), generation)  # the read ends
    assert cache.get("digest") is None
    cache.put("digest", record, time.monotonic(), cache.generation)  # a read after it
    assert cache.get("digest") == record
    cache.forget(tenant="team")  # quotas set: the tenant's records go
    assert cache.get("digest") is None


def revoke_elsewhere(client: TestClient, key_id: str) -> None:
    """Revoke a key the way `tapeline keys revoke` does: another process, the same store."""
    engine = make_engine(str(client.app.state.settings.database_url))  # type: ignore[attr-defined]
    with sessionmaker(engine).begin() as session:
        keys.revoke(session, key_id, None)
    engine.dispose()


def test_a_key_revoked_by_another_process_is_refused_within_the_cache_time(
        tmp_path: Path) -> None:
    """A revocation this server did not make is seen when the key's record is read again:
    at once with TAPELINE_KEY_CACHE_SECONDS=0, within that many seconds otherwise. One made
    through this server's API is seen on the next request whatever the setting (test above)."""
    with app(tmp_path / "none", key_cache_seconds=0) as client:
        key = new_key(client, "team-x")
        assert client.get("/v1/me", headers=bearer(key["key"])).status_code == 200
        revoke_elsewhere(client, key["id"])
        assert_401(client.get("/v1/me", headers=bearer(key["key"])), "revoked")
    with app(tmp_path / "kept", key_cache_seconds=0.5) as client:
        key = new_key(client, "team-x")
        assert client.get("/v1/me", headers=bearer(key["key"])).status_code == 200
        revoke_elsewhere(client, key["id"])
        time.sleep(0.55)
        assert_401(client.get("/v1/me", headers=bearer(key["key"])), "revoked")


def test_active_runs_over_the_quota_get_429_even_when_sent_at_once(client: TestClient) -> None:
    headers = bearer(new_key(client, "team-q")["key"])
    client.put("/v1/tenants/team-q/quotas", headers=bearer(ADMIN), json={"max_active_runs": 3})
    dataset = client.post("/v1/datasets/synthetic", headers=headers,
                          json={"num_examples": 20000}).json()
    models = [client.post("/v1/models", headers=headers).json()["id"] for _ in range(8)]

    def start(model: str) -> Any:
        return client.post(f"/v1/models/{model}/runs", headers=headers, json={
            "dataset_id": dataset["id"], "epochs": 1000, "batch_size": 4})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(start, models))
    assert sorted(a.status_code for a in answers) == [202] * 3 + [429] * 5
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["Retry-After"] == "5"
    assert refused.headers["RateLimit-Limit"] == "3"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert "quota of 3" in refused.json()["detail"]
    assert client.get("/v1/me", headers=headers).json()["usage"]["active_runs"] == 3
    for answer in answers:
        if answer.status_code == 202:
            client.post(f"/v1/runs/{answer.json()['id']}/cancel", headers=headers)


def test_a_dataset_past_the_byte_quota_gets_429_and_is_not_stored(client: TestClient) -> None:
    headers = bearer(new_key(client, "team-b")["key"])
    client.put("/v1/tenants/team-b/quotas", headers=bearer(ADMIN),
               json={"max_stored_bytes": 20_000})
    first = client.post("/v1/datasets/synthetic", headers=headers, json={"num_examples": 1000})
    assert first.status_code == 201  # 1000 float32 x and y: 8000 bytes and headers
    second = client.post("/v1/datasets/synthetic", headers=headers, json={"num_examples": 1000})
    assert second.status_code == 201
    third = client.post("/v1/datasets", headers=headers,
                        json={"x": list(range(1000)), "y": list(range(1000))})
    assert third.status_code == 429, third.text
    assert third.headers["RateLimit-Limit"] == "20000" and "Retry-After" in third.headers
    assert "quota of 20000 bytes" in third.json()["detail"]
    assert len(client.get("/v1/datasets", headers=headers).json()["items"]) == 2


def test_a_burst_over_the_rate_limit_gets_429_with_headers(tmp_path: Path) -> None:
    with app(tmp_path, tenant_rate_limit="5/minute") as client:
        key = new_key(client, "team-r")["key"]
        other = new_key(client, "team-s")["key"]
        answers = [client.get("/v1/models", headers=bearer(key)) for _ in range(7)]
        assert [a.status_code for a in answers] == [200] * 5 + [429] * 2
        assert [a.headers["RateLimit-Remaining"] for a in answers[:5]] == ["4", "3", "2", "1",
                                                                          "0"]
        refused = answers[-1]
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["RateLimit-Limit"] == "5"
        assert 0 < int(refused.headers["Retry-After"]) <= 60
        assert 0 < int(refused.headers["RateLimit-Reset"]) <= 60
        # Another tenant's budget is its own.
        assert client.get("/v1/models", headers=bearer(other)).status_code == 200


def test_an_unreachable_rate_limiter_answers_503_and_stores_nothing(tmp_path: Path) -> None:
    """Redis down (nothing listens on the port): keyed requests get a 503 problem with
    Retry-After, never a 500, and are not carried out; keyless health checks still answer."""
    from tests.support.servers import free_port

    with app(tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0") as client:
        refused = client.post("/v1/models", headers=bearer(ADMIN))
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["Retry-After"]) > 0
        assert "TAPELINE_REDIS_URL" in refused.json()["detail"]
        assert client.get("/healthz").status_code == 200
    with app(tmp_path) as client:  # the same store, without Redis: the model was not made
        assert client.get("/v1/models", headers=bearer(ADMIN)).json()["items"] == []


def test_auth_modes(tmp_path: Path) -> None:
    with app(tmp_path / "off", auth="off", bootstrap_admin_key=None) as client:
        assert client.get("/v1/me").json()["tenant"] == "default"
        assert client.get("/v1/me", headers=bearer("tl_" + "x" * 43)).status_code == 200
    with app(tmp_path / "auto", auth="auto", bootstrap_admin_key=None) as client:
        assert client.post("/v1/models").status_code == 201  # loopback, no key: tenant default
        me = client.get("/v1/me").json()
        assert me["tenant"] == "default" and me["quotas"] is None
        made = client.post("/v1/keys", json={"tenant": "ops", "scopes": ["admin"]})
        assert made.status_code == 201
        assert_401(client.get("/v1/models"), "needs an API key")  # a key exists: required now
        ops = bearer(made.json()["key"])
        assert client.get("/v1/models", headers=ops).json()["items"] == []  # not default's
    with app(tmp_path / "net", auth="auto", bootstrap_admin_key=None, host="0.0.0.0",
             allowed_hosts=["*"]) as client:
        assert_401(client.get("/v1/models"), "needs an API key")  # never keyless off loopback
    with app(tmp_path / "public", metrics_public=True) as client:
        assert client.get("/metrics").status_code == 200


def test_every_operation_of_the_spec_enforces_its_key_and_scope(client: TestClient) -> None:
    """From the spec: every operation declaring the bearer scheme answers 401 without a key,
    and 403 to a key without its `x-scope` (a new endpoint is covered without a new test)."""
    import re

    spec = client.get("/openapi.json").json()
    reader = bearer(new_key(client, "team-scope", scopes=["read"])["key"])
    writer = bearer(new_key(client, "team-scope", scopes=["write"])["key"])
    checked = 0
    for path, operations in spec["paths"].items():
        url = re.sub(r"\{[^}]+\}", "x_0000", path)
        for method, operation in operations.items():
            if "security" not in operation:
                assert path in ("/healthz", "/readyz"), f"{method} {path} is open"
                continue
            assert_401(client.request(method, url), "needs an API key")
            scope = operation["x-scope"]
            for headers, has in ((reader, {"read"}), (writer, {"read", "write"})):
                answer = client.request(method, url, headers=headers)
                if scope not in has:
                    assert answer.status_code == 403, (method, path, answer.text)
                else:
                    assert answer.status_code not in (401, 403), (method, path, answer.text)
            checked += 1
    assert checked >= 25


def test_kept_answers_never_cross_tenants(client: TestClient) -> None:
    """A finished run's downsampled history and a dataset's seeded sample are kept in memory
    once read; another tenant asking for the same still gets 404."""
    owner = bearer(new_key(client, "team-kept")["key"])
    other = bearer(new_key(client, "team-peek")["key"])
    dataset = client.post("/v1/datasets/synthetic", headers=owner, json={"seed": 5}).json()
    model = client.post("/v1/models", headers=owner).json()
    run = client.post(f"/v1/models/{model['id']}/runs", headers={**owner, "prefer": "wait=60"},
                      json={"dataset_id": dataset["id"], "epochs": 3}).json()
    assert run["status"] == "succeeded"
    history = f"/v1/runs/{run['id']}/history"
    sample = f"/v1/datasets/{dataset['id']}/data"
    for _ in range(2):  # the second answer comes from memory
        assert client.get(history, headers=owner, params={"max_points": 4}).status_code == 200
        assert client.get(sample, headers=owner, params={"sample": 5}).status_code == 200
    assert client.get(history, headers=other, params={"max_points": 4}).status_code == 404
    assert client.get(sample, headers=other, params={"sample": 5}).status_code == 404
