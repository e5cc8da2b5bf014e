"""The hardening issue's table, row by row, against real servers: a zip bomb, a 64 MiB CSV and a
large JSON body while /healthz is sampled, a thousand stalled bodies, a server killed with
SIGKILL mid-run, errors that must say what but never how, and the exact queue limit under
concurrent requests. Each failed before the service was hardened."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.live.test_operations import children, start_slow, wait_for
from tests.support.clients import (
    HealthSampler,
    big_csv,
    idle_p99_ms,
    in_process,
    post_file,
    post_json,
    raise_open_files,
    sse_crowd,
    stalled_bodies,
)
from tests.support.hostile import zeros_bomb
from tests.support.servers import LiveServer, PeakMemory, sqlite_url, start_server

pytestmark = pytest.mark.serial

MiB = 1 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("hardening")
    live = start_server(sqlite_url(folder), folder / "server.log", TAPELINE_LOG_LEVEL="warning")
    yield live
    live.stop()


def test_a_zip_bomb_costs_neither_time_nor_memory(server: LiveServer, tmp_path: Path) -> None:
    bomb = zeros_bomb(tmp_path / "bomb.npz").read_bytes()  # 2 MB, x.npy inflates to 2 GiB
    with PeakMemory(server.process.pid) as peak:
        start = time.monotonic()
        answer = httpx.post(f"{server.url}/v1/datasets/upload", timeout=60,
                            files={"file": ("bomb.npz", bomb)})
        took = time.monotonic() - start
    assert answer.status_code == 422 and "declares 2147483776 bytes" in answer.json()["detail"]
    assert took < 2, took  # was 11.3 s, every request frozen
    assert peak.growth < 40 * MiB, peak.growth / MiB  # was 1.9 GB


@pytest.mark.slow
def test_a_64_mib_csv_uploads_off_the_event_loop(server: LiveServer, tmp_path: Path) -> None:
    (tmp_path / "big.csv").write_bytes(big_csv())
    idle = idle_p99_ms(server.url)
    with HealthSampler(server.url) as busy, PeakMemory(server.process.pid) as peak:
        # Uploaded from another process, so the client's own work does not skew the samples.
        status, dataset = in_process(post_file, f"{server.url}/v1/datasets/upload",
                                     str(tmp_path / "big.csv"), "big.csv", "text/csv").result()
    assert status == 201, dataset
    assert (dataset["num_examples"], dataset["features"]) == (1_590_000, 3)
    final = dataset["num_examples"] * (dataset["features"] + 1) * 8  # 51 MB of float64
    # Was: 9.9 s frozen, 1.12 GB (17x the file). The upload adds under 100 ms to the p99 the
    # machine shows idle (about 1 ms when nothing else runs). The arrays are written into
    # SQLite in place (service/store/blobs.py), so the peak is the file as received (1.26x
    # the final size) and the parsed arrays; binding them as bytes made it 4.1x.
    assert busy.p99_ms() < 100 + idle, (busy.p99_ms(), idle)
    assert busy.failures == 0 and len(busy.latencies) > 20
    assert peak.growth < 3.3 * final, peak.growth / final


def test_a_large_json_body_is_decoded_off_the_event_loop(server: LiveServer,
                                                         tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    body = json.dumps({"x": rng.normal(size=(750_000, 1)).tolist(),
                       "y": rng.normal(size=750_000).tolist()}).encode()
    assert len(body) > 30 * MiB
    (tmp_path / "big.json").write_bytes(body)
    idle = idle_p99_ms(server.url)
    with HealthSampler(server.url) as busy:
        status, dataset = in_process(post_json, f"{server.url}/v1/datasets",
                                     str(tmp_path / "big.json")).result()
    assert status == 201 and dataset["num_examples"] == 750_000, dataset
    assert busy.p99_ms() < 100 + idle and busy.failures == 0, (busy.p99_ms(), idle)  # was 1.75 s


def socket_count(pid: int) -> int:
    """Open sockets of a process."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            count += os.readlink(fd).startswith("socket:")
    return count


