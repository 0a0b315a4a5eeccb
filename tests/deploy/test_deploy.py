"""deploy/: the Prometheus rules and configs (promtool), the Kubernetes manifests
(against the Kubernetes JSON schemas), docker-compose and the Grafana dashboard
agree with each other and with the worker."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client import generate_latest

from scorer.collect.metrics import CollectMetrics
from scorer.config import Settings
from scorer.route.metrics import RouteMetrics
from scorer.route.rules import load_routes
from scorer.stream.metrics import Metrics
from scorer.stream.worker import SHUTDOWN_SECONDS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = sorted((DEPLOY / "k8s").glob("*.yaml"))
K8S_VERSION = kubernetes_validate.latest_version()
SETTINGS_ENV = {f"SCORER_{name.upper()}" for name in Settings.model_fields}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    if path is None:
        raise AssertionError("promtool not found: install Debian's prometheus package (make tools)")
    return subprocess.run(
        [path, *args], cwd=DEPLOY / "prometheus", capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "args",
    [
        ("check", "rules", "alerts.yml"),
        ("test", "rules", "alerts_test.yml"),
        ("check", "config", "prometheus.yml"),
        ("check", "config", "compose.yml"),
    ],
)
def test_promtool(args: tuple[str, ...]) -> None:
    result = promtool(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rule_tests_can_fail(tmp_path: Path) -> None:
    """A wrong expectation makes `promtool test rules` fail: the tests bite."""
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_path)
    text = (DEPLOY / "prometheus" / "alerts_test.yml").read_text()
    (tmp_path / "t.yml").write_text(text.replace("12500 records", "999 records"))
    result = subprocess.run(
        [shutil.which("promtool") or "promtool", "test", "rules", "t.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    """(name, document): the file's name, or file:kind for a file of several documents."""
    out = []
    for path in K8S:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        if path.name == "kustomization.yaml":
            continue
        for doc in docs:
            out.append((path.name if len(docs) == 1 else f"{path.name}:{doc['kind']}", doc))
    return out


@pytest.mark.parametrize("name,doc", k8s_documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_kubernetes_manifests_are_valid(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_kubernetes_validator_rejects_a_typo() -> None:
    statefulset = dict(k8s_documents())["statefulset.yaml"]
    broken = copy.deepcopy(statefulset)
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kubernetes_manifests_match_the_worker() -> None:
    docs = dict(k8s_documents())
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted({name.split(":")[0] for name in docs})
    pod = docs["statefulset.yaml"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["terminationGracePeriodSeconds"] > SHUTDOWN_SECONDS
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["ports"][0]["containerPort"] == Settings().web_port
    assert {"requests", "limits"} <= container["resources"].keys()
    assert set(docs["configmap.yaml"]["data"]) <= SETTINGS_ENV
    assert (
        docs["configmap.yaml"]["data"]["SCORER_DATA_DIR"]
        == container["volumeMounts"][0]["mountPath"]
    )
    assert docs["pdb.yaml"]["spec"]["selector"] == docs["statefulset.yaml"]["spec"]["selector"]


def test_docker_compose_file() -> None:
    """The services, the files they mount, and the scorer's settings exist. `docker
    compose config` also checks it where the compose plugin is installed (it is not
    on the machines this project is tested on: see README)."""
    compose_path = DEPLOY / "docker-compose.yml"
    compose = yaml.safe_load(compose_path.read_text())
    services = compose["services"]
    assert {"kafka", "scorer", "prometheus", "grafana"} <= services.keys()
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), volume
    assert set(services["scorer"]["environment"]) <= SETTINGS_ENV
    assert set(services["router"]["environment"]) <= SETTINGS_ENV
    assert load_routes(DEPLOY / "router-routes.yaml").destinations
    assert (ROOT / services["scorer"]["build"]["dockerfile"]).exists()
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "compose.yml").read_text())
    target = scrape["scrape_configs"][0]["static_configs"][0]["targets"][0]
    assert target == f"scorer:{Settings().web_port}"
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        result = subprocess.run(
            [docker, "compose", "-f", str(compose_path), "config", "-q"], capture_output=True
        )
        assert result.returncode == 0, result.stderr


def test_dashboard_uses_only_exported_metrics() -> None:
    """Every metric a panel or rule queries is one the worker or the router exports (the
    panels' results are checked against live processes in tests/integration/
    test_operations.py and tests/route/test_router.py)."""
    registry = Metrics().registry
    RouteMetrics(registry, ["hook"])
    CollectMetrics(registry, ["web"])
    exported = set(re.findall(r"^# TYPE (\S+)", generate_latest(registry).decode(), re.M))
    exported |= {f"{n}_total" for n in exported} | {f"{n}_bucket" for n in exported}
    exported.add("scorer_consumer_lag")  # registered by the running app
    for name in ("icp-scorer.json", "icp-router.json", "icp-collect.json"):
        dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / name).read_text())
        used = {
            metric
            for panel in dashboard["panels"]
            for target in panel.get("targets", [])
            for metric in re.findall(r"\b(scorer_[a-z_]+)", target["expr"])
        }
        assert used and used <= exported, (name, used - exported)
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    in_rules = {
        name
        for group in rules["groups"]
        for rule in group["rules"]
        for name in re.findall(r"\b(scorer_[a-z_]+)", rule["expr"])
    }
    assert in_rules <= exported, in_rules - exported


def test_router_manifests_match_the_router(monkeypatch: pytest.MonkeyPatch) -> None:
    """The router Deployment probes /healthz and /readyz on SCORER_ROUTER_WEB_PORT, mounts
    the routes file it is given, and that file validates (secrets from the environment)."""
    from scorer.route.rules import parse_routes

    docs = dict(k8s_documents())
    pod = docs["router.yaml:Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["terminationGracePeriodSeconds"] > SHUTDOWN_SECONDS
    assert container["ports"][0]["containerPort"] == Settings().router_web_port
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    args = container["args"]
    mount = container["volumeMounts"][0]["mountPath"]
    assert args[:2] == ["route", "--routes"] and args[2] == f"{mount}/routes.yaml"
    monkeypatch.setenv("SLACK_BOT_TOKEN", "set")
    routes = docs["router.yaml:ConfigMap"]["data"]["routes.yaml"]
    assert parse_routes(yaml.safe_load(routes)).destinations


def test_collector_manifests_match_the_collector() -> None:
    """The collector Deployment probes /healthz and /readyz on SCORER_COLLECT_WEB_PORT,
    outlives its SIGTERM drain, takes its write keys from a Secret, and compose's
    collector sets only real settings."""
    from scorer.collect.service import SHUTDOWN_SECONDS as COLLECT_SHUTDOWN

    docs = dict(k8s_documents())
    pod = docs["collect.yaml:Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["terminationGracePeriodSeconds"] > COLLECT_SHUTDOWN
    assert container["ports"][0]["containerPort"] == Settings().collect_web_port
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"secretRef": {"name": "icp-collect-secrets"}} in container["envFrom"]
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    assert set(compose["collect"]["environment"]) <= SETTINGS_ENV
