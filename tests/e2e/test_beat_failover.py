"""Two `openanomaly beat` processes: kill -9 of the leader, the standby takes over, and every
slot is run exactly once (real Redis, Prometheus and worker)."""

import uuid

import pytest

from tests.processes import failover_once, raw_sample_times
from tests.redis_server import RedisServer

LOCK_TIMEOUT = 6


@pytest.mark.slow
def test_standby_takes_over_after_kill_9_and_no_slot_is_lost_or_run_twice(
        tmp_path, prometheus):
    server = RedisServer(tmp_path)
    tag = uuid.uuid4().hex[:8]
    try:
        result = failover_once(tmp_path / "run", prometheus.url, server.url, tag, LOCK_TIMEOUT)
    finally:
        server.stop()
    assert result.missed == [] and result.duplicated == [], result
    # The standby polls every second and the lock was last extended at most a third of
    # the timeout before the kill.
    assert LOCK_TIMEOUT * 2 / 3 - 1 <= result.gap_s <= LOCK_TIMEOUT + 3, result.gap_s
    written = raw_sample_times(prometheus.url, f'openanomaly_anomaly_score{{failover="{tag}"}}',
                               result.first_slot_ms, result.last_slot_ms)
    assert written == result.expected
