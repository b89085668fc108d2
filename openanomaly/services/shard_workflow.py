"""Sharded slots: one slot of a large pipeline scored by every worker at once.

The worker that gets a slot's task reads the slot once (query and calibration history,
with its context cache) and, when it holds more than ``shard_series`` series, splits it
(domain/shards.py): each shard's rows go to the ShardStore and a shard task is queued.
The reading worker keeps the slot's claim, so another delivery of the slot does not read
it again while its shards run. Each shard task then:

1. is skipped when the slot or the shard is done (a duplicate or a redelivery), or when
   another worker holds the shard's claim; a redelivery of itself takes its claim over;
2. scores and writes its series from the stored rows, without reading the database;
3. marks the shard done in the ledger, and the last shard to finish marks the slot done
   with the summary of all shards, releasing the reading worker's claim.

A failed shard is recorded, its claim released and, when the error allows, retried. A
slot whose shards are not all done when the reading worker's claim expires is read again
by a later dispatch, which queues only the shards not done, split as the first time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openanomaly.domain.errors import ShardDataMissing, UnknownPipeline, is_retryable
from openanomaly.domain.pipeline import Mode
from openanomaly.domain.shards import partition, shard_count, shard_data, shard_key
from openanomaly.domain.slots import ledger_key
from openanomaly.ports import (
    ConfigStore,
    ModelEngine,
    RunLog,
    ShardStore,
    SlotLedger,
    Telemetry,
    TSDBClient,
)
from openanomaly.services import run_status, runs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardTask:
    """One shard of one slot, as queued."""

    pipeline: str
    at_ms: int
    mode: Mode | None
    index: int
    count: int
    reader: str
    """The task id of the slot's task, which holds the slot's claim."""


SendShard = Callable[[ShardTask], object]


@dataclass(frozen=True)
class Sharding:
    """How a worker splits large slots: shards of about ``series`` series, handed over
    through ``store`` and queued with ``send``."""

    series: int
    store: ShardStore
    send: SendShard


def hand_out(read: runs.SlotRead, key: str, task_id: str, mode: Mode | None,
             ledger: SlotLedger, sharding: Sharding, run_log: RunLog | None = None,
             telemetry: Telemetry | None = None) -> dict[str, Any]:
    """Split a slot that was read into shards, store each shard not done yet and queue
    its task. Returns the JSON-able summary of the slot's task; ``telemetry`` counts it
    as a run of outcome ``sharded`` with the read's stages and series."""
    spec, batch, slot = read.spec, read.batch, read.result.at_ms
    count = sharding.store.plan(key, slot, shard_count(batch.n_series, sharding.series))
    rows_of = partition(batch.labels, count)
    # Empty shards are done before any task is queued: the last shard to finish must
    # find every other one done.
    for index, rows in enumerate(rows_of):
        if rows.size == 0:
            ledger.complete(shard_key(key, index, count), slot)
    queued = 0
    for index, rows in enumerate(rows_of):
        if rows.size == 0 or ledger.done(shard_key(key, index, count), slot):
            continue
        sharding.store.put(key, slot, index, shard_data(batch, read.history, rows))
        sharding.send(ShardTask(spec.name, slot, mode, index, count, task_id))
        queued += 1
    log.info("slot split into shards", extra={
        "pipeline": spec.name, "slot": slot, "series": batch.n_series, "shards": count,
        "queued": queued, "task_id": task_id})
    # A slot read again after all its shards finished (its completion was lost) ends here.
    complete_if_all_done(spec.name, key, slot, count, task_id, ledger, sharding.store,
                         run_log)
    seconds = round(time.perf_counter() - read.started, 3)
    if telemetry is not None:
        telemetry.observe_run(spec.name, "sharded", seconds, read.clock.stages,
                              batch.n_series, 0)
    return {"status": "sharded", "pipeline": spec.name, "at_ms": slot,
            "series": batch.n_series, "shards": count, "queued": queued, "seconds": seconds,
            "stage_seconds": dict(read.clock.stages), "part_seconds": dict(read.clock.parts)}


