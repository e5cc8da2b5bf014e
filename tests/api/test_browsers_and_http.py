"""What a browser page elsewhere may not do (DNS rebinding, CSRF), CORS for the origins that are
allowed, and the small protocol points: nosniff on every answer, HEAD wherever GET, RFC 7240
``Prefer``, and a 500 that names only its request id."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.support.servers import sqlite_url


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app bound to loopback (the default) with one allowed browser origin."""
    settings = Settings(database_url=sqlite_url(tmp_path_factory.mktemp("guarded")), workers=1,
                        cors_origins=["https://dashboard.example"])
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000",
                    raise_server_exceptions=False) as client:
        yield client


def problem(answer: Any, status: int, *words: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    for word in words:
        assert word in body["detail"], body["detail"]
    return body


def test_a_foreign_host_header_is_refused(guarded: TestClient) -> None:
    # DNS rebinding: evil.example resolves to 127.0.0.1, the browser sends its own name.
    problem(guarded.get("/healthz", headers={"host": "evil.example"}), 400, "evil.example")
    problem(guarded.post("/v1/models", headers={"host": "evil.example:8000"}), 400)
    assert guarded.get("/v1/models").json()["items"] == []
    for host in ("127.0.0.1:8000", "localhost", "LOCALHOST:8000", "[::1]:8000"):
        assert guarded.get("/healthz", headers={"host": host}).status_code == 200, host


def test_allowed_hosts_setting(tmp_path: Path) -> None:
    settings = Settings(database_url=sqlite_url(tmp_path), workers=1, host="0.0.0.0",
                        allowed_hosts=["api.example.com", "*.internal.example"])
    with TestClient(create_app(settings), base_url="http://api.example.com") as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/healthz", headers={"host": "a.internal.example"}).status_code == 200
        problem(client.get("/healthz", headers={"host": "localhost"}), 400)
    with pytest.raises(ValueError, match="TAPELINE_ALLOWED_HOSTS is required"):
        Settings(host="0.0.0.0").hosts()
    assert Settings(host="0.0.0.0", allowed_hosts="*").hosts() == ["*"]


@pytest.mark.parametrize("headers", [
    {"origin": "https://evil.example", "sec-fetch-site": "cross-site"},
    {"origin": "https://evil.example"},
    {"origin": "null"},
    {"sec-fetch-site": "cross-site"},
    {"origin": "http://localhost:3000", "sec-fetch-site": "same-site"},
])
def test_cross_site_state_changes_are_refused(guarded: TestClient,
                                              headers: dict[str, str]) -> None:
    problem(guarded.post("/v1/models", headers=headers, json={}), 403, "TAPELINE_CORS_ORIGINS")
    # A text/plain form post to cancel: the classic CSRF, with no preflight.
    problem(guarded.post("/v1/runs/run_x/cancel", content=b"x",
                         headers={**headers, "content-type": "text/plain"}), 403)
    problem(guarded.delete("/v1/datasets/ds_x", headers=headers), 403)
    multipart = guarded.post("/v1/datasets/upload", headers=headers,
                             files={"file": ("d.csv", b"x,y\n1,2\n", "text/csv")})
    problem(multipart, 403)
    assert guarded.get("/v1/datasets").json()["items"] == []
    assert guarded.get("/v1/models", headers=headers).status_code == 200  # reading is fine


@pytest.mark.parametrize("headers", [
    {"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"},
    {"origin": "http://127.0.0.1:8000"},
    {"sec-fetch-site": "none"},
    {},
    {"origin": "https://dashboard.example", "sec-fetch-site": "cross-site"},
])
def test_same_origin_and_allowed_origins_still_work(guarded: TestClient,
                                                    headers: dict[str, str]) -> None:
    answer = guarded.post("/v1/models", headers=headers, json={})
    assert answer.status_code == 201, answer.text
    assert guarded.delete(f"/v1/models/{answer.json()['id']}", headers=headers).status_code == 204


def test_cors_answers_the_allowed_origin_only(guarded: TestClient) -> None:
    preflight = guarded.options("/v1/models", headers={
        "origin": "https://dashboard.example", "access-control-request-method": "POST",
        "access-control-request-headers": "content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://dashboard.example"
    answer = guarded.get("/v1/models", headers={"origin": "https://dashboard.example"})
    assert answer.headers["access-control-allow-origin"] == "https://dashboard.example"
    assert "Location" in answer.headers["access-control-expose-headers"]
    other = guarded.get("/v1/models", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_no_cors_by_default(app_client: TestClient) -> None:
    answer = app_client.get("/v1/models", headers={"origin": "https://dashboard.example"})
    assert "access-control-allow-origin" not in answer.headers


def test_every_answer_is_nosniff(guarded: TestClient) -> None:
    answers = [guarded.get("/healthz"), guarded.get("/v1/models/mdl_x"),
               guarded.get("/healthz", headers={"host": "evil.example"}),
               guarded.post("/v1/models", headers={"origin": "https://evil.example"}),
               guarded.get("/openapi.json"), guarded.get("/metrics")]
    for answer in answers:
        assert answer.headers["x-content-type-options"] == "nosniff", answer.request.url


def test_head_works_wherever_get_does(app_client: TestClient) -> None:
    model = app_client.post("/v1/models").json()
    dataset = app_client.post("/v1/datasets", json={"x": [1, 2], "y": [3, 4]}).json()
    run = app_client.post(f"/v1/models/{model['id']}/runs", headers={"prefer": "wait=30"},
                          json={"dataset_id": dataset["id"], "epochs": 2}).json()
    for path in ("/healthz", "/readyz", f"/v1/models/{model['id']}", "/v1/models",
                 f"/v1/datasets/{dataset['id']}/data", f"/v1/runs/{run['id']}/history",
                 f"/v1/runs/{run['id']}/events", "/openapi.json"):
        get, head = app_client.get(path), app_client.head(path)
        assert head.status_code == get.status_code == 200, path
        assert head.content == b"", path
        assert head.headers["content-type"] == get.headers["content-type"], path
        if "content-length" in get.headers:
            assert head.headers["content-length"] == get.headers["content-length"], path
    missing = app_client.head("/v1/models/mdl_missing")
    assert missing.status_code == 404 and missing.content == b""
    assert missing.headers["content-type"] == "application/problem+json"
    assert "HEAD" in app_client.put("/v1/models").headers["allow"]


def test_head_of_a_live_stream_ends_at_once(app_client: TestClient) -> None:
    dataset = app_client.post("/v1/datasets/synthetic", json={"num_examples": 20000,
                                                              "seed": 1}).json()
    model = app_client.post("/v1/models").json()
    run = app_client.post(f"/v1/models/{model['id']}/runs", json={
        "dataset_id": dataset["id"], "epochs": 50, "batch_size": 4}).json()
    start = time.monotonic()
    head = app_client.head(f"/v1/runs/{run['id']}/events")
    assert head.status_code == 200 and time.monotonic() - start < 5
    assert head.headers["content-type"].startswith("text/event-stream")
    app_client.post(f"/v1/runs/{run['id']}/cancel")


@pytest.fixture(scope="module")
def ready(app_client: TestClient) -> dict[str, str]:
    return {"dataset": app_client.post("/v1/datasets/synthetic", json={"num_examples": 50,
                                                                       "seed": 2}).json()["id"]}


@pytest.mark.parametrize(("prefer", "applied", "status"), [
    ("wait=30", "wait=30", 200),
    ("wait=1e9", "wait=60", 200),  # any decimal; capped at TAPELINE_MAX_WAIT_SECONDS
    ("wait=2.5", "wait=2.5", 200),
    ('respond-async, wait="30"; foo=bar', "wait=30", 200),
    ("x-unknown=" + "y" * 300 + ", wait=30", "wait=30", 200),  # over 200 characters
    ("handling=lenient", None, 202),
    ("wait=soon", None, 202),
    ("wait=-1", None, 202),
    ("x" * 5000, None, 202),
])
def test_prefer_follows_rfc_7240(app_client: TestClient, ready: dict[str, str], prefer: str,
                                 applied: str | None, status: int) -> None:
    model = app_client.post("/v1/models").json()
    answer = app_client.post(f"/v1/models/{model['id']}/runs", headers={"prefer": prefer},
                             json={"dataset_id": ready["dataset"], "epochs": 3})
    assert answer.headers.get("preference-applied") == applied
    if status == 200:
        assert answer.status_code == 200 and answer.json()["status"] == "succeeded"
    else:
        assert answer.status_code == 202, answer.text
        deadline = time.monotonic() + 30
        while app_client.get(f"/v1/runs/{answer.json()['id']}").json()["status"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.02)


def test_a_large_json_body_is_answered_as_a_small_one(app_client: TestClient) -> None:
    rows = [[float(i)] for i in range(20_000)]
    big = app_client.post("/v1/datasets", json={"x": rows, "y": [1.0] * 20_000, "z": 1})
    small = app_client.post("/v1/datasets", json={"x": rows[:2], "y": [1.0] * 2, "z": 1})
    assert problem(big, 422)["errors"] == problem(small, 422)["errors"]
    assert problem(big, 422)["errors"] == [{"loc": ["body", "z"],
                                            "msg": 'unknown field "z"; the fields are '
                                                   '"x", "y", "name", "description", "tags"'}]
    bad = app_client.post("/v1/datasets", json={"x": rows, "y": [1.0] * 19_999 + ["a"]})
    assert problem(bad, 422)["errors"][0]["loc"] == ["body", "y", 19_999]
    broken = app_client.post("/v1/datasets", content=b'{"x": [' + b"1," * 50_000,
                             headers={"content-type": "application/json"})
    problem(broken, 422, "JSON decode error")
    stored = app_client.post("/v1/datasets", json={"x": rows, "y": [1.0] * 20_000})
    assert stored.status_code == 201 and stored.json()["num_examples"] == 20_000
