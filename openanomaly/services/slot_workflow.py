"""The distributed workflow: each slot of each pipeline runs once, whichever worker gets it.

Beat fires ``plan_due_slots`` on each pipeline's schedule; it queues every slot due since
the last completed one (catch-up after a failover or a stretch without workers). A worker
then calls ``execute_slot`` for each queued slot:

1. a slot the ledger records as done is skipped (a duplicate or redelivered task);
2. the worker claims the slot for longer than a task may run; a slot claimed by another
   worker is skipped, but the same task id is this task redelivered after its worker died,
   which takes its own claim over;
3. the run's success marks the slot done (and moves last-completed forward);
4. any failure is recorded with its type and message and the claim released, so a retry
   or a later task can run the slot; whether to retry is the error's own ``retryable``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openanomaly.domain.errors import UnknownPipeline, is_retryable
from openanomaly.domain.pipeline import Mode, PipelineSpec
from openanomaly.domain.slots import CatchUp, ledger_key, plan_catch_up
from openanomaly.ports import ConfigStore, ModelEngine, RunLog, SlotLedger, Telemetry, TSDBClient
from openanomaly.services import run_status, runs, shard_workflow
from openanomaly.services.context_cache import ContextCache

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Delivery:
    """One delivery of a slot's task by the queue."""

    pipeline: str
    at_ms: int
    mode: Mode | None
    """None: the pipeline's own mode."""
    task_id: str
    retries: int = 0
    """Retries of this task so far."""
    max_retries: int = 0


def execute_slot(
    delivery: Delivery, store: ConfigStore, ledger: SlotLedger, tsdb: TSDBClient,
    engine: ModelEngine, claim_ttl_ms: int, clock: Callable[[], int] = _now_ms,
    run_log: RunLog | None = None, telemetry: Telemetry | None = None,
    contexts: ContextCache | None = None, sharding: shard_workflow.Sharding | None = None,
) -> dict[str, Any]:
    """Run one slot of one pipeline unless it is done, claimed elsewhere or unknown. With
    ``sharding``, a slot of more series than it allows is read here and its shards queued
    (services/shard_workflow.py).

    Returns a JSON-able summary (``status``: the run's own status, ``skipped``,
    ``dropped`` or ``sharded``); re-raises the run's error after recording it in the
    ledger.
    """
    try:
        spec = store.get_pipeline(delivery.pipeline)
    except UnknownPipeline:
        # A task queued before the pipeline was removed: retrying can never succeed.
        log.warning("unknown pipeline; stale task dropped", extra={
            "pipeline": delivery.pipeline, "at": delivery.at_ms, "task_id": delivery.task_id})
        return {"status": "dropped", "pipeline": delivery.pipeline, "at_ms": delivery.at_ms}
    slot = runs.slot_of(spec, int(delivery.at_ms))
    key = ledger_key(spec, delivery.mode)
    fields = {"pipeline": spec.name, "slot": slot, "task_id": delivery.task_id,
              "mode": str(delivery.mode or spec.mode)}
    skipped = {"status": "skipped", "pipeline": spec.name, "at_ms": slot}
    if ledger.done(key, slot):
        log.info("slot already done; skipped", extra=fields)
        return {**skipped, "reason": "done"}
    if not ledger.claim(key, slot, delivery.task_id, claim_ttl_ms):
        owner = ledger.claimed_by(key, slot)
        if owner != delivery.task_id:
            log.info("slot being run by another worker; skipped",
                     extra={**fields, "owner": owner})
            return {**skipped, "reason": "claimed"}
    # How late the run starts against the time it was due (its slot plus the pipeline's
    # delay): the queueing delay an operator sizes the worker pool by.
    lag_ms = clock() - (slot + spec.delay_ms)
    log.info("run started", extra={**fields, "lag_ms": lag_ms, "retries": delivery.retries})
    if telemetry is not None and delivery.retries == 0:
        # Retries start late by their backoff, not by the queue.
        telemetry.observe_lag(spec.name, lag_ms / 1000)
    completed = handed_out = False
    # Runs of another mode (a backfill through the queue) are not the pipeline's status.
    own_mode = delivery.mode is None or delivery.mode == spec.mode
    status_log = run_log if own_mode else None
    try:
        read = run_status.failure_recorded(
            status_log, spec.name, slot,
            lambda: runs.read_slot(spec, slot, tsdb, delivery.mode, contexts), clock, telemetry)
        if sharding is not None and read.batch.n_series > sharding.series:
            summary = shard_workflow.hand_out(read, key, delivery.task_id, delivery.mode,
                                              ledger, sharding, status_log, telemetry)
            # The claim stays until the last shard completes the slot (or expires).
            handed_out = True
            return summary
        result = run_status.recorded(status_log, spec.name, slot,
                                     lambda: runs.score_and_write(read, tsdb, engine), clock,
                                     telemetry)
        ledger.complete(key, slot, delivery.task_id)
        completed = True
    except Exception as exc:
        ledger.record_error(key, slot, exc)
        retry = is_retryable(exc) and delivery.retries < delivery.max_retries
        (log.warning if retry else log.error)(
            "run failed; will retry" if retry else "run failed; not retried",
            extra={**fields, "error": str(exc), "kind": type(exc).__name__,
                   "retries": delivery.retries, "max_retries": delivery.max_retries})
        raise
    finally:
        if not completed and not handed_out:
            ledger.release(key, slot, delivery.task_id)
    return result.as_json()


