"""`openanomaly api` as a process under gunicorn, on a SQLite store."""

import subprocess
import time

import httpx

from openanomaly.adapters.tsdb.local_prometheus import free_port
from tests.e2e.test_accounts_command import PASSWORD
from tests.e2e.test_cli import CLI, openanomaly, recent_history, wait_for_scores, write_config
from tests.redis_server import redis_server  # noqa: F401  (fixture)


def api_config(tmp_path, prometheus_url, port, secret="e2e-secret-key"):
    secret_line = f"  secret_key: {secret}\n" if secret else ""
    return write_config(tmp_path, f"prometheus:\n  url: {prometheus_url}\n"
                                  f"store:\n  kind: sqlite\n"
                                  f"  sqlite_path: {tmp_path / 'store.db'}\n"
                                  f"django:\n{secret_line}  port: {port}\n")


def stop(process, seconds=30):
    """SIGTERM, then SIGKILL if it is still running after ``seconds``."""
    process.terminate()
    try:
        process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


def wait_ready(base, process, seconds=60):
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and process.poll() is None, "api did not start"
        time.sleep(0.2)


def test_the_api_serves_signed_in_users_and_stops_on_sigterm(tmp_path, prometheus):
    port = free_port()
    config = api_config(tmp_path, prometheus.url, port)
    openanomaly("createuser", "ana", "--role", "editor", config=config,
                env={"OPENANOMALY_PASSWORD": PASSWORD})
    token = openanomaly("tokens", "create", "ana", "e2e", config=config).stdout.strip()
    process = subprocess.Popen([*CLI, "--config", str(config), "api", "--workers", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{base}/api/pipelines").status_code == 401
        created = httpx.post(f"{base}/api/pipelines", headers=auth,
                             json={"name": "cpu", "query": "up"})
        assert created.status_code == 201, created.text
        # Two workers, one store: every request sees the pipeline whichever worker serves it.
        for _ in range(6):
            listed = httpx.get(f"{base}/api/pipelines", headers=auth).json()
            assert [p["name"] for p in listed] == ["cpu"]
        listed_cli = openanomaly("pipelines", "list", config=config).stdout
        assert listed_cli.startswith("cpu  v1  enabled")
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr


def test_the_api_refuses_to_start_without_a_secret_key(tmp_path):
    config = api_config(tmp_path, "http://127.0.0.1:9", free_port(), secret=None)
    done = openanomaly("api", config=config, timeout=60)
    assert done.returncode == 2 and "django.secret_key is required" in done.stderr


def test_a_pipeline_created_through_the_api_runs_in_the_embedded_service(
        tmp_path, prometheus, prom_client, unique):
    port = free_port()
    config = api_config(tmp_path, prometheus.url, port)
    metric = unique("e2e_api_run")
    prom_client.write([recent_history(metric, minutes=30)])
    openanomaly("createuser", "ana", "--role", "editor", config=config,
                env={"OPENANOMALY_PASSWORD": PASSWORD})
    token = openanomaly("tokens", "create", "ana", "e2e", config=config).stdout.strip()
    processes = [subprocess.Popen([*CLI, "--config", str(config), *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for args in (["api", "--workers", "1"], ["run"])]
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, processes[0])
        spec = {"name": "quick", "query": metric, "model": "seasonal_naive", "step": "5s",
                "context": "10m", "horizon": "1m", "schedule": "5s"}
        created = httpx.post(f"{base}/api/pipelines", json=spec,
                             headers={"Authorization": f"Bearer {token}"})
        assert created.status_code == 201, created.text
        assert wait_for_scores(prom_client, metric), "the API-created pipeline never ran"
        # The embedded service's runs reach the api process through the store.
        deadline = time.monotonic() + 20
        while not (status := httpx.get(f"{base}/api/pipelines/quick/status", headers={
                "Authorization": f"Bearer {token}"}).json()).get("last_run"):
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
        assert status["scheduler"] == "embedded" and status["health"] == "ok"
    finally:
        for process in processes:
            stop(process)


def test_an_api_edit_reaches_the_beat_leader_and_the_workers_status_reaches_the_api(
        tmp_path, prometheus, prom_client, unique, redis_server):  # noqa: F811
    """The distributed deployment as processes (api, beat, worker) on one SQLite store:
    a pipeline created through the API is scheduled by beat without a restart and run by
    the worker, whose run status the API then shows; disabling it takes it off the
    schedule."""
    port = free_port()
    metric = unique("e2e_api_beat")
    prom_client.write([recent_history(metric, minutes=30)])
    config = write_config(tmp_path, api_config(tmp_path, prometheus.url, port).read_text()
                          + f"redis:\n  url: {redis_server.url}\n"
                          + "scheduler:\n  kind: celery\n  reconcile_interval: 2\n"
                          + "  lock_timeout: 6\n")
    openanomaly("createuser", "ana", "--role", "editor", config=config,
                env={"OPENANOMALY_PASSWORD": PASSWORD})
    auth = {"Authorization": "Bearer " + openanomaly(
        "tokens", "create", "ana", "e2e", config=config).stdout.strip()}
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("api", "beat", "worker")}
    commands = {"api": ["api", "--workers", "1"], "beat": ["beat", "--log-level", "INFO"],
                "worker": ["worker", "--concurrency", "1", "--log-level", "INFO"]}
    processes = {name: subprocess.Popen([*CLI, "--config", str(config), *args],
                                        stdout=logs[name], stderr=subprocess.STDOUT)
                 for name, args in commands.items()}
    base = f"http://127.0.0.1:{port}"
    schedule = redis_server.client()
    try:
        wait_ready(base, processes["api"])
        spec = {"name": "quick", "query": metric, "model": "seasonal_naive", "step": "5s",
                "context": "10m", "horizon": "1m", "schedule": "5s"}
        created = httpx.post(f"{base}/api/pipelines", json=spec, headers=auth)
        assert created.status_code == 201, created.text
        assert wait_for_scores(prom_client, metric), (tmp_path / "worker.log").read_text()

        deadline = time.monotonic() + 30
        while True:
            status = httpx.get(f"{base}/api/pipelines/quick/status", headers=auth).json()
            if status.get("last_run") and status.get("last_completed_ms"):
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
        assert status["scheduler"] == "celery" and status["health"] == "ok"
        assert status["last_run"]["seconds"] > 0 and status["last_run"]["series"] == 1

        assert schedule.zrange("redbeat::schedule", 0, -1) == [b"redbeat:openanomaly:quick"]
        disabled = httpx.post(f"{base}/api/pipelines/quick/disable", json={"version": 1},
                              headers=auth)
        assert disabled.status_code == 200, disabled.text
        deadline = time.monotonic() + 20
        while schedule.zcard("redbeat::schedule"):
            assert time.monotonic() < deadline, (tmp_path / "beat.log").read_text()
            time.sleep(0.5)
    finally:
        for process in processes.values():
            stop(process)
        for log_file in logs.values():
            log_file.close()