@pytest.mark.slow
def test_a_thousand_stalled_bodies_get_408_and_the_service_answers_meanwhile(
        tmp_path: Path) -> None:
    # The open-file limit a server often starts with: it raises it to its hard limit.
    server = start_server(sqlite_url(tmp_path), tmp_path / "server.log", open_files=1024,
                          TAPELINE_BODY_TIMEOUT_SECONDS="6", TAPELINE_LOG_LEVEL="warning")
    try:
        raise_open_files()
        crowd = in_process(stalled_bodies, server.url, "/v1/datasets", 1000, 30.0)
        deadline = time.monotonic() + 20
        while socket_count(server.process.pid) < 1000:
            assert time.monotonic() < deadline and not crowd.done(), "the crowd did not connect"
            time.sleep(0.05)
        limits = {line[:26].strip(): line[26:].split()[:2] for line in
                  Path(f"/proc/{server.process.pid}/limits").read_text().splitlines()[1:]}
        with httpx.Client(base_url=server.url, timeout=5) as api:
            statuses = [api.get("/healthz").status_code for _ in range(15)]
            created = api.post("/v1/datasets", json={"x": [1, 2], "y": [3, 4]}).status_code
        answers = crowd.result(timeout=60)
    finally:
        server.stop()
    assert statuses == [200] * 15 and created == 201  # was: /healthz failed 15 of 15
    assert limits["Max open files"][0] == limits["Max open files"][1]  # raised to the hard one
    assert len(answers) == 1000
    refused = [a for a in answers if a.startswith(b"HTTP/1.1 408 ")]
    assert len(refused) == 1000, answers[:3]
    assert all(b"application/problem+json" in a and b"connection: close" in a.lower()
               for a in refused)


def test_requests_beyond_the_connection_cap_get_503(tmp_path: Path) -> None:
    server = start_server(sqlite_url(tmp_path), tmp_path / "server.log",
                          TAPELINE_MAX_CONNECTIONS="4", TAPELINE_LOG_LEVEL="warning")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as api:
            run_id, _ = start_slow(api, epochs=1000)
            streams = [httpx.Client(base_url=server.url, timeout=60) for _ in range(4)]
            opened = [client.stream("GET", f"/v1/runs/{run_id}/events") for client in streams]
            for stream in opened:
                assert stream.__enter__().status_code == 200
            over = api.get("/healthz")
            assert over.status_code == 503 and over.headers["retry-after"] == "1"
            assert over.headers["content-type"] == "application/problem+json"
            assert "limit of 4 requests" in over.json()["detail"]
            for stream, client in zip(opened, streams, strict=True):
                stream.__exit__(None, None, None)
                client.close()
            deadline = time.monotonic() + 10
            while api.get("/healthz").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            api.post(f"/v1/runs/{run_id}/cancel")
    finally:
        server.stop()


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stored(database: Path, run_id: str) -> tuple[str, int]:
    """A run's status and stored epochs, read straight from the SQLite file."""
    with sqlite3.connect(database) as db:
        status = db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
        epochs = db.execute("SELECT count(*) FROM epochs WHERE run_id = ?", (run_id,))
        return str(status), int(epochs.fetchone()[0])


