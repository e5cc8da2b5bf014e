"""Tenants against real servers, on SQLite and on PostgreSQL: a cross-tenant matrix generated
from the OpenAPI spec (so a new endpoint is covered without a new test), the bootstrap key,
keys kept out of logs and out of the database file, the refusal to serve a network
without keys, and one worker's queue served fairly between tenants."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT
from tests.support.servers import LiveServer, free_port, sqlite_url, start_server
from tests.support.stores import store_url

BOOTSTRAP = "tl_" + "B" * 20 + secrets.token_urlsafe(32)
UNKNOWN_IDS = {"dataset_id": "ds_00000000000000000000", "model_id": "mdl_00000000000000000000",
               "run_id": "run_00000000000000000000", "key_id": "key_00000000000000000000",
               "webhook_id": "wh_00000000000000000000",
               "delivery_id": "dlv_00000000000000000000",
               "study_id": "st_00000000000000000000"}
# Path parameters that are not ids of a tenant's resources, and why.
NOT_IDS = {"tenant": "names a tenant: only admins of tenant 'admin' may use it (403 for B)"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres",
                                                               marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server that requires keys, with a bootstrap admin key, on each store."""
    folder = tmp_path_factory.mktemp("tenants")
    with ExitStack() as stack:
        url = store_url(request, folder, stack)
        live = start_server(url, folder / "server.log", TAPELINE_AUTH="required",
                            TAPELINE_BOOTSTRAP_ADMIN_KEY=BOOTSTRAP, TAPELINE_WORKERS="1",
                            TAPELINE_TENANT_RATE_LIMIT="10000/second")
        live.database = url  # type: ignore[attr-defined]
        yield live
        live.stop()


