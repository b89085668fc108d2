"""Each run folds into its pipeline's RunState: what the status and the UI show."""

from __future__ import annotations

import math

import pytest

from openanomaly.adapters.config.yaml_store import YamlConfigStore
from openanomaly.domain.errors import TSDBError
from openanomaly.domain.run_state import after_failure, after_success, health
from openanomaly.services.run_status import recorded
from openanomaly.services.runs import RunResult


def test_failures_count_up_and_keep_what_succeeded_before():
    ok = after_success(None, "p", 1_000, 1_500, 0.4, 3, 2, 5.0)
    assert ok.last_ok_slot_ms == 1_000 and ok.last_anomaly_ms == 1_000 and ok.health == "ok"
    quiet = after_success(ok, "p", 2_000, 2_500, 0.3, 3, 0, 0.2)
    assert quiet.last_anomaly_ms == 1_000 and quiet.last_anomaly_score == 5.0
    failed = after_failure(after_failure(quiet, "p", 3_000, 3_100, 0.1, "a"), "p", 4_000,
                           4_100, 0.1, "b")
    assert failed.failures == 2 and failed.error == "b" and failed.health == "failing"
    assert failed.last_ok_slot_ms == 2_000 and failed.last_anomaly_ms == 1_000
    again = after_success(failed, "p", 5_000, 5_200, 0.3, 3, 0, math.nan)
    assert again.failures == 0 and again.error == "" and again.max_score is None
    # A catch-up run of an older slot finishing last does not move the last good slot back.
    assert after_success(again, "p", 500, 5_300, 0.1, 3, 0, 0.1).last_ok_slot_ms == 5_000
    assert [health(False, again), health(True, None), health(True, failed)] == [
        "disabled", "never run", "failing"]


def test_a_run_is_recorded_and_its_error_still_propagates():
    store = YamlConfigStore([])
    result = recorded(store, "p", 60_000, lambda: RunResult("p", 60_000, series=2, seconds=0.7),
                      clock=lambda: 61_000)
    assert result.series == 2 and store.run_state("p").seconds == 0.7

    def fails() -> RunResult:
        raise TSDBError("prometheus: connection refused")

    with pytest.raises(TSDBError):
        recorded(store, "p", 120_000, fails, clock=lambda: 121_000)
    state = store.run_state("p")
    assert state.error == "TSDBError: prometheus: connection refused" and state.failures == 1
    assert state.last_ok_slot_ms == 60_000


def test_a_store_that_cannot_record_never_fails_the_run(caplog):
    class Down(YamlConfigStore):
        def record_run(self, state):
            raise ConnectionError("store unreachable")

    result = recorded(Down([]), "p", 60_000, lambda: RunResult("p", 60_000))
    assert result.status == "ok"
    assert "could not record the run's status" in caplog.text