@pytest.mark.parametrize("policy", ["fail", "requeue"])
def test_a_server_killed_with_sigkill_leaves_no_worker_behind(tmp_path: Path,
                                                              policy: str) -> None:
    url, database = sqlite_url(tmp_path), tmp_path / "tapeline.db"
    env = {"TAPELINE_ON_INTERRUPTED": policy, "TAPELINE_WORKERS": "1",
           "TAPELINE_LOG_LEVEL": "warning"}
    first = start_server(url, tmp_path / "first.log", **env)
    with httpx.Client(base_url=first.url, timeout=60) as api:
        run_id, _ = start_slow(api, epochs=4)
        wait_for(api, run_id, lambda r: r["epochs_completed"] >= 1)
    workers = children(first.process.pid)
    assert workers
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait()
    time.sleep(2)
    assert [pid for pid in workers if alive(pid)] == []  # the orphan trained on
    at_kill = stored(database, run_id)
    time.sleep(1)
    assert stored(database, run_id) == at_kill and at_kill[0] == "running"  # nothing written
    second = start_server(url, tmp_path / "second.log", **env)
    try:
        with httpx.Client(base_url=second.url, timeout=60) as api:
            if policy == "fail":
                run = api.get(f"/v1/runs/{run_id}").json()
                assert (run["status"], run["error"]["reason"]) == ("failed", "interrupted")
                assert run["epochs_completed"] == at_kill[1]
            else:  # trained once, to the end, by one process
                run = wait_for(api, run_id, lambda r: r["status"] != "running"
                               and r["status"] != "queued")
                assert run["status"] == "succeeded" and run["epochs_completed"] == 4
                history = api.get(f"/v1/runs/{run_id}/history").json()["items"]
                assert [row["epoch"] for row in history] == [0, 1, 2, 3]
    finally:
        second.stop()


LEAKS = ("0x", "Traceback", "SQL", "sqlite3", "BytesIO", "Error:", "[parameters", "File \"")


