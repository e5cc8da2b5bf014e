"""deploy/: the compose file and the Kubernetes manifests describe the queue topology with the
one image, commands the CLI has, and settings the service reads. (This checks the files'
structure; `make test-container` starts the compose stack with podman-compose and drives the
workflow through it.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.cli import main
from service.config import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SETTINGS = {f"TAPELINE_{name.upper()}" for name in Settings.model_fields}


def check_command(command: list[str]) -> None:
    assert command[0] == "tapeline"
    with pytest.raises(SystemExit) as exited:  # the CLI knows the command and its options
        main([*command[1:], "--help"])
    assert exited.value.code == 0


def defaults(value: str) -> str:
    """A compose value as it reads with none of its ``${VAR:-default}`` variables set."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def check_env(names: Any) -> None:
    unknown = {name for name in names if name.startswith("TAPELINE_")} - SETTINGS
    assert not unknown, unknown


def test_compose_runs_postgres_two_replicas_and_two_workers() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    tapeline = {name: s for name, s in services.items()
                if defaults(s.get("image", "")) == "tapeline:latest"}
    assert set(tapeline) == {"migrate", "api-1", "api-2", "worker"}  # one image for all
    for service in tapeline.values():
        check_command(service["command"])
        check_env(service["environment"])
        assert service["environment"]["TAPELINE_EXECUTOR"] == "queue"
        assert "postgres:5432" in service["environment"]["TAPELINE_DATABASE_URL"]
    assert [tapeline[n]["command"][1] for n in ("api-1", "api-2")] == ["serve", "serve"]
    assert tapeline["worker"]["command"][1] == "worker"
    assert tapeline["worker"]["deploy"]["replicas"] == 2
    assert defaults(services["postgres"]["image"]).startswith("postgres:")
    assert [defaults(p) for p in services["proxy"]["ports"]] == ["8000:8000"]  # one port
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert re.search(r"server api-1:8000[ ;]", nginx) and re.search(r"server api-2:8000[ ;]", nginx)
    assert "proxy_connect_timeout" in nginx  # a stopped replica is skipped, not waited on
    assert "proxy_buffering off;" in nginx


def test_kubernetes_has_api_worker_service_and_migration() -> None:
    documents = [d for path in sorted((DEPLOY / "kubernetes").glob("*.yaml"))
                 for d in yaml.safe_load_all(path.read_text()) if d]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in documents}
    assert {("Deployment", "tapeline-api"), ("Deployment", "tapeline-worker"),
            ("Service", "tapeline"), ("Job", "tapeline-migrate"),
            ("ConfigMap", "tapeline")} <= kinds
    config = next(d for d in documents if d["kind"] == "ConfigMap")
    check_env(config["data"])
    assert config["data"]["TAPELINE_EXECUTOR"] == "queue"
    for document in documents:
        spec = document.get("spec", {})
        pod = spec.get("template", {}).get("spec")
        if pod is None:
            continue
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            assert container["image"] == "tapeline:latest"
            check_command(container["command"])
            check_env(e["name"] for e in container.get("env", []))
    api = next(d for d in documents if d["metadata"]["name"] == "tapeline-api")
    probe = api["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["httpGet"]["path"] == "/readyz"
