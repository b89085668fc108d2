"""In-process scheduler for the single-machine default: a timer loop and a thread pool."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from openanomaly.adapters.http_retry import full_jitter
from openanomaly.domain.errors import OpenAnomalyError, is_retryable
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.slots import latest_due, plan_catch_up
from openanomaly.ports import ConfigStore, RunPipeline, SlotLedger, Telemetry

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


class EmbeddedScheduler:
    """Fires each enabled pipeline at its slots (plus its delay) with the slot as ``at``.

    A pipeline never runs twice at once. With a ``ledger`` (a durable record of completed
    slots) nothing is lost: each firing runs every slot due since the last completed one,
    oldest first, within ``catch_up_horizon_ms`` (older ones are counted as skipped), and
    a restart catches up at once, as the Celery deployment does. Without one, a slot that
    comes due while the previous run still goes is skipped, and after a pause only the
    latest due slot runs. The store is re-read every tick, so edits take effect.
    """

    def __init__(
        self, store: ConfigStore, max_workers: int = 2, clock: Callable[[], int] = _now_ms,
        tick_seconds: float = 1.0, max_retries: int = 5, retry_backoff_max: float = 300.0,
        ledger: SlotLedger | None = None, catch_up_horizon_ms: int = 3_600_000,
        retry_window_s: float = 60.0, telemetry: Telemetry | None = None,
    ) -> None:
        self.telemetry = telemetry
        self.store = store
        self.max_workers = max_workers
        self.max_retries = max_retries
        self.retry_backoff_max = retry_backoff_max
        self.retry_window_s = retry_window_s
        self.ledger = ledger
        self.catch_up_horizon_ms = catch_up_horizon_ms
        self.clock = clock
        self.tick_seconds = tick_seconds
        self._stop = threading.Event()
        self._next: dict[str, int] = {}
        self._running: dict[str, Future[object]] = {}

    def stop(self) -> None:
        self._stop.set()

    def run(self, run_pipeline: RunPipeline) -> None:
        pipelines = [p for p in self.store.list_pipelines() if p.enabled]
        log.info("scheduler started", extra={"pipelines": len(pipelines),
                                             "workers": self.max_workers,
                                             "catch_up": self.ledger is not None})
        with ThreadPoolExecutor(self.max_workers, thread_name_prefix="pipeline") as pool:
            while not self._stop.is_set():
                self._tick(pool, run_pipeline)
                self._stop.wait(self._sleep_seconds())
            log.info("scheduler stopping; waiting for running pipelines",
                     extra={"running": sum(not f.done() for f in self._running.values())})
        log.info("scheduler stopped")

    def _tick(self, pool: ThreadPoolExecutor, run_pipeline: RunPipeline) -> None:
        now = self.clock()
        enabled = {p.name: p for p in self.store.list_pipelines() if p.enabled}
        for name in set(self._next) - set(enabled):
            del self._next[name]
        for name, spec in enabled.items():
            schedule = spec.schedule_spec
            if name not in self._next:
                recorded = self.ledger is not None and \
                    self.ledger.last_completed(name) is not None
                # A pipeline with completed slots on record catches up at once (a restart);
                # a new one starts with its next slot.
                self._next[name] = (latest_due(schedule, now - spec.delay_ms) if recorded
                                    else schedule.next_slot(now - spec.delay_ms))
                if not recorded:
                    continue
            if self._next[name] + spec.delay_ms > now:
                continue
            slots = self._due_slots(spec, now)
            self._next[name] = schedule.next_slot(latest_due(schedule, now - spec.delay_ms))
            previous = self._running.get(name)
            if previous is not None and not previous.done():
                log.warning("previous run still going; slot skipped" if self.ledger is None
                            else "previous run still going; the next firing catches up",
                            extra={"pipeline": name, "slot": slots[-1] if slots else None})
                continue
            if slots:
                self._running[name] = pool.submit(self._run_slots, run_pipeline, spec, slots)

    def _due_slots(self, spec: PipelineSpec, now: int) -> list[int]:
        schedule, due_at = spec.schedule_spec, now - spec.delay_ms
        if self.ledger is None:
            slot, missed = self._next[spec.name], 0
            while (following := schedule.next_slot(slot)) <= due_at:
                slot, missed = following, missed + 1
            if missed:
                log.warning("slots missed while paused; running the latest",
                            extra={"pipeline": spec.name, "missed": missed})
            return [slot]
        plan = plan_catch_up(schedule, self.ledger.last_completed(spec.name), due_at,
                             self.catch_up_horizon_ms)
        if plan.skipped:
            self.ledger.record_skipped(spec.name, plan.skipped)
            log.warning("missed slots beyond the catch-up horizon; not run", extra={
                "pipeline": spec.name, "skipped": plan.skipped,
                "horizon_ms": self.catch_up_horizon_ms})
        if len(plan.slots) > 1:
            log.info("catching up missed slots", extra={
                "pipeline": spec.name, "slots": len(plan.slots), "oldest": plan.slots[0]})
        if self.telemetry is not None:
            self.telemetry.observe_slots(spec.name, max(0, len(plan.slots) - 1), plan.skipped)
        return plan.slots

    def _run_slots(self, run_pipeline: RunPipeline, spec: PipelineSpec,
                   slots: list[int]) -> None:
        """Each slot in order; the ledger records each success and the last failure."""
        for slot in slots:
            if self._stop.is_set():
                return
            if self.telemetry is not None:
                self.telemetry.observe_lag(spec.name,
                                           (self.clock() - slot - spec.delay_ms) / 1000)
            error = self._guarded(run_pipeline, spec, slot)
            if self.ledger is None:
                continue
            try:
                if error is None:
                    self.ledger.complete(spec.name, slot)
                else:
                    self.ledger.record_error(spec.name, slot, error)
            except Exception as exc:  # the ledger's disk: the run itself is done
                log.error("could not record the slot", extra={
                    "pipeline": spec.name, "slot": slot, "error": str(exc)})

    def _guarded(self, run_pipeline: RunPipeline, spec: PipelineSpec,
                 slot: int) -> BaseException | None:
        """Run one slot; None when it succeeded, else its last error. A retryable error
        is retried with full-jitter backoff for at least ``max_retries`` retries and
        ``retry_window_s`` seconds (a database restart), until the service stops."""
        fields: dict[str, object] = {"pipeline": spec.name, "slot": slot}
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                run_pipeline(spec, slot)
                return None
            except OpenAnomalyError as exc:
                within = attempt < self.max_retries or \
                    time.monotonic() - started < self.retry_window_s
                retry = is_retryable(exc) and within
                (log.warning if retry else log.error)(
                    "run failed; will retry" if retry else "run failed; not retried",
                    extra={**fields, "error": str(exc), "kind": type(exc).__name__,
                           "retries": attempt})
                if not retry:
                    return exc
                error: BaseException = exc
            except Exception as exc:
                # Keep the service alive for the other pipelines, with the traceback in the log.
                log.exception("run crashed", extra={**fields, "kind": type(exc).__name__})
                return exc
            if self._stop.wait(full_jitter(attempt, 1.0, self.retry_backoff_max)):
                return error
            attempt += 1

    def _sleep_seconds(self) -> float:
        if not self._next:
            return self.tick_seconds
        soonest = min(self._next.values())
        return max(0.05, min(self.tick_seconds, (soonest - self.clock()) / 1000))
