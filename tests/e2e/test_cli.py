"""The ``openanomaly`` command as a process, against a real Prometheus."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from openanomaly.domain.series import Series
from tests.http_stub import serve_stub

CLI = [sys.executable, "-m", "openanomaly.entrypoints.cli"]


def openanomaly(*args, config=None, timeout=120, env=None):
    command = [*CLI, *(["--config", str(config)] if config else []), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def write_config(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def valid_config(url, metric, **extra):
    lines = [
        "prometheus:", f"  url: {url}", "pipelines:", "  - name: quick",
        f"    query: {metric}", "    model: seasonal_naive", "    step: 5s",
        "    context: 10m", "    horizon: 1m", "    schedule: 5s",
    ]
    lines += [f"    {key}: {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def wait_for_scores(prom_client, metric, seconds=60):
    """The anomaly scores of ``metric`` written in the last two minutes, once some are."""
    deadline, found = time.time() + seconds, []
    while time.time() < deadline and not found:
        time.sleep(1)
        now = int(time.time() * 1000)
        found = prom_client.query_range(
            f'openanomaly_anomaly_score{{source_metric="{metric}"}}', now - 120_000, now, 5000)
    return found


def recent_history(metric, minutes=15, step_ms=5000):
    now = int(time.time() * 1000)
    end = now - now % step_ms
    n = minutes * 60_000 // step_ms
    t = np.arange(n)
    return Series.of({"__name__": metric, "job": "e2e"}, end - (n - 1 - t) * step_ms,
                     10 + np.sin(t / 10))


def test_check_config_lists_pipelines(tmp_path):
    config = write_config(tmp_path, valid_config("http://127.0.0.1:9", "up"))
    done = openanomaly("check-config", config=config)
    assert done.returncode == 0, done.stderr
    assert "quick: mode=anomaly model=seasonal_naive step=5s" in done.stdout


@pytest.mark.parametrize(("text", "expected"), [
    ("pipelines:\n  - name: a\n    query: [up\n", "malformed YAML"),
    ("prometheus:\n  urll: http://x\n", "prometheus.urll: unknown key"),
    ("pipelines:\n  - name: cpu\n    query: up\n    step: 5 minutes\n",
     "pipelines[0] (cpu).step: not a duration"),
    ("pipelines:\n  - name: cpu\n    query: up\n    model: gpt\n", "unknown model 'gpt'"),
    ("prometheus:\n  bearer_token: ${MISSING_TOKEN_VAR}\n", "MISSING_TOKEN_VAR is not set"),
    ("models:\n  m:\n    backend: fracast\n    members: [a, b]\n",
     "models.m.members: unknown key for backend fracast"),
    ("models:\n  m:\n    backend: prophet\n", "models.m.backend: must be one of 'fracast'"),
])
def test_bad_config_is_one_clear_message_and_exit_2(tmp_path, text, expected):
    done = openanomaly("check-config", config=write_config(tmp_path, text))
    assert done.returncode == 2
    assert expected in done.stderr
    assert str(tmp_path / "config.yaml") in done.stderr
    assert "Traceback" not in done.stderr


def test_check_config_names_the_extra_a_configured_model_needs(tmp_path):
    config = write_config(tmp_path, "models:\n  ets:\n    backend: autoets\n")
    # None in sys.modules is Python's own mark of a package that is not installed.
    without_statsforecast = ("import sys; sys.modules['statsforecast'] = None; "
                             "from openanomaly.entrypoints.cli import main; main()")
    done = subprocess.run(
        [sys.executable, "-c", without_statsforecast, "--config", str(config), "check-config"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert ("models.ets: backend autoets needs the statsforecast extra (statsforecast not "
            "installed): pip install 'openanomaly[statsforecast]'") in done.stderr
    assert "Traceback" not in done.stderr
    assert openanomaly("check-config", config=config).returncode == 0, "installed here"


def test_missing_config_file_names_the_variable(tmp_path):
    done = openanomaly("check-config", config=tmp_path / "nope.yaml")
    assert done.returncode == 2 and "OPENANOMALY_CONFIG_FILE" in done.stderr


def test_config_from_environment_variable_and_overrides(tmp_path):
    config = write_config(tmp_path, valid_config("http://127.0.0.1:9", "up"))
    done = openanomaly("check-config", env={"OPENANOMALY_CONFIG_FILE": str(config),
                                            "OPENANOMALY__PROMETHEUS__URL": "http://other:9090"})
    assert done.returncode == 0, done.stderr
    assert "prometheus: http://other:9090" in done.stdout


@pytest.mark.parametrize(("url", "expected"), [
    ("http://host:9090:99", "Invalid port: '9090:99'"),
    ("http://host:70000", "port 70000 is not between 1 and 65535"),
    ("http://:9090", "it has no host"),
])
def test_check_config_refuses_invalid_urls(tmp_path, url, expected):
    done = openanomaly("check-config", config=write_config(tmp_path, valid_config(url, "up")))
    assert done.returncode == 2, done.stdout
    assert f"prometheus.url: invalid URL '{url}': {expected}" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("text", ["", "pipelines: []\n", "prometheus:\n  timeout: 5\n"])
def test_check_config_warns_when_no_prometheus_url_is_set(tmp_path, text):
    done = openanomaly("check-config", config=write_config(tmp_path, text))
    assert done.returncode == 0, done.stderr
    assert ("sets no prometheus.url; using the default http://localhost:9090"
            in done.stderr)
    assert "prometheus: http://localhost:9090" in done.stdout


def test_check_config_connect_evaluates_each_pipeline_query(tmp_path, prometheus, prom_client,
                                                            unique):
    metric = unique("checked")
    prom_client.write([recent_history(metric, minutes=2)])
    pipelines = {"present": metric, "absent": unique("absent"), "broken": f"rate({metric}[5m]"}
    text = f"prometheus:\n  url: {prometheus.url}\npipelines:\n" + "".join(
        f"  - {{name: {name}, query: '{query}', model: seasonal_naive, step: 5s, "
        f"context: 10m, schedule: 5s}}\n" for name, query in pipelines.items())
    config = write_config(tmp_path, text)

    done = openanomaly("check-config", "--connect", config=config)

    assert done.returncode == 1, done.stderr
    assert "prometheus: reachable" in done.stdout
    assert "  present: 1 series" in done.stdout
    assert "  absent: warning: no series now" in done.stdout
    assert re.search(r"  broken: error: .*rejected the query .*parse error", done.stdout)
    assert "the query of 1 of 3 pipeline(s) failed: broken" in done.stderr
    assert "Traceback" not in done.stderr

    config.write_text(text.split("  - {name: broken")[0])
    done = openanomaly("check-config", "--connect", config=config)
    assert done.returncode == 0, done.stderr
    assert "  absent: warning: no series now" in done.stdout


def test_run_once_reports_a_malformed_answer_without_a_traceback(tmp_path):
    with serve_stub() as stub:
        stub.answer(200, '{"status":"success","data":{"resultType":"matrix","result":'
                         '[{"metric":{"job":"a"},"values":[[1,"not-a-number"]]}]}}')
        done = openanomaly("run-once", "quick",
                           config=write_config(tmp_path, valid_config(stub.url, "up")))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "a sample's value is not a number" in done.stderr
    assert '"not-a-number"' in done.stderr
    assert len(stub.seen) == 1  # not retried: the same query gets the same answer


def test_run_once_writes_scores(tmp_path, prometheus, prom_client, unique):
    metric = unique("e2e_once")
    prom_client.write([recent_history(metric)])
    config = write_config(tmp_path, valid_config(prometheus.url, metric))
    done = openanomaly("run-once", "quick", "--at", "now-1m", config=config)
    assert done.returncode == 0, done.stderr
    assert "quick at" in done.stdout and "1 series" in done.stdout
    now = int(time.time() * 1000)
    found = prom_client.query_range(f'openanomaly_anomaly_score{{source_metric="{metric}"}}',
                                    now - 600_000, now, 5000)
    assert len(found) == 1


def test_run_once_unknown_pipeline(tmp_path):
    config = write_config(tmp_path, valid_config("http://127.0.0.1:9", "up"))
    done = openanomaly("run-once", "other", config=config)
    assert done.returncode == 1 and "unknown pipeline 'other'; pipelines: quick" in done.stderr


@pytest.mark.slow
def test_run_schedules_pipelines_and_stops_cleanly_on_sigterm(tmp_path, prometheus, prom_client,
                                                               unique):
    metric = unique("e2e_run")
    prom_client.write([recent_history(metric, minutes=30)])
    config = write_config(tmp_path, valid_config(prometheus.url, metric))
    process = subprocess.Popen([*CLI, "--config", str(config), "run"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for_scores(prom_client, metric), "no scores written within 60 s"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "run finished" in stderr and "scheduler stopped" in stderr


@pytest.mark.slow
def test_demo_detects_every_injected_anomaly_and_keeps_a_web_ui_running(tmp_path):
    # Its log goes to a file: a pipe read only at the end could fill up and block it.
    errors = (tmp_path / "demo.log").open("w+")
    process = subprocess.Popen([*CLI, "demo", "--data-dir", str(tmp_path / "prom"),
                                "--keep-running"], stdout=subprocess.PIPE,
                               stderr=errors, text=True)
    log = (tmp_path / "demo.log").read_text
    lines = []
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "one-time password" in line:
                break
        out = "".join(lines)
        assert "Detected 4 of 4 injected anomalies" in out, out + log()
        assert "MISSED" not in out
        assert "openanomaly_anomaly_score > 1" in out
        url = re.search(r"The web UI runs at (http://\S+):", out)[1]
        password = out.rsplit("one-time password ", 1)[1].strip()
        with httpx.Client(base_url=url) as browser:
            signed = browser.post("/api/session", json={"name": "admin", "password": password})
            assert signed.status_code == 200, signed.text
            names = [p["name"] for p in browser.get("/api/pipelines").json()]
            assert names == ["http-requests", "infrastructure"]
            # The live slot each demo pipeline ran shows as its status.
            for name in names:
                status = browser.get(f"/api/pipelines/{name}/status").json()
                assert status["health"] == "ok" and status["last_run"]["series"] > 0, status
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=180)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGUSR1)  # every thread's stack to stderr
            time.sleep(2)
            process.kill()
            pytest.fail("the demo did not stop on Ctrl-C:\n" + log()[-8000:])
        assert process.returncode == 0, log()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        errors.close()
    assert Path(tmp_path / "prom").is_dir()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz", timeout=2)


def test_run_refuses_a_config_meant_for_celery(tmp_path):
    config = write_config(tmp_path, valid_config("http://127.0.0.1:9", "up")
                          + "scheduler:\n  kind: celery\n")
    done = openanomaly("run", config=config)
    assert done.returncode == 2
    assert "start `openanomaly beat` and `openanomaly worker`" in done.stderr


def test_backfill_off_a_terminal_logs_its_progress(tmp_path, prometheus, prom_client, unique):
    metric = unique("e2e_backfill")
    prom_client.write([recent_history(metric, minutes=20)])
    config = write_config(tmp_path, valid_config(prometheus.url, metric))
    done = openanomaly("backfill", "quick", "--from", "now-5m", "--to", "now", config=config)
    assert done.returncode == 0, done.stderr
    finished = [line for line in done.stderr.splitlines() if "backfill quick: finished" in line]
    assert len(finished) == 1 and "done=" in finished[0] and "rate_per_s=" in finished[0], \
        done.stderr


def test_a_run_says_when_its_series_are_stale_or_partly_unusable(tmp_path, prometheus,
                                                                 prom_client, unique):
    """Infinite and missing values are no measurements: a source that stopped is stale
    (nothing written for it), one that still reports makes the run partial."""
    metric = unique("e2e_stale")
    live = recent_history(metric, minutes=20)
    stopped = Series.of({**live.labels, "job": "stopped"}, live.timestamps_ms,
                        np.where(live.timestamps_ms > live.timestamps_ms[-1] - 60_000,
                                 np.inf, live.values))
    prom_client.write([live, stopped])
    config = write_config(tmp_path, valid_config(prometheus.url, metric))
    done = openanomaly("run-once", "quick", config=config)
    assert done.returncode == 0, done.stderr
    assert ": partial, 2 series" in done.stdout and "1 series stale" in done.stdout, done.stdout
    assert "RuntimeWarning" not in done.stderr

    prom_client.write([Series.of({**live.labels, "job": "all-inf"}, live.timestamps_ms,
                                 np.full(live.timestamps_ms.size, -np.inf))])
    only_inf = write_config(tmp_path, valid_config(prometheus.url,
                                                   f'{metric}{{job="all-inf"}}'))
    done = openanomaly("run-once", "quick", config=only_inf)
    assert ": stale, 1 series" in done.stdout and "0 samples written" in done.stdout, \
        done.stdout + done.stderr
    assert "RuntimeWarning" not in done.stderr