def new_key(server: LiveServer, tenant: str, scopes: list[str]) -> dict[str, Any]:
    answer = httpx.post(f"{server.url}/v1/keys", headers=bearer(BOOTSTRAP),
                        json={"tenant": tenant, "scopes": scopes, "name": f"{tenant} key"})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def wait_until(api: httpx.Client, run_id: str, statuses: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        run = api.get(f"/v1/runs/{run_id}").json()
        if run["status"] in statuses:
            return dict(run)
        assert time.monotonic() < deadline, run
        time.sleep(0.05)


def one_of_everything(api: httpx.Client) -> dict[str, Any]:
    """A dataset, a model with a finished run, a model with a running run, and a webhook
    endpoint with a delivery (a ping to a name that does not resolve here)."""
    dataset = api.post("/v1/datasets/synthetic", json={"seed": 1}).json()
    model = api.post("/v1/models").json()
    finished = api.post(f"/v1/models/{model['id']}/runs", headers={"prefer": "wait=60"},
                        json={"dataset_id": dataset["id"], "epochs": 3}).json()
    assert finished["status"] == "succeeded", finished
    study = api.post("/v1/studies", json={
        "dataset_id": dataset["id"], "model": {"kind": "linear"}, "run": {"epochs": 2},
        "space": {"run.optimizer.learning_rate": {"type": "choice", "values": [0.1]}},
        "objective": {"metric": "loss", "goal": "minimize"}, "sampler": {"kind": "grid"}}).json()
    deadline = time.monotonic() + 60
    while api.get(f"/v1/studies/{study['id']}").json()["status"] == "running":
        assert time.monotonic() < deadline, "the study did not end"
        time.sleep(0.2)
    slow_data = api.post("/v1/datasets/synthetic", json={"num_examples": 20000, "seed": 2}).json()
    busy = api.post("/v1/models").json()
    running = api.post(f"/v1/models/{busy['id']}/runs", json={
        "dataset_id": slow_data["id"], "epochs": 2000, "batch_size": 4}).json()
    wait_until(api, running["id"], {"running"})
    webhook = api.post("/v1/webhooks", json={"url": "https://hooks.example.invalid/a",
                                             "events": ["dataset.deleted"]}).json()
    delivery = api.post(f"/v1/webhooks/{webhook['id']}/test").json()
    return {"study": study, "dataset": dataset, "model": model, "run": finished, "busy_model": busy,
            "running": running, "slow_data": slow_data, "webhook": webhook,
            "delivery": delivery}


def snapshot(api: httpx.Client, made: dict[str, Any]) -> dict[str, bytes]:
    """The bytes of every answer about A's resources that nothing but A may change."""
    paths = [f"/v1/datasets/{made['dataset']['id']}", f"/v1/datasets/{made['dataset']['id']}/data",
             f"/v1/models/{made['model']['id']}", f"/v1/models/{made['model']['id']}/runs",
             f"/v1/runs/{made['run']['id']}", f"/v1/runs/{made['run']['id']}/history",
             f"/v1/models/{made['model']['id']}/history", "/v1/datasets",
             f"/v1/webhooks/{made['webhook']['id']}",
             f"/v1/webhooks/{made['webhook']['id']}/deliveries",
             f"/v1/studies/{made['study']['id']}", f"/v1/studies/{made['study']['id']}/trials"]
    return {path: api.get(path).content for path in paths}


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every (method, path, operation) of the spec whose path holds a parameter, deletions
    last."""
    found = [(method.upper(), path, op) for path, ops in spec["paths"].items()
             for method, op in ops.items() if "{" in path]
    return sorted(found, key=lambda item: item[0] == "DELETE")


def body_for(op: dict[str, Any], own_dataset: str) -> dict[str, Any] | None:
    """The operation's example body, with any dataset id made the caller's own."""
    content = op.get("requestBody", {}).get("content", {})
    kind = next((k for k in ("application/json", "application/merge-patch+json") if k in content),
                None)
    if kind is None:
        return None
    example = dict(content[kind].get("example") or {})
    if "dataset_id" in example:
        example["dataset_id"] = own_dataset
    if op["operationId"] == "models-predict":
        example = {"x": [1.0]}
    return example


def test_tenant_b_gets_404_for_every_id_of_tenant_a(server: LiveServer) -> None:
    a_key, b_key = new_key(server, "team-a", ["admin"]), new_key(server, "team-b", ["admin"])
    a = httpx.Client(base_url=server.url, headers=bearer(a_key["key"]), timeout=30)
    b = httpx.Client(base_url=server.url, headers=bearer(b_key["key"]), timeout=30)
    made = one_of_everything(a)
    b_dataset = b.post("/v1/datasets/synthetic", json={"seed": 3}).json()["id"]
    before = snapshot(a, made)
    spec = httpx.get(f"{server.url}/openapi.json").json()
    ids = {"dataset_id": made["dataset"]["id"], "model_id": made["model"]["id"],
           "run_id": made["run"]["id"], "key_id": a_key["id"],
           "webhook_id": made["webhook"]["id"], "delivery_id": made["delivery"]["id"],
           "study_id": made["study"]["id"]}
    checked = []
    for method, path, op in operations(spec):
        names = re.findall(r"\{([^}]+)\}", path)
        if any(name in NOT_IDS for name in names):
            continue
        assert all(name in ids for name in names), f"{path}: an id the matrix does not know"
        runs = [ids["run_id"], made["running"]["id"]] if "run_id" in names else [None]
        for run_id in runs:
            filled = {**ids, **({"run_id": run_id} if run_id else {})}
            url = re.sub(r"\{([^}]+)\}", lambda m, f=filled: f[m.group(1)], path)
            unknown = re.sub(r"\{([^}]+)\}", lambda m: UNKNOWN_IDS[m.group(1)], path)
            body = body_for(op, b_dataset)
            accepts = ["text/event-stream", "application/jsonl"] if "events" in path else [None]
            for accept in accepts:
                headers = {"accept": accept} if accept else {}
                foreign = b.request(method, url, json=body, headers=headers)
                missing = b.request(method, unknown, json=body, headers=headers)
                assert foreign.status_code == 404, (method, url, foreign.text)
                assert missing.status_code == 404, (method, unknown, missing.text)
                assert foreign.headers["content-type"] == "application/problem+json"
                assert foreign.json()["type"] == missing.json()["type"]
                assert foreign.json()["title"] == missing.json()["title"]
                checked.append(op["operationId"])
    assert {"datasets-delete", "models-predict", "runs-create", "runs-cancel", "events-stream",
            "history-run", "history-model", "keys-delete", "datasets-download",
            "webhooks-update", "webhooks-redeliver", "studies-get", "studies-trials",
            "studies-cancel", "studies-delete", "studies-events"} <= set(checked)
    # B's run on A's dataset, with B's own model: 404 naming no more than an unknown id would.
    b_model = b.post("/v1/models").json()["id"]
    answer = b.post(f"/v1/models/{b_model}/runs", json={"dataset_id": made["dataset"]["id"]})
    assert answer.status_code == 404, answer.text
    answer = b.post(f"/v1/models/{b_model}/runs", json={
        "dataset_id": b_dataset, "validation": {"dataset_id": made["dataset"]["id"]}})
    assert answer.status_code == 404, answer.text
    # A's resources are untouched: byte for byte, and the running run still runs.
    assert snapshot(a, made) == before
    assert a.get(f"/v1/runs/{made['running']['id']}").json()["status"] == "running"
    assert a.get("/v1/me").status_code == 200  # A's key was not revoked by B
    # B's lists never show A's ids; A's lists show them.
    a_ids = {made[name]["id"] for name in made}
    for method, path in ((m.upper(), p) for p, ops in spec["paths"].items() for m in ops):
        if method != "GET" or "{" in path or path in ("/healthz", "/readyz", "/metrics"):
            continue
        text = b.get(path).text
        assert not any(i in text for i in a_ids), path
        assert a_key["id"] not in text or path != "/v1/keys", path
    assert made["dataset"]["id"] in a.get("/v1/datasets").text
    assert made["running"]["id"] in a.get("/v1/runs").text
    a.post(f"/v1/runs/{made['running']['id']}/cancel")
    wait_until(a, made["running"]["id"], {"cancelled"})


def test_a_read_stream_lets_its_tenant_in_and_no_other(server: LiveServer) -> None:
    """A server lets a tenant already shown to own a run into the run's live feed without
    asking the store again; while the owner reads it, another tenant still gets the 404 of an
    id that does not exist, and the owner's next reader gets the epochs."""
    a_key, b_key = new_key(server, "feed-a", ["read", "write"]), new_key(server, "feed-b", ["read"])
    a = httpx.Client(base_url=server.url, headers=bearer(a_key["key"]), timeout=30)
    b = httpx.Client(base_url=server.url, headers=bearer(b_key["key"]), timeout=30)
    data = a.post("/v1/datasets/synthetic", json={"num_examples": 20000, "seed": 4}).json()
    model = a.post("/v1/models").json()
    run = a.post(f"/v1/models/{model['id']}/runs", json={
        "dataset_id": data["id"], "epochs": 2000, "batch_size": 4}).json()
    wait_until(a, run["id"], {"running"})
    lines = {"accept": "application/jsonl"}
    try:
        with a.stream("GET", f"/v1/runs/{run['id']}/events", headers=lines) as first:
            assert first.status_code == 200
            assert json.loads(next(first.iter_lines()))["type"] == "epoch"  # the feed is live
            for accept in ("application/jsonl", "text/event-stream"):
                foreign = b.get(f"/v1/runs/{run['id']}/events", headers={"accept": accept})
                assert foreign.status_code == 404, foreign.text
                missing = b.get("/v1/runs/run_00000000000000000000/events",
                                headers={"accept": accept})
                assert foreign.json()["type"] == missing.json()["type"]
            with a.stream("GET", f"/v1/runs/{run['id']}/events", headers=lines) as second:
                assert second.status_code == 200
                assert json.loads(next(second.iter_lines()))["type"] == "epoch"
    finally:
        a.post(f"/v1/runs/{run['id']}/cancel")
        wait_until(a, run["id"], {"cancelled"})


def test_the_bootstrap_key_is_an_admin_of_tenant_admin(server: LiveServer) -> None:
    me = httpx.get(f"{server.url}/v1/me", headers=bearer(BOOTSTRAP)).json()
    assert me["tenant"] == "admin" and me["scopes"] == ["read", "write", "admin"]
    listed = httpx.get(f"{server.url}/v1/keys", headers=bearer(BOOTSTRAP),
                       params={"tenant": "admin"}).json()["items"]
    assert [k["name"] for k in listed] == ["bootstrap"]
    assert BOOTSTRAP not in json.dumps(listed) and listed[0]["prefix"] == BOOTSTRAP[:11]


def test_a_restart_registers_the_bootstrap_key_once(server: LiveServer,
                                                    tmp_path: Path) -> None:
    """Start-up is idempotent: a second server on the same store adds no second key."""
    url = server.database  # type: ignore[attr-defined]
    second = start_server(url, tmp_path / "second.log", TAPELINE_AUTH="required",
                          TAPELINE_BOOTSTRAP_ADMIN_KEY=BOOTSTRAP)
    try:
        listed = httpx.get(f"{second.url}/v1/keys", headers=bearer(BOOTSTRAP),
                           params={"tenant": "admin"}).json()["items"]
        assert len(listed) == 1
    finally:
        second.stop()


def test_keys_never_reach_the_logs_or_the_database_file(tmp_path: Path) -> None:
    live = start_server(sqlite_url(tmp_path), tmp_path / "server.log",
                        TAPELINE_BOOTSTRAP_ADMIN_KEY=BOOTSTRAP, TAPELINE_LOG_LEVEL="debug")
    try:
        made = new_key(live, "team-a", ["read", "write"])
        key = made["key"]
        wrong = key[:-4] + "AAAA"
        for headers in (bearer(key), bearer(wrong), bearer(BOOTSTRAP)):
            httpx.get(f"{live.url}/v1/models", headers=headers)
        assert httpx.get(f"{live.url}/v1/models", headers=bearer(wrong)).status_code == 401
        httpx.delete(f"{live.url}/v1/keys/{made['id']}", headers=bearer(BOOTSTRAP))
        revoked = httpx.get(f"{live.url}/v1/models", headers=bearer(key))
        assert revoked.status_code == 401 and key not in revoked.text
        metrics = httpx.get(f"{live.url}/metrics", headers=bearer(BOOTSTRAP)).text
    finally:
        live.stop()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("tapeline.db*"))
    log = (tmp_path / "server.log").read_text()
    import hashlib

    for secret in (key, wrong, BOOTSTRAP):
        assert secret.encode() not in stored
        assert secret not in log and secret not in metrics
        assert secret[3:] not in log
        assert hashlib.sha256(secret.encode()).hexdigest() not in log
    assert hashlib.sha256(key.encode()).hexdigest().encode() in stored  # what is kept


