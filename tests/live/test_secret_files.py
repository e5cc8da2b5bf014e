"""Secrets as files (TAPELINE_*_FILE, as Kubernetes and compose mount them): a server given
nothing but the file variants of the database URL, the bootstrap admin key, the key-storing
secret and the Redis URL serves with all four and trains the tutorial; each file is read once,
at start, and wins over its plain variable (the image's default); one naming a missing or
empty file stops the start with one line."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from service.config import FILE_SETTINGS, SettingFileError, Settings
from tests.support.servers import ROOT, LiveServer, free_port

pytestmark = pytest.mark.live
ADMIN_KEY = "tl_" + "F" * 10 + secrets.token_urlsafe(32)


def secret_file(folder: Path, name: str, value: str) -> str:
    """A mounted secret: the value and a final newline, readable by its owner only."""
    path = folder / name
    path.write_text(value + "\n")
    path.chmod(0o400)
    return str(path)


def clean_environment() -> dict[str, str]:
    """This process's environment without any TAPELINE_ variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TAPELINE_")}


def serve(environment: dict[str, str], log: Path) -> LiveServer:
    """``tapeline serve`` on a free loopback port with exactly ``environment``."""
    port = free_port()
    env = {**environment, "TAPELINE_HOST": "127.0.0.1", "TAPELINE_PORT": str(port),
           "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], cwd=ROOT,
                               env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return LiveServer(url, process, log)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"the server did not become ready:\n{log.read_text()}")


@pytest.mark.postgres
@pytest.mark.redis
def test_a_server_with_only_the_file_variants_trains_the_tutorial(
        postgres_url: str, redis_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    folder.mkdir()
    files = {
        "TAPELINE_DATABASE_URL_FILE": secret_file(folder, "database-url", postgres_url),
        "TAPELINE_BOOTSTRAP_ADMIN_KEY_FILE": secret_file(folder, "admin-key", ADMIN_KEY),
        "TAPELINE_SECRET_KEY_FILE": secret_file(folder, "secret-key", secrets.token_hex(32)),
        "TAPELINE_REDIS_URL_FILE": secret_file(folder, "redis-url", redis_url),
        "TAPELINE_SECRET_KEY_PREVIOUS_FILE": secret_file(folder, "secret-key-previous",
                                                         secrets.token_hex(32)),
    }
    assert {name.removeprefix("TAPELINE_").removesuffix("_FILE").lower()
            for name in files} == set(FILE_SETTINGS)
    limiter = redis.Redis.from_url(redis_url)

    def counts() -> dict[bytes, int]:
        """The rate limiter's counters in that Redis (an hour's window: they outlive the test)."""
        return {key: int(limiter.get(key) or 0) for key in limiter.keys("LIMITS*")}

    before = counts()
    server = serve({**clean_environment(), **files, "TAPELINE_WORKERS": "1",
                    "TAPELINE_TENANT_RATE_LIMIT": "100000/hour"}, tmp_path / "server.log")
    try:
        for name in ("database-url", "admin-key", "secret-key", "redis-url"):
            (folder / name).chmod(0o600)
            (folder / name).write_text("changed after start: never read again\n")
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as api:
            assert api.get("/v1/me").json()["tenant"] == "admin"  # the key from its file
            assert httpx.get(f"{server.url}/v1/models").status_code == 401  # keys required
            dataset = api.post("/v1/datasets/synthetic", json={}).json()
            model = api.post("/v1/models", json={}).json()
            run = api.post(f"/v1/models/{model['id']}/runs", json={"dataset_id": dataset["id"]},
                           headers={"Prefer": "wait=60"}).json()
            assert run["status"] == "succeeded", run
            history = api.get(f"/v1/runs/{run['id']}/history").json()["items"]
        assert [row["epoch"] for row in history] == list(range(10))
        losses = [row["loss"] for row in history]
        assert losses == sorted(losses, reverse=True)  # the tutorial's loss goes down
        assert history[0]["params"] == {"W": [5.0], "b": 0.0}
        assert abs(run["final"]["params"]["W"][0] - 3.0) < 0.5
        assert abs(run["final"]["params"]["b"] - 2.0) < 0.5
    finally:
        assert server.stop() == 0
    # The database of the file's URL holds the run; the stored key is an HMAC, not the key;
    # the rate limiter counted in the Redis of the file's URL.
    plain, _, options = postgres_url.replace("postgresql+psycopg://", "postgresql://") \
        .partition("?")
    with psycopg.connect(f"{plain}?{options}") as connection:
        assert connection.execute("SELECT status FROM runs WHERE id = %s",
                                  (run["id"],)).fetchone() == ("succeeded",)
        stored = connection.execute("SELECT * FROM api_keys").fetchall()
    assert stored and ADMIN_KEY not in repr(stored)
    after = counts()
    assert any(count > before.get(key, 0) for key, count in after.items()), (before, after)


def test_a_file_variant_is_read_once_and_stripped(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = secret_file(tmp_path, "url", "  postgresql+psycopg://u@h/db  ")
    monkeypatch.setenv("TAPELINE_DATABASE_URL_FILE", path)
    monkeypatch.delenv("TAPELINE_DATABASE_URL", raising=False)
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert Settings(database_url="sqlite:///x.db").database_url == "sqlite:///x.db"  # argument
    # The file wins over the plain variable, which the container image sets as its default.
    monkeypatch.setenv("TAPELINE_DATABASE_URL", "sqlite:////data/tapeline.db")
    assert Settings().database_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize("case", ["missing file", "empty file"])
def test_a_bad_file_variant_stops_the_start_with_one_line(
        tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    environment = clean_environment()
    if case == "missing file":
        environment["TAPELINE_DATABASE_URL_FILE"] = str(tmp_path / "nowhere")
        expected = f"TAPELINE_DATABASE_URL_FILE: cannot read {tmp_path / 'nowhere'}"
    else:
        environment["TAPELINE_REDIS_URL_FILE"] = secret_file(tmp_path, "empty", "")
        expected = f"TAPELINE_REDIS_URL_FILE: {tmp_path / 'empty'} is empty"
    for command in ("serve", "worker", "migrate"):
        result = subprocess.run([sys.executable, "-m", "service.cli", command], cwd=tmp_path,
                                env={**environment, "PYTHONPATH": str(ROOT)},
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 3, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (command, result.stderr)
    for name in [n for n in os.environ if n.startswith("TAPELINE_")]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        if name.startswith("TAPELINE_"):
            monkeypatch.setenv(name, value)
    with pytest.raises(SettingFileError, match=expected.split(":")[0]):
        Settings()
