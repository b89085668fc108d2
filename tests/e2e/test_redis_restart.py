"""Redis (with append-only persistence) restarted under a running worker and beat: both
reconnect on their own and the slots due during the outage are run late, once each."""

import time
import uuid

import pytest
import redis

from openanomaly.adapters.scheduler.slot_ledger import RedisSlotLedger
from tests.processes import beat, failover_config, raw_sample_times, wait_for, worker
from tests.redis_server import RedisServer

OUTAGE_S = 12


@pytest.mark.slow
def test_worker_and_beat_carry_on_after_a_redis_restart(tmp_path, prometheus):
    (tmp_path / "redis-data").mkdir()
    server = RedisServer(tmp_path / "redis-data", persistent=True)
    tag = uuid.uuid4().hex[:8]
    config = tmp_path / "config.yaml"
    config.write_text(failover_config(prometheus.url, server.url, tag, lock_timeout=30))
    procs = [worker(config, tmp_path), beat(config, tmp_path)]
    ledger = RedisSlotLedger(redis.Redis.from_url(server.url))
    try:
        wait_for(lambda: ledger.last_completed("clock") is not None, 60, "a first slot")
        first = ledger.last_completed("clock")
        assert first is not None
        server.stop()
        down_ms = int(time.time() * 1000)
        time.sleep(OUTAGE_S)
        server = server.restarted()
        up_ms = int(time.time() * 1000)
        target = up_ms - up_ms % 5000 + 10_000
        wait_for(lambda: (ledger.last_completed("clock") or 0) >= target, 90,
                 "the slots after the restart")
        time.sleep(2)
    finally:
        for proc in procs:
            proc.terminate()
        server.stop()
    runs = [int(e["at"]) for e in procs[0].events("run finished")]
    expected = list(range(first, target + 1, 5000))
    assert sorted(set(runs) & set(expected)) == expected, procs[0].log_path.read_text()[-4000:]
    assert len(runs) == len(set(runs)), "a slot ran twice"
    assert raw_sample_times(prometheus.url, f'openanomaly_anomaly_score{{failover="{tag}"}}',
                            first, target) == expected
    # What the outage delayed: slots due while Redis was down start late, the rest on time.
    lags = {int(e["slot"]): int(e["lag_ms"]) for e in procs[0].events("run started")}
    print(f"outage {(up_ms - down_ms) / 1000:.1f}s; start lag per slot (slot time from the "
          "outage's start: lag): " + ", ".join(
              f"{(s - down_ms) / 1000:+.0f}s: {lag / 1000:.1f}s"
              for s, lag in sorted(lags.items()) if s >= first))
    # A slot due during the outage starts once Redis is back, and only then.
    during = [slot for slot in lags if down_ms < slot < up_ms - 1000]
    assert during, lags
    assert all(lags[slot] >= up_ms - slot - 1000 for slot in during), lags
