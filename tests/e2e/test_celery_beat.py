"""`openanomaly beat` and `openanomaly worker` as real processes: beat dispatches, workers
catch up the slots missed since the last completed one and write their scores."""

import os
import signal
import subprocess
import time

from openanomaly.adapters.scheduler.slot_ledger import RedisSlotLedger
from tests.e2e.test_cli import recent_history, valid_config, write_config
from tests.processes import CLI
from tests.redis_server import redis_server  # noqa: F401  (fixture)

STEP_MS = 5000


def test_beat_dispatches_and_missed_slots_are_caught_up(
        tmp_path, prometheus, prom_client, unique, redis_server):  # noqa: F811
    metric = unique("e2e_beat")
    history = recent_history(metric)
    prom_client.write([history])
    end = int(history.timestamps_ms[-1])
    # As if beat was down for the last 30 s: those slots hold data and must be run.
    ledger = RedisSlotLedger(redis_server.client())
    ledger.complete("quick", end - 30_000)
    config = write_config(tmp_path, valid_config(prometheus.url, metric)
                          + f"redis:\n  url: {redis_server.url}\n"
                          + "scheduler:\n  reconcile_interval: 2\n  lock_timeout: 6\n")
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("beat", "worker")}
    processes = {
        "worker": subprocess.Popen([*CLI, "--config", str(config), "worker", "--concurrency",
                                    "1", "--log-level", "INFO"], stdout=logs["worker"],
                                   stderr=subprocess.STDOUT, env={**os.environ}),
        "beat": subprocess.Popen([*CLI, "--config", str(config), "beat", "--log-level", "INFO"],
                                 stdout=logs["beat"], stderr=subprocess.STDOUT,
                                 env={**os.environ}),
    }
    try:
        wanted = set(range(end - 25_000, end + 1, STEP_MS))
        found: set[int] = set()
        deadline = time.monotonic() + 60
        # The ledger is updated just after the samples are written: wait for both.
        while time.monotonic() < deadline and not (
                wanted <= found and (ledger.last_completed("quick") or 0) >= end):
            time.sleep(1)
            series = prom_client.query_range(
                f'openanomaly_anomaly_score{{source_metric="{metric}"}}',
                end - 30_000, end, STEP_MS)
            found = {int(t) for s in series for t in s.timestamps_ms}
        assert wanted <= found, (tmp_path / "worker.log").read_text()
        assert (ledger.last_completed("quick") or 0) >= end
        for name in ("beat", "worker"):
            processes[name].send_signal(signal.SIGTERM)
            assert processes[name].wait(timeout=20) == 0, (tmp_path / f"{name}.log").read_text()
        assert "beat: Releasing lock" in (tmp_path / "beat.log").read_text()
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        for log_file in logs.values():
            log_file.close()