def execute_shard(
    task: ShardTask, task_id: str, retries: int, max_retries: int, store: ConfigStore,
    ledger: SlotLedger, shards: ShardStore, tsdb: TSDBClient, engine: ModelEngine,
    claim_ttl_ms: int, run_log: RunLog | None = None, telemetry: Telemetry | None = None,
) -> dict[str, Any]:
    """Score one shard unless it (or its slot) is done, claimed elsewhere or unknown."""
    try:
        spec = store.get_pipeline(task.pipeline)
    except UnknownPipeline:
        log.warning("unknown pipeline; stale shard task dropped",
                    extra={"pipeline": task.pipeline, "at": task.at_ms, "task_id": task_id})
        return {"status": "dropped", "pipeline": task.pipeline, "at_ms": task.at_ms}
    slot = task.at_ms
    key = ledger_key(spec, task.mode)
    own = shard_key(key, task.index, task.count)
    fields = {"pipeline": spec.name, "slot": slot, "shard": task.index,
              "shards": task.count, "task_id": task_id}
    skipped = {"status": "skipped", "pipeline": spec.name, "at_ms": slot,
               "shard": task.index}
    if ledger.done(key, slot) or ledger.done(own, slot):
        log.info("shard already done; skipped", extra=fields)
        return {**skipped, "reason": "done"}
    if not ledger.claim(own, slot, task_id, claim_ttl_ms):
        owner = ledger.claimed_by(own, slot)
        if owner != task_id:
            log.info("shard being run by another worker; skipped",
                     extra={**fields, "owner": owner})
            return {**skipped, "reason": "claimed"}
    log.info("shard started", extra={**fields, "retries": retries})
    completed = False
    try:
        data = shards.get(key, slot, task.index)
        if data is None:
            raise ShardDataMissing(
                f"pipeline {spec.name!r}: the data of shard {task.index} of slot {slot} "
                f"expired before a worker ran it; the slot is read again once its claim "
                f"expires. Add workers or raise scheduler.shard_series if this repeats")
        read = runs.shard_read(spec, slot, task.mode, data)
        # A shard is not the pipeline's run: its status is the slot's, recorded when the
        # last shard finishes. It counts as a run that read no series from the database.
        result = run_status.failure_recorded(
            None, spec.name, slot, lambda: runs.score_and_write(read, tsdb, engine),
            telemetry=telemetry)
        if telemetry is not None:
            telemetry.observe_run(spec.name, result.status, result.seconds,
                                  result.stage_seconds, 0, result.samples_written)
        ledger.complete(own, slot, task_id)
        completed = True
    except Exception as exc:
        ledger.record_error(key, slot, exc)
        retry = is_retryable(exc) and retries < max_retries
        (log.warning if retry else log.error)(
            "shard failed; will retry" if retry else "shard failed; not retried",
            extra={**fields, "error": str(exc), "kind": type(exc).__name__})
        raise
    finally:
        if not completed:
            ledger.release(own, slot, task_id)
    output = result.as_json()
    shards.finish(key, slot, task.index, output)
    own_mode = task.mode is None or task.mode == spec.mode
    complete_if_all_done(spec.name, key, slot, task.count, task.reader, ledger, shards,
                         run_log if own_mode else None)
    return {**output, "shard": task.index, "shards": task.count}


def complete_if_all_done(pipeline: str, key: str, slot: int, count: int, reader: str,
                         ledger: SlotLedger, shards: ShardStore,
                         run_log: RunLog | None) -> bool:
    """Mark the slot done once every shard is; True when this call did."""
    if ledger.done(key, slot):
        return False
    if not all(ledger.done(shard_key(key, index, count), slot) for index in range(count)):
        return False
    total = combine(pipeline, slot, list(shards.summaries(key, slot).values()))
    ledger.complete(key, slot, reader)
    run_status.record_success(run_log, total)
    log.info("sharded slot done", extra={
        "pipeline": total.pipeline, "slot": slot, "shards": count, "series": total.series,
        "status": total.status, "samples": total.samples_written})
    return True


def combine(pipeline: str, slot: int, summaries: list[dict[str, Any]]) -> runs.RunResult:
    """One run's figures from its shards' (each holds different series)."""
    total = runs.RunResult(pipeline, slot)
    for one in summaries:
        part = runs.RunResult.from_json(one)
        total.add(part)
        total.seconds += part.seconds
        if part.status == "already_written":
            total.status = "already_written"
    total.settle()
    return total
