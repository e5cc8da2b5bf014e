"""Webhooks against real servers and a real receiver on a loopback port, which verifies every
request's signature with the ``standardwebhooks`` library: a run's life arrives signed and in
order with its snapshots; a receiver answering 500 three times, or down for a while, gets every
event once it recovers, with the same ``webhook-id``; a server killed with SIGKILL between a
run's end and the delivery delivers it after its restart; a name that resolves to loopback at
delivery is refused there; 410 and 3 days of failures disable an endpoint and tell the others;
pings, rotation and redelivery; another tenant's events never arrive; the metrics count it;
and the terminal client's ``tapeline webhooks``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.receiver import Received, Receiver
from tests.support.servers import ROOT, LiveServer, sqlite_url, start_server

FAST = {"TAPELINE_WEBHOOK_ALLOW_PRIVATE": "true", "TAPELINE_WEBHOOK_RETRY_SCALE": "0.002",
        "TAPELINE_WEBHOOK_TIMEOUT_SECONDS": "2", "TAPELINE_WORKERS": "1"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("webhooks")
    live = start_server(sqlite_url(folder), folder / "server.log", **FAST)
    yield live
    live.stop()


@pytest.fixture
def api(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver().start()
    yield found
    found.release()
    found.stop()
    assert found.unsigned == 0, "a request's signature did not verify"


def hook(api: httpx.Client, receiver: Receiver, events: list[str], **extra: Any) -> str:
    """An endpoint posting to ``receiver``, which learns its secret."""
    made = api.post("/v1/webhooks", json={"url": receiver.url, "events": events, **extra})
    assert made.status_code == 201, made.text
    receiver.secrets.append(made.json()["secret"])
    return str(made.json()["id"])


def train(api: httpx.Client, epochs: int = 3, wait: bool = True) -> dict[str, Any]:
    dataset = api.post("/v1/datasets/synthetic", json={"num_examples": 100, "seed": 1}).json()
    model = api.post("/v1/models").json()
    answer = api.post(f"/v1/models/{model['id']}/runs",
                      json={"dataset_id": dataset["id"], "epochs": epochs},
                      headers={"prefer": "wait=60"} if wait else {})
    assert answer.status_code in (200, 202), answer.text
    return dict(answer.json())


def of_run(run_id: str) -> Callable[[list[Received]], bool]:
    """Whether a run's end has arrived."""
    return lambda got: any(r.type == "run.succeeded" and r.body["data"]["id"] == run_id
                           for r in got)


def log(api: httpx.Client, webhook_id: str, **params: Any) -> list[dict[str, Any]]:
    return list(api.get(f"/v1/webhooks/{webhook_id}/deliveries",
                        params={"limit": 200, **params}).json()["items"])


def metric(api: httpx.Client, name: str) -> float:
    """A sample of /metrics by its name and labels."""
    for line in api.get("/metrics").text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}")


