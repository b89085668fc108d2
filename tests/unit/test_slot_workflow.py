"""The distributed workflow (services.slot_workflow) against an in-memory ledger."""

import logging

import numpy as np
import pytest

from openanomaly.adapters.config.yaml_store import YamlConfigStore
from openanomaly.domain.errors import TSDBUnavailable, is_retryable
from openanomaly.domain.pipeline import Mode
from openanomaly.services.slot_workflow import Delivery, dispatch, execute_slot

from .fakes import FakeLedger, FakeTSDB
from .test_runs import ENGINE, STEP, T0, N, periodic, spec

AT = T0 + (N - 1) * STEP
TTL = 60_000


@pytest.fixture
def world():
    store = YamlConfigStore([spec()])
    return store, FakeLedger(), FakeTSDB([periodic({"i": "1"}, noise=1.0)])


def deliver(world, task_id="t1", at=AT, pipeline="p", mode=None, retries=0, max_retries=5,
            tsdb=None, engine=ENGINE):
    store, ledger, source = world
    return execute_slot(Delivery(pipeline, at, mode, task_id, retries, max_retries), store,
                        ledger, tsdb or source, engine, TTL, run_log=store)


def test_a_slot_runs_once_and_a_second_delivery_is_skipped(world):
    _, ledger, tsdb = world
    first = deliver(world, at=AT + 1234)  # off the grid: aligned down like beat sends it
    assert first["status"] == "ok" and first["at_ms"] == AT
    assert ledger.done("p", AT) and ledger.last_completed("p") == AT
    assert ledger.claimed_by("p", AT) is None, "completing releases the claim"
    writes = tsdb.write_calls
    assert deliver(world, task_id="t2") == {"status": "skipped", "reason": "done",
                                            "pipeline": "p", "at_ms": AT}
    assert tsdb.write_calls == writes


def test_a_slot_claimed_by_another_worker_is_skipped_but_a_redelivery_takes_over(world):
    _, ledger, _ = world
    ledger.claim("p", AT, "other-task", TTL)
    assert deliver(world, task_id="t1")["reason"] == "claimed"
    assert not ledger.done("p", AT)
    # The same task id is this task redelivered after its worker died.
    assert deliver(world, task_id="other-task")["status"] == "ok"
    assert ledger.done("p", AT)


def test_the_claim_of_a_dead_worker_expires(world):
    _, ledger, _ = world
    ledger.claim("p", AT, "dead-task", TTL)
    ledger.now_ms += TTL + 1
    assert deliver(world, task_id="t1")["status"] == "ok"


class DownTSDB(FakeTSDB):
    def query_range(self, query, start_ms, end_ms, step_ms, *, max_series=None):
        raise TSDBUnavailable("cannot reach the database")


class BrokenEngine:
    def forecast(self, model, request):
        raise ValueError("shapes do not match")


def test_a_retryable_failure_is_recorded_the_claim_freed_and_the_error_raised(world, caplog):
    _, ledger, _ = world
    with caplog.at_level(logging.INFO), pytest.raises(TSDBUnavailable) as caught:
        deliver(world, tsdb=DownTSDB(), retries=1, max_retries=5)
    assert is_retryable(caught.value)
    assert ledger.last_error("p") == {"slot": str(AT), "kind": "TSDBUnavailable",
                                      "error": "cannot reach the database"}
    assert ledger.claimed_by("p", AT) is None and not ledger.done("p", AT)
    assert "run failed; will retry" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO), pytest.raises(TSDBUnavailable):
        deliver(world, tsdb=DownTSDB(), retries=5, max_retries=5)
    assert "run failed; not retried" in caplog.text, "retries are used up"
    store = world[0]
    assert store.run_state("p").failures == 2 and not store.run_state("p").ok
    # The next success clears the error.
    assert deliver(world)["status"] == "ok" and ledger.last_error("p") is None
    assert store.run_state("p").ok and store.run_state("p").last_ok_slot_ms == AT


def test_any_other_exception_is_recorded_with_its_type_and_not_retried(world, caplog):
    _, ledger, _ = world
    with caplog.at_level(logging.INFO), pytest.raises(ValueError) as caught:
        deliver(world, engine=BrokenEngine())
    assert not is_retryable(caught.value)
    assert ledger.last_error("p")["kind"] == "ValueError"
    assert ledger.last_error("p")["error"] == "shapes do not match"
    assert ledger.claimed_by("p", AT) is None
    assert "run failed; not retried" in caplog.text


def test_an_unknown_pipeline_is_dropped(world):
    _, ledger, _ = world
    assert deliver(world, pipeline="gone")["status"] == "dropped"
    assert ledger.last_error("gone") is None


def test_a_run_in_another_mode_keeps_its_own_bookkeeping(world):
    _, ledger, _ = world
    assert deliver(world, mode=Mode.forecast)["status"] == "ok"
    assert ledger.done("p/forecast", AT) and not ledger.done("p", AT)
    assert world[0].run_state("p") is None, "not the pipeline's own runs"
    assert deliver(world, mode=Mode.anomaly)["status"] == "ok", "the pipeline's own mode"
    assert ledger.done("p", AT)


def test_dispatch_queues_missed_slots_and_counts_those_beyond_the_horizon(world):
    store, ledger, _ = world
    schedule_ms = 300_000
    now = (T0 // schedule_ms + 100) * schedule_ms
    ledger.complete("p", now - 20 * schedule_ms)
    sent = []
    answer = dispatch("p", store, ledger, 4 * schedule_ms, lambda *a: sent.append(a),
                      clock=lambda: now)
    slots = [now - k * schedule_ms for k in (4, 3, 2, 1, 0)]
    assert answer == {"status": "ok", "pipeline": "p", "slots": slots, "skipped": 15}
    assert [slot for _, slot, _ in sent] == slots
    assert ledger.skipped("p") == 15
    assert dispatch("gone", store, ledger, schedule_ms, lambda *a: sent.append(a),
                    clock=lambda: now)["status"] == "dropped"
    assert np.all(np.diff([slot for _, slot, _ in sent]) > 0), "oldest first, nothing more"
