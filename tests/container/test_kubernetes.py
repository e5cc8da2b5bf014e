"""deploy/kubernetes/: every overlay, rendered by ``kubectl kustomize``, passes
kubernetes-validate (strict) and checkov with no failed check, skipping only the checks that
docs/kubernetes.md lists; the KEDA manifests match KEDA's schema kept in deploy/; and every pod
keeps the secure defaults (non-root with the image's UID, read-only root, no privilege
escalation or capabilities, seccomp, no service-account token, requests and limits, the image
pinned, secrets as files), probes that mean something and network policies that deny by default.

The tools (checkov, kubernetes-validate, kubectl as a wheel) live in a virtual environment of
their own, ``.venv-checkov``, which ``make test`` makes first; without it these tests skip,
except in CI, where they fail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.cli import main
from service.config import FILE_SETTINGS, Settings

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUBERNETES / "overlays").iterdir() if p.is_dir())
TOOLS = ROOT / ".venv-checkov" / "bin"
KUBERNETES_VERSION = "1.37.0"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
IMAGE_UID = 10001  # the Dockerfile's `USER 10001:10001`
SETTINGS = {f"TAPELINE_{name.upper()}" for name in Settings.model_fields}
FILE_VARIABLES = {f"TAPELINE_{name.upper()}_FILE" for name in FILE_SETTINGS}
PRIVATE = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8",
           "fc00::/7", "fe80::/10", "::1/128"}

pytestmark = pytest.mark.slow


def tool(name: str) -> str:
    """A tool of ``.venv-checkov``; skips (fails in CI) when it is not installed."""
    path = TOOLS / name
    if not path.exists():
        message = f"{path} is missing: run `make .venv-checkov/.installed`"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return str(path)


def run(*command: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    path = f"{TOOLS}{os.pathsep}{os.environ.get('PATH', '')}"  # checkov's kustomize: ours
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "LOG_LEVEL": "WARNING", "PATH": path})


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each overlay rendered by ``kubectl kustomize`` into a file."""
    kubectl = tool("kubectl")
    folder = tmp_path_factory.mktemp("rendered")
    files = {}
    for overlay in OVERLAYS:
        result = run(kubectl, "kustomize", str(KUBERNETES / "overlays" / overlay))
        assert result.returncode == 0, result.stderr
        files[overlay] = folder / f"{overlay}.yaml"
        files[overlay].write_text(result.stdout)
    return files


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def pods(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod spec) of every Deployment and Job."""
    return [(d, d["spec"]["template"]["spec"]) for d in docs if d["kind"] in ("Deployment", "Job")]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def documented_skips() -> set[tuple[str, str]]:
    """(check, overlay) of the table of skips in docs/kubernetes.md."""
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    return {(check, overlay) for check, overlay in
            re.findall(r"^\| `(CKV2?_[A-Z0-9_]+)` \| `?([\w-]+)`? \|", text, re.MULTILINE)}


def test_the_overlays_are_dev_production_and_production_with_keda() -> None:
    assert OVERLAYS == ["dev", "production", "production-keda"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_an_overlay_passes_kubernetes_validate_strict(rendered: dict[str, Path],
                                                      overlay: str) -> None:
    result = run(tool("kubernetes-validate"), "--strict", "--kubernetes-version",
                 KUBERNETES_VERSION, str(rendered[overlay]))
    assert result.returncode == 0, result.stdout + result.stderr
    passed = re.findall(r"^INFO .* passed for resource (\S+)", result.stdout, re.MULTILINE)
    assert len(passed) >= 19, result.stdout
    # Only KEDA's kinds are unknown to it: test_the_keda_manifests_match_kedas_schema checks them.
    unknown = re.findall(r"^WARN .*Couldn't find schema for kind (\w+) with api version (\S+)",
                         result.stdout, re.MULTILINE)
    assert {api for _, api in unknown} <= {"keda.sh/v1alpha1"}, result.stdout
    assert "ERROR" not in result.stdout


def checkov(*args: str) -> dict[str, Any]:
    """checkov's JSON report (one framework); offline (--skip-download)."""
    result = run(tool("checkov"), *args, "--skip-download", "--output", "json")
    assert result.returncode in (0, 1), result.stderr[-3000:]
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    assert len(reports) == 1, [r.get("check_type") for r in reports]
    return dict(reports[0])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_an_overlay_passes_checkov_skipping_only_what_the_docs_list(
        rendered: dict[str, Path], overlay: str) -> None:
    report = checkov("--file", str(rendered[overlay]), "--framework", "kubernetes")
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == [], failed
    assert report["summary"]["passed"] >= 250, report["summary"]
    assert report["summary"]["parsing_errors"] == 0
    skipped = {(c["check_id"], overlay) for c in report["results"]["skipped_checks"]}
    assert skipped <= documented_skips(), skipped - documented_skips()
    # Each skip is an annotation with its reason (comments do not survive kustomize).
    for workload in documents(rendered[overlay]):
        for key, value in workload["metadata"].get("annotations", {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                assert (check, overlay) in documented_skips() and len(reason) > 20, value


def test_every_documented_skip_is_taken(rendered: dict[str, Path]) -> None:
    taken = {(value.partition("=")[0], overlay) for overlay, path in rendered.items()
             for d in documents(path)
             for key, value in d["metadata"].get("annotations", {}).items()
             if key.startswith("checkov.io/skip")}
    assert taken == documented_skips()


def test_the_whole_deploy_folder_passes_checkov() -> None:
    """checkov on the folder as it is (every framework it finds: the raw manifests, each
    kustomization rendered by checkov itself, secrets in any file): nothing fails."""
    result = run(tool("checkov"), "--directory", str(ROOT / "deploy"), "--skip-download",
                 "--output", "json", "--quiet")
    assert result.returncode in (0, 1), result.stderr[-3000:]
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    found = {r["check_type"]: r for r in reports}
    assert {"kubernetes", "kustomize"} <= set(found), set(found)
    for check_type, found_report in found.items():
        failed = [(c["check_id"], c["file_path"])
                  for c in found_report["results"]["failed_checks"]]
        assert failed == [], (check_type, failed)


def test_the_dockerfile_passes_checkov() -> None:
    report = checkov("--file", str(ROOT / "Dockerfile"), "--framework", "dockerfile")
    assert report["results"]["failed_checks"] == [], report["results"]["failed_checks"]
    assert report["summary"]["skipped"] == 0 and report["summary"]["passed"] >= 70
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM \$\{BASE_IMAGE:-python:[\w.-]+@sha256:[0-9a-f]{64}\} AS base$",
                     text, re.MULTILINE)


KEDA_CHECK = """
import json, sys, yaml, jsonschema
schemas, rendered = sys.argv[1], sys.argv[2]
found = {}
for document in yaml.safe_load_all(open(rendered)):
    if document and document["apiVersion"].startswith("keda.sh/"):
        name = f"{schemas}/keda.sh-v1alpha1-{document['kind'].lower()}.json"
        schema = json.load(open(name))
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        errors = [e.message for e in validator.iter_errors(document)]
        broken = json.loads(json.dumps(document))
        broken["spec"]["unknownField"] = 1
        refused = [e.message for e in validator.iter_errors(broken)]
        found[document["kind"]] = {"errors": errors, "refused": refused}
print(json.dumps(found))
"""


def test_the_keda_manifests_match_kedas_schema(rendered: dict[str, Path]) -> None:
    result = run(tool("python"), "-c", KEDA_CHECK, str(KUBERNETES / "schemas"),
                 str(rendered["production-keda"]))
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert set(found) == {"ScaledObject", "TriggerAuthentication"}
    for kind, outcome in found.items():
        assert outcome["errors"] == [], (kind, outcome["errors"])
        assert outcome["refused"], kind  # the schema is strict: an unknown field is refused
    for overlay in ("dev", "production"):  # KEDA is optional: only its own overlay needs it
        assert not any(d["apiVersion"].startswith("keda.sh/")
                       for d in documents(rendered[overlay]))


def test_keda_scales_the_workers_on_two_postgresql_queries(rendered: dict[str, Path]) -> None:
    docs = documents(rendered["production-keda"])
    scaled = named(docs, "ScaledObject", "tapeline-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "tapeline-worker"
    assert [t["type"] for t in scaled["spec"]["triggers"]] == ["postgresql", "postgresql"]
    assert scaled["spec"]["advanced"]["scalingModifiers"]["formula"] == "queued + training"
    worker = named(docs, "Deployment", "tapeline-worker")
    assert "replicas" not in worker["spec"]  # KEDA's to set
    command = worker["spec"]["template"]["spec"]["containers"][0]["command"]
    concurrency = command[command.index("--concurrency") + 1]
    assert scaled["spec"]["advanced"]["scalingModifiers"]["target"] == concurrency


def check_command(command: list[str]) -> None:
    assert command[0] == "tapeline"
    with pytest.raises(SystemExit) as exited:  # the CLI knows the command and its options
        main([*command[1:], "--help"])
    assert exited.value.code == 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_keeps_the_secure_defaults(rendered: dict[str, Path], overlay: str) -> None:
    docs = documents(rendered[overlay])
    config = named(docs, "ConfigMap", "tapeline")["data"]
    assert set(config) <= SETTINGS and config["TAPELINE_EXECUTOR"] == "queue"
    workloads = pods(docs)
    assert sorted(w["metadata"]["name"] for w, _ in workloads) == [
        "tapeline-api", "tapeline-migrate", "tapeline-worker"]
    accounts = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ServiceAccount"}
    for workload, pod in workloads:
        assert workload["metadata"]["namespace"] == "tapeline"
        assert pod["automountServiceAccountToken"] is False
        assert accounts[pod["serviceAccountName"]]["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == IMAGE_UID
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        secret_files = {source["secret"]["name"] for volume in pod["volumes"]
                        for source in volume.get("projected", {}).get("sources", [])}
        secret_files |= {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        assert "tapeline-database" in secret_files
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["runAsNonRoot"] is True and context["runAsUser"] == IMAGE_UID
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            for kind in ("requests", "limits"):
                assert set(container["resources"][kind]) == {"cpu", "memory"}
            image = container["image"]
            if overlay == "dev":
                assert re.fullmatch(r"[\w./-]+/tapeline:[\w.-]+", image), image
            else:
                assert re.fullmatch(r"[\w./-]+/tapeline@sha256:[0-9a-f]{64}", image), image
            check_command(container["command"])
            env = {e["name"]: e for e in container.get("env", [])}
            assert set(env) <= SETTINGS | FILE_VARIABLES, set(env)
            assert all("valueFrom" not in e for e in env.values())  # secrets are files
            assert all("secretRef" not in source for source in container.get("envFrom", []))
            assert "TAPELINE_DATABASE_URL_FILE" in env
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            for variable in env:
                if variable.endswith("_FILE"):
                    folder = str(Path(env[variable]["value"]).parent)
                    assert mounts[folder]["readOnly"] is True, variable
            assert "/tmp" in mounts  # the one writable path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_grace_periods_mean_something(rendered: dict[str, Path],
                                                 overlay: str) -> None:
    docs = documents(rendered[overlay])
    settings = named(docs, "ConfigMap", "tapeline")["data"]
    api = named(docs, "Deployment", "tapeline-api")["spec"]["template"]["spec"]
    container = api["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert "preStop" in container["lifecycle"]
    worker = named(docs, "Deployment", "tapeline-worker")["spec"]["template"]["spec"]
    container = worker["containers"][0]
    port = next(p for p in container["ports"] if p["name"] == "metrics")["containerPort"]
    assert str(port) == settings["TAPELINE_WORKER_METRICS_PORT"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    # The drain hands runs back at the next epoch boundary; an epoch longer than the liveness
    # bound would fail the probe anyway, so the grace period covers that bound.
    assert worker["terminationGracePeriodSeconds"] > float(
        settings["TAPELINE_WORKER_LIVENESS_SECONDS"])
    assert not any(d["kind"] == "Service" and d["spec"]["selector"].get(
        "app.kubernetes.io/component") == "worker" for d in docs)
    budgets = {d["metadata"]["name"]: d["spec"] for d in docs
               if d["kind"] == "PodDisruptionBudget"}
    assert budgets == {name: {"maxUnavailable": 1, "selector": {"matchLabels": {
        "app.kubernetes.io/name": "tapeline", "app.kubernetes.io/component": role}}}
        for name, role in (("tapeline-api", "api"), ("tapeline-worker", "worker"))}
    hpa = named(docs, "HorizontalPodAutoscaler", "tapeline-api")["spec"]
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in named(docs, "Deployment", "tapeline-api")["spec"]  # the HPA's


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_by_default(rendered: dict[str, Path], overlay: str) -> None:
    docs = documents(rendered[overlay])
    policies = [d["spec"] for d in docs if d["kind"] == "NetworkPolicy"]
    assert {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]} in policies
    ingress = [p for p in policies if p.get("ingress")]
    # Only the API is reachable from anywhere; the workers' metrics from monitoring only.
    open_to_all = [p for p in ingress if any("from" not in rule for rule in p["ingress"])]
    assert [p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
            for p in open_to_all] == ["api"]
    egress_ports = {}
    for policy in policies:
        for rule in policy.get("egress", []):
            ports = tuple(sorted(p["port"] for p in rule["ports"]))
            egress_ports[ports] = (policy["podSelector"], rule.get("to"))
    assert set(egress_ports) == {(53, 53), (5432, 6379), (80, 443)}
    selector, targets = egress_ports[(80, 443)]
    assert selector["matchLabels"]["tapeline.dev/delivers-webhooks"] == "true"
    assert {t["ipBlock"]["cidr"] for t in targets} == {"0.0.0.0/0", "::/0"}
    assert {c for t in targets for c in t["ipBlock"]["except"]} >= PRIVATE
    # The workers deliver webhooks; an API replica delivers a test ping itself
    # (POST /v1/webhooks/{id}/test, service/api/routes/webhooks.py); the migration none.
    webhook_pods = {w["metadata"]["name"] for w, pod in pods(docs)
                    if w["spec"]["template"]["metadata"]["labels"].get(
                        "tapeline.dev/delivers-webhooks") == "true"}
    assert webhook_pods == {"tapeline-api", "tapeline-worker"}
    ingress_doc = named(docs, "Ingress", "tapeline")
    annotations = ingress_doc["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"  # SSE
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert ingress_doc["spec"]["tls"][0]["secretName"] == "tapeline-tls"