def until(check: Callable[[], Any], timeout: float = 60) -> Any:
    """Poll ``check`` until it answers something true."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return found


def test_a_runs_life_arrives_signed_in_order_with_its_snapshots(
        server: LiveServer, api: httpx.Client, receiver: Receiver) -> None:
    webhook_id = hook(api, receiver, ["*"])
    try:
        run = train(api)
        receiver.wait_for(of_run(run["id"]))
    finally:
        api.delete(f"/v1/webhooks/{webhook_id}")
    types = [r.type for r in receiver.received]
    assert types == ["dataset.created", "model.created", "run.created", "run.started",
                     "run.succeeded"]
    assert len({r.id for r in receiver.received}) == 5
    created, started, succeeded = receiver.received[2:]
    assert [r.body["data"]["status"] for r in (created, started, succeeded)] == [
        "queued", "running", "succeeded"]
    assert succeeded.body["data"] == api.get(f"/v1/runs/{run['id']}").json()
    for received in receiver.received:
        assert received.verified_by == receiver.secrets
        assert received.headers["content-type"] == "application/json"
        assert received.headers["user-agent"].startswith("Tapeline-Webhooks/")
        assert abs(int(received.headers["webhook-timestamp"]) - received.at) < 30
        assert received.id.startswith("msg_")
    assert receiver.secrets[0] not in server.log.read_text()  # never logged


def test_a_receiver_failing_three_times_gets_the_event_once_it_recovers_in_order(
        api: httpx.Client, receiver: Receiver) -> None:
    receiver.script = [500, 500, 500]
    webhook_id = hook(api, receiver, ["run.*"])
    try:
        run = train(api)
        receiver.wait_for(of_run(run["id"]))
        [first] = log(api, webhook_id, event_type="run.created")
        failed = log(api, webhook_id, status="failed")
    finally:
        api.delete(f"/v1/webhooks/{webhook_id}")
    got = receiver.received
    assert [r.type for r in got] == ["run.created"] * 4 + ["run.started", "run.succeeded"]
    assert len({r.id for r in got[:4]}) == 1  # the same webhook-id every time
    assert [r.status for r in got] == [500, 500, 500, 200, 200, 200]
    # The run's later events waited for its first: none arrived before it was delivered.
    assert first["status"] == "succeeded" and first["attempt_count"] == 4
    assert [a["status_code"] for a in first["attempts"]] == [500, 500, 500, 200]
    assert [a["outcome"] for a in first["attempts"]] == ["failed"] * 3 + ["succeeded"]
    assert first["attempts"][0]["response"] == "answered 500"
    assert first["attempts"][0]["error"] == "answered 500"
    assert all(a["latency_ms"] > 0 for a in first["attempts"])
    assert failed == []


def test_a_receiver_down_for_a_while_gets_everything_when_it_is_back(
        api: httpx.Client, receiver: Receiver) -> None:
    webhook_id = hook(api, receiver, ["run.*"])
    receiver.stop()
    try:
        run = train(api)
        attempts = until(lambda: [a for d in log(api, webhook_id, event_type="run.created")
                                  for a in d["attempts"]][2:])
        assert attempts[0]["outcome"] == "error" and attempts[0]["status_code"] is None
        assert metric(api, "tapeline_webhook_oldest_pending_seconds") > 0
        receiver.start()
        receiver.wait_for(of_run(run["id"]))
    finally:
        api.delete(f"/v1/webhooks/{webhook_id}")
    assert [r.type for r in receiver.received] == ["run.created", "run.started", "run.succeeded"]
    assert metric(api, 'tapeline_webhook_deliveries_total{outcome="error"}') >= 3
    assert metric(api, 'tapeline_webhook_deliveries_total{outcome="succeeded"}') >= 3


def test_an_attempt_without_an_answer_in_time_is_retried(
        api: httpx.Client, receiver: Receiver) -> None:
    """The receiver holds the request past TAPELINE_WEBHOOK_TIMEOUT_SECONDS (2 here): the
    attempt ends as an error and the next one, answered, delivers the same event."""
    receiver.hold = lambda body: body["type"] == "model.created"
    webhook_id = hook(api, receiver, ["model.created"])
    try:
        api.post("/v1/models")
        [timed_out, *_] = until(lambda: [a for d in log(api, webhook_id)
                                         for a in d["attempts"]])
        assert timed_out["outcome"] == "error" and timed_out["error"] == "no answer within 2 s"
        assert timed_out["latency_ms"] >= 2000
        receiver.release()
        [delivery] = until(lambda: log(api, webhook_id, status="succeeded"))
        assert delivery["attempts"][0]["error"] == "no answer within 2 s"
        assert delivery["attempts"][-1]["status_code"] == 200
    finally:
        api.delete(f"/v1/webhooks/{webhook_id}")
    assert len({r.id for r in receiver.received}) == 1


def test_a_ping_rotation_and_a_redelivery(server: LiveServer, api: httpx.Client,
                                          receiver: Receiver) -> None:
    webhook_id = hook(api, receiver, ["model.created"])
    try:
        ping = api.post(f"/v1/webhooks/{webhook_id}/test").json()
        assert ping["status"] == "succeeded" and ping["attempts"][0]["status_code"] == 200
        [pinged] = receiver.received
        assert pinged.type == "ping" and pinged.body["data"]["id"] == webhook_id
        old = receiver.secrets[0]
        new = api.post(f"/v1/webhooks/{webhook_id}/rotate-secret").json()["secret"]
        receiver.secrets.append(new)
        model = api.post("/v1/models").json()
        receiver.wait_for(lambda got: len(got) == 2)
        rotated = receiver.received[1]
        assert rotated.body["data"]["id"] == model["id"]
        assert rotated.verified_by == [old, new]  # both sign for 24 hours
        assert rotated.headers["webhook-signature"].count("v1,") == 2
        [delivery] = log(api, webhook_id, event_type="model.created")
        again = api.post(f"/v1/webhooks/{webhook_id}/deliveries/{delivery['id']}/redeliver")
        assert again.status_code == 202
        receiver.wait_for(lambda got: len(got) == 3)
        assert receiver.received[2].id == rotated.id and receiver.received[2].body == rotated.body
        assert until(lambda: log(api, webhook_id, event_type="model.created")[0]
                     ["attempt_count"] == 2)
    finally:
        api.delete(f"/v1/webhooks/{webhook_id}")
    logged = server.log.read_text()
    assert not any(secret in logged for secret in receiver.secrets)


def test_410_disables_an_endpoint_and_the_others_are_told(
        api: httpx.Client, receiver: Receiver) -> None:
    watcher = Receiver().start()
    gone_id = hook(api, receiver, ["model.created"])
    watcher_id = hook(api, watcher, ["webhook.disabled"])
    receiver.script = [410]
    try:
        api.post("/v1/models")
        watcher.wait_for(lambda got: len(got) == 1)
        [told] = watcher.received
        assert told.type == "webhook.disabled" and told.body["data"]["id"] == gone_id
        assert told.body["data"]["disabled_reason"] == "gone" and told.verified_by
        endpoint = api.get(f"/v1/webhooks/{gone_id}").json()
        assert (endpoint["enabled"], endpoint["disabled_reason"]) == (False, "gone")
        api.post("/v1/models")  # nothing more goes to a disabled endpoint
        [delivery] = log(api, gone_id)
        assert delivery["status"] == "failed" and delivery["attempts"][0]["outcome"] == "gone"
        enabled = api.patch(f"/v1/webhooks/{gone_id}", json={"enabled": True}).json()
        assert (enabled["enabled"], enabled["disabled_reason"]) == (True, None)
    finally:
        api.delete(f"/v1/webhooks/{gone_id}")
        api.delete(f"/v1/webhooks/{watcher_id}")
        watcher.stop()
    assert watcher.unsigned == 0


def test_three_days_of_failures_disable_an_endpoint(tmp_path: Path) -> None:
    """With the delays scaled down 50,000 times, the 3 days are 5 seconds."""
    server = start_server(sqlite_url(tmp_path), tmp_path / "server.log",
                          **{**FAST, "TAPELINE_WEBHOOK_RETRY_SCALE": "0.00002"})
    failing, watcher = Receiver(script=[503] * 1000).start(), Receiver().start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as api:
            failing_id = hook(api, failing, ["model.created"])
            hook(api, watcher, ["webhook.disabled"])
            api.post("/v1/models")
            watcher.wait_for(lambda got: len(got) == 1)
            assert watcher.received[0].body["data"]["disabled_reason"] == "failing"
            [delivery] = log(api, failing_id)
            assert delivery["status"] == "failed" and delivery["attempt_count"] >= 5
            assert len({r.id for r in failing.received}) == 1
            assert len(failing.received) == delivery["attempt_count"]
    finally:
        failing.stop()
        watcher.stop()
        server.stop()


def test_a_server_killed_between_a_runs_end_and_its_delivery_delivers_after_restart(
        tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    first = start_server(url, tmp_path / "first.log", **FAST)
    receiver = Receiver(hold=lambda body: body["type"] == "run.succeeded").start()
    try:
        with httpx.Client(base_url=first.url, timeout=60) as api:
            webhook_id = hook(api, receiver, ["run.*"])
            run = train(api, wait=False)
        assert receiver.holding.wait(60)  # the end is in flight, unanswered
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()
        receiver.release()  # its answer goes to a dead connection: the server never saw it
        second = start_server(url, tmp_path / "second.log", **FAST)
        try:
            receiver.wait_for(lambda got: len([r for r in got if r.type == "run.succeeded"])
                              == 2)
            with httpx.Client(base_url=second.url, timeout=60) as api:
                [delivery] = log(api, webhook_id, event_type="run.succeeded")
                assert delivery["status"] == "succeeded"
        finally:
            second.stop()
    finally:
        receiver.stop()
    ends = receiver.of("run.succeeded")
    assert ends[0].id == ends[1].id and ends[0].body == ends[1].body
    assert ends[1].body["data"]["id"] == run["id"]
    assert [r.type for r in receiver.received] == [
        "run.created", "run.started", "run.succeeded", "run.succeeded"]
    assert receiver.unsigned == 0


def test_a_name_that_resolves_to_loopback_at_delivery_is_refused_there(tmp_path: Path) -> None:
    """The hosts file stands in for DNS: the name points at a public address when the endpoint
    is made, then at 127.0.0.1 (where a receiver listens) when an event is delivered."""
    hosts = tmp_path / "hosts"
    hosts.write_text("93.184.216.34 hooks.test\n127.0.0.1 sneaky.test\n")
    server = start_server(sqlite_url(tmp_path), tmp_path / "server.log",
                          TAPELINE_WEBHOOK_HOSTS_FILE=str(hosts),
                          TAPELINE_WEBHOOK_RETRY_SCALE="0.002")
    receiver = Receiver().start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as api:
            refused = api.post("/v1/webhooks", json={
                "url": f"http://sneaky.test:{receiver.port}/hook", "events": ["*"]})
            assert refused.status_code == 422
            assert "sneaky.test (127.0.0.1) is a loopback address" in refused.json()["detail"]
            made = api.post("/v1/webhooks", json={
                "url": f"http://hooks.test:{receiver.port}/hook", "events": ["model.created"]})
            assert made.status_code == 201
            hosts.write_text("127.0.0.1 hooks.test\n")  # DNS changed
            api.post("/v1/models")
            attempts = until(lambda: [a for d in log(api, made.json()["id"])
                                      for a in d["attempts"]])
            assert attempts[0]["outcome"] == "refused"
            assert "hooks.test (127.0.0.1) is a loopback address" in attempts[0]["error"]
            assert metric(api, 'tapeline_webhook_deliveries_total{outcome="refused"}') >= 1
    finally:
        receiver.stop()
        server.stop()
    assert receiver.received == []


ADMIN = "tl_" + "H" * 43


def test_another_tenants_events_never_reach_an_endpoint(tmp_path: Path) -> None:
    server = start_server(sqlite_url(tmp_path), tmp_path / "server.log", TAPELINE_AUTH="required",
                          TAPELINE_BOOTSTRAP_ADMIN_KEY=ADMIN, **FAST)
    receiver = Receiver().start()
    try:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        with httpx.Client(base_url=server.url, timeout=60, headers=admin) as api:
            key = {t: api.post("/v1/keys", json={"tenant": t}).json()["key"] for t in "ab"}
        a = httpx.Client(base_url=server.url, timeout=60,
                         headers={"Authorization": f"Bearer {key['a']}"})
        b = httpx.Client(base_url=server.url, timeout=60,
                         headers={"Authorization": f"Bearer {key['b']}"})
        with a, b:
            webhook_id = hook(a, receiver, ["*"])
            others = train(b)
            ours = train(a)
            receiver.wait_for(of_run(ours["id"]))
            logged = {d["event_type"] for d in log(a, webhook_id)}
    finally:
        receiver.stop()
        server.stop()
    assert logged == {"dataset.created", "model.created", "run.created", "run.started",
                      "run.succeeded"}
    seen = {r.body["data"]["id"] for r in receiver.received}
    assert ours["id"] in seen and others["id"] not in seen
    assert others["model_id"] not in seen and others["dataset_id"] not in seen
    assert receiver.unsigned == 0


def tapeline(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    """``tapeline ARGS`` against the server, its output as text (wide: no wrapped tables)."""
    env = {**os.environ, "TAPELINE_URL": server.url, "COLUMNS": "200", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_the_terminal_lists_creates_shows_deliveries_and_redelivers(
        server: LiveServer, api: httpx.Client, receiver: Receiver) -> None:
    made = tapeline(server, "webhooks", "create", receiver.url, "--events", "model.created",
                    "--description", "from the terminal")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("whsec_")
    receiver.secrets.append(secret)
    webhook_id = made.stdout.split()[1].rstrip(":")
    try:
        listed = tapeline(server, "webhooks", "list")
        assert webhook_id in listed.stdout and "model.created" in listed.stdout
        assert secret not in listed.stdout
        api.post("/v1/models")
        receiver.wait_for(lambda got: len(got) == 1)
        [delivery] = until(lambda: log(api, webhook_id, status="succeeded"))
        shown = tapeline(server, "webhooks", "deliveries", webhook_id, "--status", "succeeded")
        assert delivery["id"] in shown.stdout and "model.created" in shown.stdout
        again = tapeline(server, "webhooks", "redeliver", webhook_id, delivery["id"])
        assert again.returncode == 0 and "pending" in again.stdout
        receiver.wait_for(lambda got: len(got) == 2)
        assert receiver.received[0].id == receiver.received[1].id
        refused = tapeline(server, "webhooks", "create", "ftp://nowhere", "--events", "*")
        assert refused.returncode == 2 and "http:// or https://" in refused.stderr
        unknown = tapeline(server, "webhooks", "deliveries", "wh_nope")
        assert unknown.returncode == 2 and "no webhook" in unknown.stderr
    finally:
        api.delete(f"/v1/webhooks/{webhook_id}")
