"""The Kubernetes manifests: every overlay renders with kustomize and validates strictly
against the Kubernetes API schema, and holds what operating it relies on."""

from __future__ import annotations

import functools
import json
import os

import kubernetes_validate
import pytest
import yaml

from openanomaly.config import load_config
from tests.deploy_tools import DEPLOY, load_yaml, run_tool, tool

KUBERNETES = DEPLOY / "kubernetes"
OVERLAYS = ["cpu", "gpu"]
# The schema version validated against (kubectl's minor here); strict rejects unknown fields.
KUBERNETES_VERSION = "1.32.0"
SECRET = load_yaml(KUBERNETES / "base" / "secret.example.yaml")
SECRET_ENV = {key: str(value) for key, value in SECRET["stringData"].items()}
WORKLOADS = {"Deployment", "StatefulSet"}


@functools.cache
def _kubectl() -> str:
    """kubectl with a kustomize that knows `labels` and inline patches (v4.5, kubectl
    1.24); Debian's kubernetes-client 1.20 embeds v2."""
    kubectl = tool("kubectl")
    answer = run_tool(kubectl, "version", "--client", "-o", "json")
    version = json.loads(answer.stdout or "{}").get("kustomizeVersion", "v0")
    major, minor = (int(part) for part in version.lstrip("v").split(".")[:2])
    if (major, minor) < (4, 5):
        reason = f"kubectl's kustomize {version} is older than v4.5"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return kubectl


@functools.cache
def render(folder: str) -> tuple[dict, ...]:
    result = run_tool(_kubectl(), "kustomize", KUBERNETES / folder)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def _by_kind(docs: tuple[dict, ...], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def _containers(workload: dict) -> list[dict]:
    return workload["spec"]["template"]["spec"]["containers"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_against_the_kubernetes_schema(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    assert docs
    for doc in docs:
        # Raises on a schema violation, and on a kind it has no schema for (no CRDs here).
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_has_probes_resources_and_runs_as_non_root(overlay: str) -> None:
    workloads = [doc for doc in render(f"overlays/{overlay}") if doc["kind"] in WORKLOADS]
    assert len(workloads) >= 4
    for workload in workloads:
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in pod["containers"]:
            assert "livenessProbe" in container and "readinessProbe" in container, name
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert {"cpu", "memory"} <= set(resources["limits"]), name
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_openanomaly_probes_ask_health_and_readiness(overlay: str) -> None:
    for name, workload in _by_kind(render(f"overlays/{overlay}"), "Deployment").items():
        container = _containers(workload)[0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        ports = {port["name"] for port in container["ports"]}
        assert container["livenessProbe"]["httpGet"]["port"] in ports, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_beat_runs_twice_with_a_disruption_budget(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    beat = _by_kind(docs, "Deployment")["openanomaly-beat"]
    assert beat["spec"]["replicas"] == 2
    budgets = [pdb for pdb in _by_kind(docs, "PodDisruptionBudget").values()
               if pdb["spec"]["selector"]["matchLabels"].items()
               <= beat["spec"]["template"]["metadata"]["labels"].items()]
    assert [pdb["spec"]["minAvailable"] for pdb in budgets] == [1]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_autoscale_on_cpu(overlay: str) -> None:
    hpa = _by_kind(render(f"overlays/{overlay}"), "HorizontalPodAutoscaler")["openanomaly-worker"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "openanomaly-worker"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_come_only_from_the_user_created_secret(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    assert not _by_kind(docs, "Secret"), "secret.example.yaml must stay out of kustomize"
    for workload in (doc for doc in docs if doc["kind"] in WORKLOADS):
        for container in _containers(workload):
            for env in container.get("env", []):
                if "value" in env:
                    assert not any(word in env["name"] for word in
                                   ("PASSWORD", "SECRET", "TOKEN", "MONGO_URL")), env
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == SECRET["metadata"]["name"]
                    assert ref["key"] in SECRET_ENV, f"{ref['key']} is not in the example"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_map_is_a_valid_configuration_for_every_process(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    (config_map,) = _by_kind(docs, "ConfigMap").values()
    text = config_map["data"]["config.yaml"]
    # Each process has the variables its configuration names.
    for workload in _by_kind(docs, "Deployment").values():
        names = {env["name"] for env in _containers(workload)[0].get("env", [])}
        for variable in SECRET_ENV:
            if "${" + variable + "}" in text:
                assert variable in names, f"{workload['metadata']['name']} lacks {variable}"
    path = DEPLOY / "kubernetes" / ("base" if overlay == "cpu" else f"overlays/{overlay}")
    assert (path / "openanomaly.yaml").read_text() == text
    config = load_config(path / "openanomaly.yaml", environ=SECRET_ENV)
    assert config.store.kind == "mongo" and config.scheduler.kind == "celery"
    assert config.metrics.host == "0.0.0.0"
    redis = _by_kind(docs, "Service")["openanomaly-redis"]
    assert config.redis.url.startswith(f"redis://{redis['metadata']['name']}:")


def test_gpu_config_is_the_base_one_plus_models() -> None:
    base = load_yaml(KUBERNETES / "base" / "openanomaly.yaml")
    gpu = load_yaml(KUBERNETES / "overlays" / "gpu" / "openanomaly.yaml")
    assert {key: value for key, value in gpu.items()
            if key not in {"models", "model_server"}} == base


def test_gpu_overlay_runs_the_models_on_a_gpu_for_the_workers() -> None:
    docs = render("overlays/gpu")
    server = _by_kind(docs, "Deployment")["openanomaly-model-server"]
    container = _containers(server)[0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["args"][0] == "serve-model"
    service = _by_kind(docs, "Service")["openanomaly-model-server"]
    port = service["spec"]["ports"][0]["port"]
    config = load_config(KUBERNETES / "overlays" / "gpu" / "openanomaly.yaml",
                         environ=SECRET_ENV)
    remote = [model for model in config.models.values() if model.backend == "remote"]
    assert [model.url for model in remote] == [f"http://openanomaly-model-server:{port}"]
    assert remote[0].remote_model in config.model_server.preload
    worker = _by_kind(docs, "Deployment")["openanomaly-worker"]
    assert "nvidia.com/gpu" not in _containers(worker)[0]["resources"]["limits"]
    assert "openanomaly-model-server" not in _by_kind(render("overlays/cpu"), "Deployment")


def test_pod_monitors_scrape_every_openanomaly_pod() -> None:
    monitors = render("monitoring")
    assert {doc["apiVersion"] for doc in monitors} == {"monitoring.coreos.com/v1"}
    assert {doc["kind"] for doc in monitors} == {"PodMonitor"}
    pods = {name: workload for name, workload in
            _by_kind(render("overlays/gpu"), "Deployment").items()}
    for name, workload in pods.items():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        ports = {port["name"] for port in _containers(workload)[0]["ports"]}
        scraped = []
        for monitor in monitors:
            selector = monitor["spec"]["selector"]
            if not selector["matchLabels"].items() <= labels.items():
                continue
            if any(labels.get(rule["key"]) not in rule["values"]
                   for rule in selector.get("matchExpressions", [])):
                continue
            scraped += [endpoint for endpoint in monitor["spec"]["podMetricsEndpoints"]
                        if endpoint["port"] in ports]
        assert scraped, f"no PodMonitor scrapes {name}"
        assert all(endpoint["path"] == "/metrics" for endpoint in scraped)
        if "serve-model" in _containers(workload)[0]["args"]:
            credentials = scraped[0]["authorization"]["credentials"]
            assert credentials["key"] in SECRET_ENV
