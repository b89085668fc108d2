"""`openanomaly worker` as a real process, with a real Redis broker and Prometheus."""

import os
import signal
import subprocess
import time

import pytest
from celery import Celery

from openanomaly.adapters.scheduler.slot_ledger import RedisSlotLedger
from tests.e2e.test_cli import recent_history, valid_config, write_config
from tests.processes import CLI
from tests.redis_server import redis_server  # noqa: F401  (fixture)

STEP_MS = 5000
TASK = "openanomaly.run_anomaly_check"


@pytest.fixture
def worker_setup(tmp_path, prometheus, prom_client, unique, redis_server):  # noqa: F811
    metric = unique("e2e_celery")
    prom_client.write([recent_history(metric)])
    # A second pipeline whose query returns two series where one is allowed: it fails with
    # a PipelineError, which is recorded and not retried.
    too_many = ('label_replace(vector(1), "a", "1", "", "") '
                'or label_replace(vector(2), "a", "2", "", "")')
    text = (valid_config(prometheus.url, metric)
            + "  - name: toomany\n    model: seasonal_naive\n    step: 5s\n    context: 10m\n"
            + f"    horizon: 1m\n    schedule: 5s\n    max_series: 1\n    query: '{too_many}'\n"
            + "  - name: badquery\n    model: seasonal_naive\n    step: 5s\n    context: 10m\n"
            + "    horizon: 1m\n    schedule: 5s\n    query: 'rate(up[5m]'\n"
            + f"redis:\n  url: {redis_server.url}\n")
    config = write_config(tmp_path, text)
    log_file = (tmp_path / "worker.log").open("w")
    process = subprocess.Popen(
        [*CLI, "--config", str(config), "worker", "--concurrency", "1", "--log-level", "INFO"],
        stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ})
    client = Celery("openanomaly-test", broker=redis_server.url, backend=redis_server.url)
    try:
        yield metric, process, client, tmp_path / "worker.log"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log_file.close()
        client.close()


def test_worker_runs_slots_skips_done_ones_and_drops_unknown_pipelines(
        worker_setup, prom_client, redis_server):  # noqa: F811
    metric, process, client, log_path = worker_setup
    now = int(time.time() * 1000)
    slots = [now - now % STEP_MS - 60_000, now - now % STEP_MS - 30_000]

    # A slot off the step grid is aligned down by the worker, like the beat would send it.
    pending = [client.send_task(TASK, args=["quick", slot + 1234]) for slot in slots]
    results = [p.get(timeout=60) for p in pending]
    assert [r["status"] for r in results] == ["ok", "ok"], log_path.read_text()
    assert [r["at_ms"] for r in results] == slots

    ledger = RedisSlotLedger(redis_server.client())
    assert all(ledger.done("quick", slot) for slot in slots)
    assert ledger.last_completed("quick") == slots[1]

    found = prom_client.query_range(f'openanomaly_anomaly_score{{source_metric="{metric}"}}',
                                    slots[0], slots[1], STEP_MS)
    assert len(found) == 1
    assert set(slots) <= {int(t) for t in found[0].timestamps_ms}

    again = client.send_task(TASK, args=["quick", slots[0]]).get(timeout=30)
    assert again == {"status": "skipped", "reason": "done", "pipeline": "quick",
                     "at_ms": slots[0]}
    assert ledger.status("quick").last_error is None

    dropped = client.send_task(TASK, args=["gone", slots[0]]).get(timeout=30)
    assert dropped["status"] == "dropped"
    assert "unknown pipeline; stale task dropped" in log_path.read_text()
    assert process.poll() is None, "the worker stays up"

    failing = client.send_task(TASK, args=["toomany", slots[0]])
    with pytest.raises(Exception, match="max_series=1"):
        failing.get(timeout=30)
    assert failing.state == "FAILURE"
    error = ledger.last_error("toomany")
    assert error is not None and error["kind"] == "TooManySeries"
    assert error["slot"] == str(slots[0])
    assert not ledger.done("toomany", slots[0])
    assert ledger.claimed_by("toomany", slots[0]) is None, "a failed run frees its slot"
    assert "run failed; not retried" in log_path.read_text()
    # A query Prometheus rejects fails at once with its message: retrying cannot help.
    rejected = client.send_task(TASK, args=["badquery", slots[0]])
    with pytest.raises(Exception, match="parse error"):
        rejected.get(timeout=30)
    assert ledger.last_error("badquery")["kind"] == "QueryRejected"
    assert "will retry" not in log_path.read_text()
    # ... and keeps serving: a forecast task of a new slot still runs.
    forecast = client.send_task("openanomaly.run_forecast", args=["quick", slots[1]])
    assert forecast.get(timeout=30)["status"] == "ok"

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0, log_path.read_text()
