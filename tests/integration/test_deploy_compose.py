"""The Compose topology: valid against the Compose spec, secrets only from .env, every
command one the CLI accepts, and a Prometheus config that promtool accepts."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from openanomaly.config import load_config
from openanomaly.entrypoints.cli import cli
from tests.deploy_tools import DEPLOY, ROOT, env_file, interpolate, load_yaml, run_tool, tool

COMPOSE = DEPLOY / "compose"
SERVICES = load_yaml(COMPOSE / "compose.yaml")["services"]
EXAMPLE_ENV = env_file(COMPOSE / ".env.example")
OPENANOMALY_SERVICES = {name: service for name, service in SERVICES.items()
                        if "OPENANOMALY_IMAGE" in service["image"]
                        or "OPENANOMALY_CUDA_IMAGE" in service["image"]}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|MONGO_URL")
CONFIG_IN_CONTAINER = "/etc/openanomaly/config.yaml"


def _listening_port(command: list[str]) -> int:
    if "--port" in command:
        return int(command[command.index("--port") + 1])
    return 9464  # the metrics endpoint of run, worker and beat


def test_compose_file_matches_the_compose_spec() -> None:
    result = run_tool(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                      COMPOSE / "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_holds_no_secret() -> None:
    for name, service in SERVICES.items():
        environment = service.get("environment", {})
        leaked = [key for key in environment if SECRET_NAME.search(key)]
        assert not leaked, f"{name}: {leaked} belong in .env, passed by env_file"
    # Nor anywhere else (a command line, a list form of environment): KEY=value, KEY: value.
    text = (COMPOSE / "compose.yaml").read_text()
    for key in EXAMPLE_ENV:
        if SECRET_NAME.search(key):
            assert not re.search(rf"\b{key}\s*[=:]\s*[^\s\"]", text), (
                f"{key} is given a value in compose.yaml")


def test_the_real_env_file_is_ignored_by_git() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", "deploy/compose/.env"], cwd=ROOT,
                             check=False)
    assert ignored.returncode == 0, "deploy/compose/.env holds secrets: ignore it"


def test_every_openanomaly_service_reads_the_mounted_config_and_the_env_file() -> None:
    assert set(OPENANOMALY_SERVICES) >= {"api", "beat", "worker", "init", "model-server"}
    for name, service in OPENANOMALY_SERVICES.items():
        assert service["env_file"] == [".env"], name
        assert service["environment"]["OPENANOMALY_CONFIG_FILE"] == CONFIG_IN_CONTAINER
        assert f"./openanomaly.yaml:{CONFIG_IN_CONTAINER}:ro" in service["volumes"], name


@pytest.mark.parametrize("name", sorted(OPENANOMALY_SERVICES))
def test_service_command_is_one_the_cli_accepts(name: str) -> None:
    command = [interpolate(part, EXAMPLE_ENV) for part in SERVICES[name]["command"]]
    subcommand = cli.commands[command[0]]
    # Parsing only: a bad option or argument raises click.UsageError here.
    subcommand.make_context(command[0], command[1:])


@pytest.mark.parametrize("name", sorted(set(OPENANOMALY_SERVICES) - {"init"}))
def test_health_check_asks_the_port_the_service_listens_on(name: str) -> None:
    service = SERVICES[name]
    port = _listening_port(service["command"])
    check = " ".join(service["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/healthz" in check
    if port == 9464:
        # Reached by Prometheus from its own container.
        assert service["environment"]["OPENANOMALY__METRICS__HOST"] == "0.0.0.0"


def test_config_validates_with_the_example_env() -> None:
    config = load_config(COMPOSE / "openanomaly.yaml", environ=EXAMPLE_ENV)
    assert config.store.kind == "mongo"
    assert config.scheduler.kind == "celery"
    assert config.redis.url.startswith("redis://redis:")
    assert "@mongo:27017" in str(config.mongo.url)
    assert config.prometheus.url == "http://prometheus:9090"
    # Prometheus scrapes the api by its service name, which Django must accept.
    assert "api" in config.django.allowed_hosts
    assert config.models["fracast-remote"].url == "http://model-server:8501"


def test_every_variable_the_config_names_is_in_the_example_env() -> None:
    lines = (COMPOSE / "openanomaly.yaml").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    required = set(re.findall(r"\$\{(\w+)\}", text))
    assert required <= set(EXAMPLE_ENV), required - set(EXAMPLE_ENV)


def test_high_availability_and_persistence() -> None:
    assert SERVICES["beat"]["deploy"]["replicas"] == 2
    assert "--appendonly yes" in " ".join(SERVICES["redis"]["command"])
    assert "--web.enable-remote-write-receiver" in SERVICES["prometheus"]["command"]
    for name in ("api", "beat", "worker"):
        needs = SERVICES[name]["depends_on"]
        assert all(needs[dep]["condition"] == "service_healthy" for dep in needs), name
        assert {"redis", "mongo"} <= set(needs), name


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    # Laid out as in the container: rules and the token file beside the config.
    shutil.copy(COMPOSE / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copytree(DEPLOY / "prometheus" / "rules", tmp_path / "rules")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "model_server_token").write_text("token\n")
    result = run_tool(tool("promtool"), "check", "config", tmp_path / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_every_openanomaly_process() -> None:
    config = load_yaml(COMPOSE / "prometheus.yml")
    assert config["storage"]["tsdb"]["out_of_order_time_window"]
    scraped: dict[str, int] = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.partition(":")
                scraped[host] = int(port)
        for dns in job.get("dns_sd_configs", []):
            assert dns["type"] == "A", "every replica, not one"
            for host in dns["names"]:
                scraped[host] = dns["port"]
    for name, service in OPENANOMALY_SERVICES.items():
        if name == "init":
            continue
        aliases = service.get("networks", {}).get("default", {}).get("aliases", [])
        host = next((a for a in [name, *aliases] if a in scraped), None)
        assert host, f"{name} is not scraped"
        assert scraped[host] == _listening_port(service["command"]), name


def test_grafana_gets_the_prometheus_datasource_and_the_dashboards() -> None:
    provisioning = COMPOSE / "grafana" / "provisioning"
    datasource = load_yaml(provisioning / "datasources" / "prometheus.yaml")["datasources"][0]
    assert datasource["uid"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    provider = load_yaml(provisioning / "dashboards" / "openanomaly.yaml")["providers"][0]
    mounts = dict(volume.rsplit(":", 1)[0].split(":", 1)
                  for volume in SERVICES["grafana"]["volumes"] if volume.startswith("."))
    assert mounts["../grafana/dashboards"] == provider["options"]["path"]
