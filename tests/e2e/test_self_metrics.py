"""The embedded service monitors itself: /metrics with its runs, stages, samples and lag;
/healthz and /readyz; and `openanomaly_y`, the actual value each score was computed
against, written beside the scores."""

from __future__ import annotations

import subprocess
import time

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from openanomaly.adapters.tsdb.local_prometheus import free_port
from tests.e2e.test_api_command import stop
from tests.e2e.test_cli import CLI, recent_history, valid_config, wait_for_scores, write_config


def samples(text):
    """{(name, frozenset(labels)): value} of an exposition."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def wait_for(url, seconds=30):
    deadline = time.monotonic() + seconds
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"{url} never answered"
            time.sleep(0.2)


def test_the_embedded_service_serves_its_metrics_and_health(tmp_path, prometheus, prom_client,
                                                            unique, monkeypatch):
    metric = unique("e2e_self")
    source = recent_history(metric, minutes=30)
    prom_client.write([source])
    port = free_port()
    monkeypatch.setenv("OPENANOMALY__METRICS__PORT", str(port))
    config = write_config(tmp_path, valid_config(prometheus.url, metric))
    process = subprocess.Popen([*CLI, "--config", str(config), "run"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(f"{base}/healthz").text == "alive\n"
        assert httpx.get(f"{base}/readyz").status_code == 200
        assert wait_for_scores(prom_client, metric), "no run"
        time.sleep(1)  # the scores are written before the run is counted
        found = samples(httpx.get(f"{base}/metrics").text)
    finally:
        stop(process)
    ok = found[("openanomaly_runs_total", frozenset({("pipeline", "quick"),
                                                     ("outcome", "ok")}))]
    assert ok >= 1
    for stage in ("query", "inference", "scoring", "write"):
        key = ("openanomaly_run_stage_duration_seconds_count", frozenset({("stage", stage)}))
        assert found[key] >= ok, stage
    assert found[("openanomaly_samples_written_total", frozenset({("pipeline", "quick")}))] > 0
    assert found[("openanomaly_series_read_total", frozenset({("pipeline", "quick")}))] >= ok
    assert found[("openanomaly_slot_lag_seconds_count", frozenset({("pipeline", "quick")}))] \
        >= ok

    # openanomaly_y is what the pipeline's query returned at each scored timestamp.
    now = int(time.time() * 1000)
    now -= now % 5000  # the source's grid
    (actual,) = prom_client.query_range(f'openanomaly_y{{source_metric="{metric}"}}',
                                        now - 120_000, now, 5000)
    (queried,) = prom_client.query_range(metric, now - 120_000, now, 5000)
    wanted = dict(zip(queried.timestamps_ms.tolist(), queried.values.tolist(), strict=True))
    shown = [(t, v) for t, v in zip(actual.timestamps_ms.tolist(), actual.values.tolist(),
                                    strict=True) if t in wanted]
    assert shown and all(np.isclose(v, wanted[t]) for t, v in shown), (shown, wanted)


def test_readyz_says_why_when_the_database_is_down(tmp_path, monkeypatch):
    port = free_port()
    monkeypatch.setenv("OPENANOMALY__METRICS__PORT", str(port))
    config = write_config(tmp_path, valid_config(f"http://127.0.0.1:{free_port()}", "up"))
    process = subprocess.Popen([*CLI, "--config", str(config), "run"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(f"http://127.0.0.1:{port}/healthz").status_code == 200
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=60)
    finally:
        stop(process)
    assert ready.status_code == 503 and "TSDB" in ready.text, ready.text
