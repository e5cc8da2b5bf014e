"""deploy/compose.yaml: the queue topology (PostgreSQL, the migration, two API replicas behind
the proxy's one port, two workers) on the one image, with commands the CLI has and settings
the service reads; a health check on every service, resource limits, read-only root
filesystems (PostgreSQL, the proxy and Tapeline's services), secrets as files only, and no
database port published. (This checks the file; `make test-container` starts it with
podman-compose and drives the workflow through it.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.cli import main
from service.config import FILE_SETTINGS, Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SETTINGS = {f"TAPELINE_{name.upper()}" for name in Settings.model_fields}
FILE_VARIABLES = {f"TAPELINE_{name.upper()}_FILE" for name in FILE_SETTINGS}
SECRET_WORDS = ("PASSWORD", "KEY", "DATABASE_URL", "REDIS_URL", "SECRET")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"])


def defaults(value: str) -> str:
    """A compose value as it reads with none of its ``${VAR:-default}`` variables set."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def check_command(command: list[str]) -> None:
    assert command[0] == "tapeline"
    with pytest.raises(SystemExit) as exited:  # the CLI knows the command and its options
        main([*command[1:], "--help"])
    assert exited.value.code == 0


def test_compose_runs_postgres_two_replicas_and_two_workers(services: dict[str, Any]) -> None:
    tapeline = {name: s for name, s in services.items()
                if defaults(s.get("image", "")) == "tapeline:latest"}
    assert set(tapeline) == {"migrate", "api-1", "api-2", "worker"}  # one image for all
    for service in tapeline.values():
        check_command(service["command"])
        environment = service["environment"]
        assert set(environment) <= SETTINGS | FILE_VARIABLES, set(environment)
        assert environment["TAPELINE_EXECUTOR"] == "queue"
        assert environment["TAPELINE_DATABASE_URL_FILE"] == "/run/secrets/database_url"
        assert "database_url" in service["secrets"]
        # One secret key for all: keys' HMAC on both replicas, webhook secrets sealed by the
        # API and opened by the workers that deliver them (without it, webhooks answer 503).
        assert environment["TAPELINE_SECRET_KEY_FILE"] == "/run/secrets/secret_key"
        assert "secret_key" in service["secrets"]
    assert [tapeline[n]["command"][1] for n in ("api-1", "api-2")] == ["serve", "serve"]
    assert tapeline["worker"]["command"][1] == "worker"
    assert tapeline["worker"]["deploy"]["replicas"] == 2
    assert defaults(services["postgres"]["image"]).startswith("postgres:")
    assert [defaults(p) for p in services["proxy"]["ports"]] == ["8000:8000"]  # one port
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert re.search(r"server api-1:8000[ ;]", nginx) and re.search(r"server api-2:8000[ ;]", nginx)
    assert "proxy_connect_timeout" in nginx  # a stopped replica is skipped, not waited on
    assert "proxy_buffering off;" in nginx


def test_secrets_are_files_and_only_the_proxy_publishes_a_port(services: dict[str, Any]) -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    declared = compose["secrets"]
    assert set(declared) == {"database_url", "postgres_password", "bootstrap_admin_key",
                             "secret_key"}
    for secret in declared.values():
        assert set(secret) == {"file"}
        assert defaults(secret["file"]).startswith("./secrets/")
    for name, service in services.items():
        for variable, value in service.get("environment", {}).items():
            if any(word in variable for word in SECRET_WORDS):  # names a file, holds nothing
                assert variable.endswith("_FILE") and str(value).startswith("/run/secrets/"), (
                    name, variable)
        assert "env_file" not in service
        if name != "proxy":
            assert "ports" not in service, name  # PostgreSQL and the replicas stay inside
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == \
        "/run/secrets/postgres_password"
    admin = [n for n, s in services.items() if "bootstrap_admin_key" in s.get("secrets", [])]
    assert sorted(admin) == ["api-1", "api-2"]
    ignored = (DEPLOY.parent / ".gitignore").read_text().split()
    assert "deploy/secrets/" in ignored


def test_every_service_has_a_health_check_limits_and_a_read_only_root(
        services: dict[str, Any]) -> None:
    for name, service in services.items():
        test = service["healthcheck"]["test"]
        assert isinstance(test, str) and test.strip(), name  # a string: see compose.yaml
        limits = service["deploy"]["resources"]["limits"]
        assert set(limits) == {"cpus", "memory"}, name
        assert service["read_only"] is True, name
        assert service.get("tmpfs"), name  # the few paths it writes
    tapeline = [s for s in services.values() if defaults(s.get("image", "")) == "tapeline:latest"]
    for service in tapeline:
        assert service["cap_drop"] == ["ALL"]
        assert service["security_opt"] == ["no-new-privileges:true"]
    worker = services["worker"]
    assert "9100/healthz" in worker["healthcheck"]["test"]
    liveness = float(worker["environment"]["TAPELINE_WORKER_LIVENESS_SECONDS"])
    assert float(worker["stop_grace_period"].rstrip("s")) > liveness
    command = worker["command"]
    assert float(command[command.index("--concurrency") + 1]) == float(
        worker["deploy"]["resources"]["limits"]["cpus"])
