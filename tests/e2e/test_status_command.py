"""`openanomaly status` against a real Redis holding a ledger."""

import subprocess
import sys

from openanomaly.adapters.scheduler.slot_ledger import RedisSlotLedger
from openanomaly.domain.errors import QueryRejected
from tests.redis_server import redis_server  # noqa: F401  (fixture)


def test_status_shows_lock_queue_workers_and_pipeline_slots(tmp_path, redis_server):  # noqa: F811
    config = tmp_path / "config.yaml"
    config.write_text(
        "pipelines:\n  - name: cpu\n    query: up\n  - name: broken\n    query: up\n"
        f"redis:\n  url: {redis_server.url}\n")
    ledger = RedisSlotLedger(redis_server.client())
    ledger.complete("cpu", 1_700_000_100_000, "task-1")
    ledger.record_error("broken", 1_700_000_200_000, QueryRejected("parse error: bad"))
    ledger.record_skipped("cpu", 3)
    ledger.claim("cpu", 1_700_000_400_000, "task-2", 60_000)
    done = subprocess.run(
        [sys.executable, "-m", "openanomaly.entrypoints.cli", "--config", str(config), "status"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "beat leader: none" in out
    assert "queue 'celery': 0 task(s) waiting" in out
    assert "workers seen: 0" in out
    assert ("cpu: last completed slot 2023-11-14T22:15:00+00:00, 1 slot(s) done in the "
            "ledger's window") in out
    assert "running: slot 2023-11-14T22:20:00+00:00 (task task-2)" in out
    assert "3 missed slot(s) older than scheduler.catch_up_horizon, not run" in out
    assert "broken: last completed slot never" in out
    assert "QueryRejected: parse error: bad" in out


def test_status_without_redis_is_a_clear_error(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("redis:\n  url: redis://127.0.0.1:9/0\n")
    done = subprocess.run(
        [sys.executable, "-m", "openanomaly.entrypoints.cli", "--config", str(config), "status"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "cannot read Redis at redis://127.0.0.1:9/0" in done.stderr
    assert "Traceback" not in done.stderr


def test_status_names_the_beat_leader(tmp_path, redis_server):  # noqa: F811
    config = tmp_path / "config.yaml"
    config.write_text(f"redis:\n  url: {redis_server.url}\n")
    client = redis_server.client()
    client.set("redbeat::lock", "beat-host:4242:1a2b3c4d", px=20_000)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "openanomaly.entrypoints.cli", "--config", str(config),
             "status"], capture_output=True, text=True, timeout=60)
    finally:
        client.delete("redbeat::lock")
    assert done.returncode == 0, done.stderr
    assert "beat leader: beat-host:4242:1a2b3c4d (lock redbeat::lock, " in done.stdout
