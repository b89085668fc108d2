"""The Compose topology, without Docker: every OpenAnomaly service of
deploy/compose/compose.yaml runs its command as a local process, as many as its replicas,
with the file's environment and the env file's variables, against a local Redis (AOF and
the password of the env file, like the redis service) and a local Prometheus whose
scrape jobs are the Compose Prometheus' jobs pointed at those processes.

What differs from containers, and why: each container has its own network namespace, so
here every process gets its own port (metrics.port, api --port) on 127.0.0.1; MongoDB
cannot run on these machines, so the store is SQLite (OPENANOMALY__STORE__KIND); the
container paths of the mounted files map to the repository's files.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis
import yaml

from openanomaly.adapters.tsdb.local_prometheus import find_prometheus, free_port, stop_with_parent
from tests.processes import LOCK_KEY, wait_for

pytestmark = pytest.mark.slow

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose"
CLI = [sys.executable, "-m", "openanomaly.entrypoints.cli"]
PIPELINES = """\
- name: clock
  query: 'label_replace(vector(1), "topology", "yes", "", "")'
  model: seasonal_naive
  step: 5s
  context: 2m
  horizon: 1m
  schedule: 5s
"""


def env_file(path: Path) -> dict[str, str]:
    """The env file with every placeholder secret replaced by a fresh one."""
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = secrets.token_hex(16) if value == "change-me" else value
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR} and ${VAR:-default}."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}",
                  lambda m: env.get(m.group(1)) or (m.group(2) or ""), text)


class Topology:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.compose = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
        self.secrets = env_file(COMPOSE / ".env.example")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.started: list[subprocess.Popen[bytes]] = []

    def service(self, name: str) -> dict:
        return self.compose["services"][name]

    def env(self, name: str, metrics_port: int | None) -> dict[str, str]:
        service = self.service(name)
        env = {**os.environ, **self.secrets,
               **{k: str(v) for k, v in (service.get("environment") or {}).items()}}
        mounts = {}
        for volume in service.get("volumes", []):
            source, target, *_ = volume.split(":")
            if source.startswith("."):
                mounts[target] = str((COMPOSE / source).resolve())
        env["OPENANOMALY_CONFIG_FILE"] = mounts[env["OPENANOMALY_CONFIG_FILE"]]
        env.update({
            "OPENANOMALY__PROMETHEUS__URL": self.prometheus_url,
            "OPENANOMALY__REDIS__URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "OPENANOMALY__STORE__KIND": "sqlite",
            "OPENANOMALY__STORE__SQLITE_PATH": str(self.workdir / "openanomaly.db"),
            "OPENANOMALY__METRICS__HOST": "127.0.0.1",
            "OPENANOMALY__METRICS__PORT": str(metrics_port or 0),
        })
        return env

    def command(self, name: str, port: int | None = None) -> list[str]:
        args = [interpolate(str(a), self.secrets) for a in self.service(name)["command"]]
        for flag, value in (("--host", "127.0.0.1"), ("--port", str(port))):
            if flag in args:
                args[args.index(flag) + 1] = value
        return args

    def run_once(self, name: str, *args: str) -> None:
        """A one-off command (``args``, else the service's own) in ``name``'s environment."""
        done = subprocess.run([*CLI, *(args or self.command(name))], env=self.env(name, None),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr

    def start(self, name: str, replica: int, port: int) -> None:
        """Replica ``replica`` of service ``name``; ``port``: its metrics or HTTP port."""
        label = f"{name}-{replica}"
        log = (self.workdir / f"{label}.log").open("wb")
        self.procs[label] = process = subprocess.Popen(
            [*CLI, *self.command(name, port)], stdout=log, stderr=subprocess.STDOUT,
            env=self.env(name, port), preexec_fn=stop_with_parent)
        self.ports[label] = port
        self.started.append(process)

    def start_redis(self) -> None:
        self.redis_port = free_port()
        command = self.service("redis")["command"]
        assert "--appendonly yes" in " ".join(command), "the slot ledger needs AOF"
        self.started.append(subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
             "--appendonly", "yes", "--dir", str(self.workdir),
             "--requirepass", self.secrets["REDIS_PASSWORD"]],
            stdout=subprocess.DEVNULL, preexec_fn=stop_with_parent))
        self.redis = redis.Redis(port=self.redis_port, password=self.secrets["REDIS_PASSWORD"])
        wait_for(self._redis_up, 10, "redis")

    def _redis_up(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis.ConnectionError:
            return False

    def start_prometheus(self, targets: dict[str, list[str]]) -> None:
        """The Compose Prometheus' configuration, each job's targets the local processes."""
        config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
        config["global"]["scrape_interval"] = "2s"
        config.pop("rule_files", None)
        for job in config["scrape_configs"]:
            for discovery in ("dns_sd_configs", "static_configs"):
                job.pop(discovery, None)
            job.pop("authorization", None)
            job["static_configs"] = [{"targets": targets.get(job["job_name"], [])}]
        port = free_port()
        self.prometheus_url = f"http://127.0.0.1:{port}"
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.started.append(subprocess.Popen(
            [find_prometheus(), f"--config.file={self.workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=stop_with_parent))
        wait_for(lambda: self.get(f"{self.prometheus_url}/-/ready") == 200, 30, "prometheus")

    @staticmethod
    def get(url: str) -> int:
        try:
            return httpx.get(url, timeout=2).status_code
        except httpx.TransportError:
            return 0

    def query(self, promql: str) -> list[dict]:
        answer = httpx.get(f"{self.prometheus_url}/api/v1/query", params={"query": promql})
        return answer.json()["data"]["result"]

    def stop(self) -> None:
        for process in reversed(self.started):
            process.terminate()
        for process in self.started:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def replicas(service: dict) -> int:
    return int(service.get("deploy", {}).get("replicas", 1))


def test_the_compose_topology_runs_as_documented(tmp_path):
    topology = Topology(tmp_path)
    services = topology.compose["services"]
    # The always-on OpenAnomaly services: those running the project's image without a
    # profile (init and the model servers are opt-in).
    ours = [name for name, s in services.items()
            if str(s.get("image", "")).startswith("${OPENANOMALY_IMAGE") and "profiles" not in s]
    assert sorted(ours) == ["api", "beat", "worker"]
    assert replicas(services["beat"]) == 2 and replicas(services["worker"]) >= 2
    # Ports are known before Prometheus starts so its targets can name them.
    planned = {f"{name}-{i}": free_port() for name in ours for i in range(replicas(services[name]))}
    jobs = {f"openanomaly-{name}": [f"127.0.0.1:{port}" for label, port in planned.items()
                                    if label.startswith(f"{name}-")] for name in ours}
    try:
        topology.start_redis()
        topology.start_prometheus(jobs)
        pipelines = tmp_path / "pipelines.yaml"
        pipelines.write_text(PIPELINES)
        # As the Compose file's comments say: pipelines imported through the api's image,
        # then the init service's command creates the first admin from the env file.
        topology.run_once("api", "pipelines", "import", str(pipelines))
        topology.run_once("init")
        for label, port in planned.items():
            name, _, replica = label.rpartition("-")
            topology.start(name, int(replica), port)

        beats = [topology.procs[f"beat-{i}"].pid for i in range(replicas(services["beat"]))]
        wait_for(lambda: _holder(topology) in beats, 60, "a beat to lead")
        wait_for(lambda: len(_up(topology)) == len(planned) and all(_up(topology).values()),
                 90, "Prometheus to scrape every process")
        worker_runs = ('sum by (instance) (openanomaly_runs_total'
                       '{job="openanomaly-worker",pipeline="clock",outcome="ok"})')
        wait_for(lambda: len(topology.query(worker_runs)) == replicas(services["worker"]),
                 120, "every worker to run slots")
        leaders = topology.query('openanomaly_beat_leader{job="openanomaly-beat"}')
        # Each process's own metrics, not just a target that answers.
        memory = topology.query('process_resident_memory_bytes{job=~"openanomaly-.*"}')
        queue = topology.query('openanomaly_queue_messages{job="openanomaly-beat"}')

        api = f"http://127.0.0.1:{topology.ports['api-0']}"
        with httpx.Client(base_url=api, timeout=10) as client:
            assert client.get("/readyz").status_code == 200
            signed = client.post("/api/session", json={
                "name": topology.secrets["OPENANOMALY_ADMIN_USER"],
                "password": topology.secrets["OPENANOMALY_PASSWORD"]})
            assert signed.status_code == 200, signed.text
            status = client.get("/api/pipelines/clock/status").json()
    finally:
        topology.stop()

    assert sorted(float(s["value"][1]) for s in leaders) == [0.0, 1.0], "one leader"
    assert status["health"] == "ok", status
    assert len(memory) == len(planned)
    assert queue, "the leading beat reports the queue"


def _holder(topology: Topology) -> int | None:
    value = topology.redis.get(LOCK_KEY)
    return int(value.decode().split(":")[1]) if value else None


def _up(topology: Topology) -> dict[str, bool]:
    return {s["metric"]["instance"]: s["value"][1] == "1"
            for s in topology.query('up{job=~"openanomaly-.*"}')}