def test_auto_serves_loopback_without_keys_and_refuses_a_network(tmp_path: Path) -> None:
    live = start_server(sqlite_url(tmp_path), tmp_path / "server.log")
    try:
        assert httpx.get(f"{live.url}/v1/models").status_code == 200
        me = httpx.get(f"{live.url}/v1/me").json()
        assert me["tenant"] == "default" and me["key_id"] is None
    finally:
        live.stop()
    env = {"TAPELINE_DATABASE_URL": sqlite_url(tmp_path / "net"), "TAPELINE_HOST": "0.0.0.0",
           "TAPELINE_PORT": str(free_port()), "TAPELINE_ALLOWED_HOSTS": "*",
           "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    (tmp_path / "net").mkdir()
    done = subprocess.run([sys.executable, "-m", "service.cli", "serve"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    message = done.stderr.strip()
    assert len(message.splitlines()) == 1
    assert "tapeline keys create" in message and "TAPELINE_BOOTSTRAP_ADMIN_KEY" in message
    assert "TAPELINE_AUTH=off" in message
    # Either way out works: a key in the store, or keys off.
    created = subprocess.run([sys.executable, "-m", "service.cli", "keys", "create", "--tenant",
                              "ops", "--scopes", "admin"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"tl_[A-Za-z0-9_-]{43}", key)
    port = free_port()
    served = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"],
                              env={**env, "TAPELINE_PORT": str(port)}, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline and served.poll() is None
                time.sleep(0.1)
        assert httpx.get(f"{url}/v1/models").status_code == 401
        assert httpx.get(f"{url}/v1/models", headers=bearer(key)).status_code == 200
    finally:
        served.terminate()
        served.wait(15)


@pytest.mark.redis
def test_two_servers_with_redis_share_one_rate_budget(tmp_path: Path, redis_url: str) -> None:
    """With TAPELINE_REDIS_URL, replicas count a tenant's requests together: 10 a minute
    across two live servers means 10, not 20."""
    settings = {"TAPELINE_BOOTSTRAP_ADMIN_KEY": BOOTSTRAP, "TAPELINE_REDIS_URL": redis_url,
                "TAPELINE_TENANT_RATE_LIMIT": "10/minute"}
    first = start_server(sqlite_url(tmp_path), tmp_path / "first.log", **settings)
    second = start_server(sqlite_url(tmp_path), tmp_path / "second.log", **settings)
    try:
        tenant = f"shared-{secrets.token_hex(4)}"  # a budget no earlier run has used
        key = new_key(first, tenant, ["read"])["key"]
        statuses = []
        for i in range(12):
            live = (first, second)[i % 2]
            answer = httpx.get(f"{live.url}/v1/me", headers=bearer(key))
            statuses.append(answer.status_code)
            if i == 9:
                assert answer.headers["RateLimit-Remaining"] == "0"
        assert statuses == [200] * 10 + [429] * 2
        assert "Retry-After" in answer.headers and answer.headers["RateLimit-Limit"] == "10"
    finally:
        first.stop()
        second.stop()


def test_the_keys_command_line(tmp_path: Path) -> None:
    """`tapeline keys create | list | revoke | generate` on the configured store; the new key
    is alone on the last line, and the list never shows a key."""
    env = {"TAPELINE_DATABASE_URL": sqlite_url(tmp_path), "PYTHONPATH": str(ROOT),
           "PATH": "/usr/bin:/bin"}

    def tapeline(*args: str, command: str = "keys") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "service.cli", command, *args], env=env,
                              cwd=ROOT, capture_output=True, text=True, timeout=60)

    assert tapeline(command="migrate").returncode == 0  # the keys commands make no store
    made = tapeline("create", "--tenant", "team-cli", "--scopes", "read", "--name", "ci",
                    "--expires-in-days", "30")
    assert made.returncode == 0, made.stderr
    key = made.stdout.rstrip("\n").splitlines()[-1]
    assert re.fullmatch(r"tl_[A-Za-z0-9_-]{43}", key)
    key_id = re.search(r"key_[0-9a-f]{20}", made.stdout)[0]  # type: ignore[index]
    listed = tapeline("list", "--tenant", "team-cli")
    assert listed.returncode == 0 and key_id in listed.stdout and key not in listed.stdout
    assert key[:11] + "..." in listed.stdout and "\tread\t" in listed.stdout
    assert tapeline("list", "--tenant", "nobody").stdout.count("\n") == 1  # the header alone
    revoked = tapeline("revoke", key_id)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert tapeline("list").stdout.split("\n")[1].split("\t")[-1] != "-"  # revoked at a time
    missing = tapeline("revoke", "key_00000000000000000000")
    assert missing.returncode == 1 and "no key" in missing.stderr
    for bad in (["--scopes", "root"], ["--expires-in-days", "0"]):
        wrong = tapeline("create", "--tenant", "team-cli", *bad)
        assert wrong.returncode == 2 and key not in wrong.stderr
    assert tapeline("create", "--tenant", "Team A").returncode == 2
    fresh = tapeline("generate").stdout.strip()
    assert re.fullmatch(r"tl_[A-Za-z0-9_-]{43}", fresh)
    assert fresh not in tapeline("list").stdout  # generated, not stored


def test_concurrent_runs_never_pass_the_active_run_quota(server: LiveServer) -> None:
    """Eight runs sent at once by a tenant whose quota is three: exactly three are queued, on
    SQLite and on PostgreSQL (the count is taken under the queue's lock)."""
    from concurrent.futures import ThreadPoolExecutor

    key = new_key(server, "team-quota", ["write"])["key"]
    assert httpx.put(f"{server.url}/v1/tenants/team-quota/quotas", headers=bearer(BOOTSTRAP),
                     json={"max_active_runs": 3}).status_code == 200
    api = httpx.Client(base_url=server.url, headers=bearer(key), timeout=60)
    dataset = api.post("/v1/datasets/synthetic", json={"num_examples": 20000}).json()["id"]
    models = [api.post("/v1/models").json()["id"] for _ in range(8)]

    def start(model: str) -> httpx.Response:
        with httpx.Client(base_url=server.url, headers=bearer(key), timeout=60) as own:
            return own.post(f"/v1/models/{model}/runs", json={
                "dataset_id": dataset, "epochs": 1000, "batch_size": 4})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(start, models))
    assert sorted(a.status_code for a in answers) == [202] * 3 + [429] * 5
    assert all(a.headers["RateLimit-Limit"] == "3" and a.headers["Retry-After"]
               for a in answers if a.status_code == 429)
    assert api.get("/v1/me").json()["usage"]["active_runs"] == 3
    for answer in answers:
        if answer.status_code == 202:
            api.post(f"/v1/runs/{answer.json()['id']}/cancel")


def test_one_tenants_queued_runs_delay_anothers_run_by_at_most_one_run(tmp_path: Path) -> None:
    """Fair queueing over HTTP: with one worker, tenant A queues 20 runs, then tenant B queues
    one. Each of A's runs would train for minutes; the test cancels whichever of A's runs is
    training until B's has started, so a FIFO queue would start (and see cancelled) all 19 of
    A's waiting runs before B's. Round-robin starts at most one of A's between B's run being
    created and starting (A's turn was already due), whatever the machine's speed."""
    live = start_server(sqlite_url(tmp_path), tmp_path / "server.log", TAPELINE_AUTH="required",
                        TAPELINE_BOOTSTRAP_ADMIN_KEY=BOOTSTRAP, TAPELINE_WORKERS="1",
                        TAPELINE_TENANT_RATE_LIMIT="10000/second")
    try:
        assert httpx.put(f"{live.url}/v1/tenants/team-a/quotas", headers=bearer(BOOTSTRAP),
                         json={"max_active_runs": 25}).status_code == 200
        a = httpx.Client(base_url=live.url, timeout=60,
                         headers=bearer(new_key(live, "team-a", ["write"])["key"]))
        b = httpx.Client(base_url=live.url, timeout=60,
                         headers=bearer(new_key(live, "team-b", ["write"])["key"]))
        # Epochs of 500 steps: a cancel is honoured within one; 100,000 of them: minutes.
        a_data = a.post("/v1/datasets/synthetic", json={"num_examples": 2000}).json()["id"]
        a_runs = []
        for _ in range(20):
            model = a.post("/v1/models").json()["id"]
            answer = a.post(f"/v1/models/{model}/runs", json={
                "dataset_id": a_data, "epochs": 100_000, "batch_size": 4})
            assert answer.status_code == 202, answer.text
            a_runs.append(answer.json()["id"])
        b_data = b.post("/v1/datasets/synthetic", json={"num_examples": 100}).json()["id"]
        b_model = b.post("/v1/models").json()["id"]
        b_run = b.post(f"/v1/models/{b_model}/runs",
                       json={"dataset_id": b_data, "epochs": 1}).json()["id"]
        deadline = time.monotonic() + 60
        while (b_status := b.get(f"/v1/runs/{b_run}").json())["started_at"] is None:
            assert time.monotonic() < deadline, b_status
            for run in a.get("/v1/runs", params={"limit": 100}).json()["items"]:
                if run["status"] == "running":
                    a.post(f"/v1/runs/{run['id']}/cancel")
            time.sleep(0.05)
        for run_id in a_runs:  # the rest of A's queue: not needed any more
            a.post(f"/v1/runs/{run_id}/cancel")
        b_final = wait_until(b, b_run, {"succeeded"})
        a_final = [a.get(f"/v1/runs/{run_id}").json() for run_id in a_runs]
    finally:
        live.stop()

    def at(stamp: str) -> datetime:
        return datetime.fromisoformat(stamp)

    b_created, b_started = at(b_final["created_at"]), at(b_final["started_at"])
    between = [r["id"] for r in a_final
               if r["started_at"] and b_created < at(r["started_at"]) < b_started]
    assert len(between) <= 1, (between, b_final, a_final)
    # The case was a real one: A's runs were waiting when B's arrived, and most never started
    # before B's did.
    assert all(at(r["created_at"]) < b_created for r in a_final)
    never_before_b = [r for r in a_final
                      if r["started_at"] is None or at(r["started_at"]) > b_started]
    assert len(never_before_b) >= 17, a_final