SendRun = Callable[[str, int, float], object]
"""Queues one run: pipeline, slot (ms) and countdown (s)."""


def plan_due_slots(
    spec: PipelineSpec, ledger: SlotLedger, now_ms: int, horizon_ms: int, send: SendRun,
) -> CatchUp:
    """Send a run for each slot due since the last completed one, oldest first.

    A beat entry can only send fixed arguments, so the slot times are worked out here, from
    the ledger: a failover gap or a stretch without workers is caught up by the next
    firing, within ``horizon_ms``; older misses are only counted.
    """
    plan = plan_catch_up(spec.schedule_spec, ledger.last_completed(spec.name), now_ms,
                         horizon_ms)
    fields = {"pipeline": spec.name, "now": now_ms}
    if plan.skipped:
        ledger.record_skipped(spec.name, plan.skipped)
        log.warning("missed slots beyond the catch-up horizon; not run",
                    extra={**fields, "skipped": plan.skipped, "horizon_ms": horizon_ms})
    for slot in plan.slots:
        # Only the newest slot can still be waiting for its data to arrive; older ones
        # are past their delay already.
        newest = slot == plan.slots[-1]
        countdown = max(0, slot + spec.delay_ms - now_ms) / 1000 if newest else 0.0
        send(spec.name, slot, countdown)
    if len(plan.slots) > 1:
        log.info("catching up missed slots", extra={
            **fields, "slots": len(plan.slots), "oldest": plan.slots[0]})
    return plan


def dispatch(
    pipeline: str, store: ConfigStore, ledger: SlotLedger, horizon_ms: int, send: SendRun,
    task_id: str = "", clock: Callable[[], int] = _now_ms, telemetry: Telemetry | None = None,
) -> dict[str, Any]:
    """What beat's dispatch task does for one pipeline: plan and queue its due slots."""
    try:
        spec = store.get_pipeline(pipeline)
    except UnknownPipeline:
        # The entry outlived its pipeline until the next reconcile removes it.
        log.warning("unknown pipeline; dispatch dropped",
                    extra={"pipeline": pipeline, "task_id": task_id})
        return {"status": "dropped", "pipeline": pipeline}
    plan = plan_due_slots(spec, ledger, clock(), horizon_ms, send)
    if telemetry is not None:
        telemetry.observe_slots(spec.name, max(0, len(plan.slots) - 1), plan.skipped)
    return {"status": "ok", "pipeline": pipeline, "slots": plan.slots, "skipped": plan.skipped}