def test_errors_say_what_never_how(tmp_path: Path) -> None:
    database = tmp_path / "tapeline.db"
    server = start_server(sqlite_url(tmp_path), tmp_path / "server.log")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as api:
            dataset = api.post("/v1/datasets/synthetic", json={"seed": 3}).json()["id"]
            with sqlite3.connect(database) as db:  # the store refuses history: a SQL error
                db.execute("CREATE TRIGGER refuse BEFORE INSERT ON epochs "
                           "BEGIN SELECT RAISE(ABORT, 'disk quota exceeded'); END")
            model = api.post("/v1/models").json()["id"]
            run = api.post(f"/v1/models/{model}/runs", headers={"prefer": "wait=30"},
                           json={"dataset_id": dataset}).json()
            assert run["status"] == "failed" and run["error"]["reason"] == "error"
            detail = run["error"]["detail"]  # was the SQL statement, its parameters, ...
            assert not [leak for leak in LEAKS if leak in detail], detail
            reference = detail.rsplit("ref ", 1)[1].rstrip(")")

            with sqlite3.connect(database) as db:  # a stored array that no longer reads
                db.execute("DROP TRIGGER refuse")
                db.execute("UPDATE datasets SET x = X'00' WHERE id = ?", (dataset,))
            answer = api.get(f"/v1/datasets/{dataset}/data", headers={"x-request-id": "req-42"})
            assert answer.status_code == 500
            assert answer.headers["content-type"] == "application/problem+json"
            assert "req-42" in answer.json()["detail"]  # the one thing to quote
            assert not [leak for leak in LEAKS if leak in answer.text], answer.text
            # A run of it kills its worker while starting: it ends failed, not stuck queued.
            second = api.post(f"/v1/models/{model}/runs", json={"dataset_id": dataset}).json()
            ended = wait_for(api, second["id"], lambda r: r["status"] == "failed", timeout=30)
            assert ended["error"]["reason"] == "worker_crashed"
    finally:
        server.stop()
    entries = [json.loads(line) for line in (tmp_path / "server.log").read_text().splitlines()
               if line.startswith("{")]
    [failed_run] = [e for e in entries if e.get("reference") == reference]
    assert "disk quota exceeded" in failed_run["exception"] and failed_run["level"] == "error"
    [failed_request] = [e for e in entries if e.get("request_id") == "req-42"
                        and "exception" in e]
    assert "Traceback" in failed_request["exception"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    return str(request.getfixturevalue("postgres_url"))


def test_the_queue_limit_holds_under_concurrent_requests(database_url: str,
                                                         tmp_path: Path) -> None:
    server = start_server(database_url, tmp_path / "server.log", TAPELINE_WORKERS="1",
                          TAPELINE_MAX_QUEUED_RUNS="5", TAPELINE_LOG_LEVEL="warning")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as api:
            busy, _ = start_slow(api, epochs=1000)  # keeps the one worker busy
            wait_for(api, busy, lambda r: r["status"] == "running")
            dataset = api.post("/v1/datasets", json={"x": [1, 2], "y": [3, 4]}).json()["id"]
            models = [api.post("/v1/models").json()["id"] for _ in range(20)]
            barrier = threading.Barrier(20)
            statuses: list[int] = []

            def ask(model: str) -> None:
                with httpx.Client(base_url=server.url, timeout=60) as client:
                    barrier.wait()
                    answer = client.post(f"/v1/models/{model}/runs",
                                         json={"dataset_id": dataset})
                    statuses.append(answer.status_code)

            threads = [threading.Thread(target=ask, args=(m,)) for m in models]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sorted(statuses) == [202] * 5 + [429] * 15  # was: 1,001 with a limit of 1,000
            queued = [r for m in models for r in api.get(f"/v1/models/{m}/runs").json()["items"]
                      if r["status"] == "queued"]
            assert len(queued) == 5
            api.post(f"/v1/runs/{busy}/cancel")
    finally:
        server.stop()


def seconds(timestamp: str) -> float:
    """An RFC 3339 timestamp as POSIX seconds."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used (user and system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.slow
def test_a_crowd_of_readers_is_cheap(tmp_path: Path) -> None:
    """500 SSE readers of one run: every epoch in order, the last reader within 1 s of the
    run's end, /healthz under 100 ms over the machine's own idle p99 while they follow it,
    and the service's work for them (their arrival, a burst of 500 requests, plus 16 epochs
    fanned out to each, plus the /healthz sampling) under a quarter of one core over a run
    of the issue's shape (epochs of ~0.7 s compiled, ~10 s in all, so the burst does not
    dominate), so the run trains at its usual pace (wall-clock ratios are too noisy on a
    shared machine to test; bench/service.py measures them). Fanning an epoch out costs
    ~0.1 ms of server CPU per reader. Was: the run 17 s -> 45 s, the last reader 90 s late,
    /healthz p50 259-461 ms."""
    server = start_server(sqlite_url(tmp_path), tmp_path / "server.log", TAPELINE_WORKERS="1",
                          TAPELINE_LOG_LEVEL="warning")
    raise_open_files()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as api:
            # 250,000 rows: ~10 s of training at this engine's speed (100,000 rows took
            # ~10 s when the test was written and 2.6-5 s since the engine got faster, which
            # left the readers' fixed cost a larger share of a shorter run).
            dataset = api.post("/v1/datasets/synthetic", json={"num_examples": 250_000,
                                                                "seed": 1}).json()["id"]
            idle = idle_p99_ms(server.url)
            model = api.post("/v1/models").json()["id"]
            run = api.post(f"/v1/models/{model}/runs", json={
                "dataset_id": dataset, "epochs": 16, "batch_size": 8}).json()["id"]
            used = cpu_seconds(server.process.pid)
            crowd = in_process(sse_crowd, server.url, f"/v1/runs/{run}/events", 500)
            with HealthSampler(server.url) as health:
                readings = crowd.result(timeout=300)
            used = cpu_seconds(server.process.pid) - used
            ended = api.get(f"/v1/runs/{run}").json()
    finally:
        server.stop()
    assert ended["status"] == "succeeded"
    assert [r.error for r in readings if r.error] == []
    assert all(r.epochs == list(range(16)) for r in readings)
    finished = seconds(ended["finished_at"])
    lag = max(r.ended_at or math.inf for r in readings) - finished
    assert lag < 1.0, lag
    took = finished - seconds(ended["started_at"])
    assert used < 0.25 * took, (used, took)
    # While the readers follow the run (their arrival, all at once, is a burst of requests).
    following = health.p99_ms(max(r.connected_at or math.inf for r in readings), finished)
    assert following < 100 + idle and health.failures == 0, (following, idle, health.p99_ms())
