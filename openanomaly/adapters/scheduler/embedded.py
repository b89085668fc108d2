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
from openanomaly.ports import ConfigStore, RunPipeline

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


class EmbeddedScheduler:
    """Fires each enabled pipeline at its slots (plus its delay) with the slot as ``at``.

    A pipeline never runs twice at once: a slot that comes due while the previous run is
    still going is skipped and logged. After a pause (a suspended machine), only the latest
    due slot runs. The store is re-read every tick, so edits to pipelines take effect.
    """

    def __init__(
        self, store: ConfigStore, max_workers: int = 2, clock: Callable[[], int] = _now_ms,
        tick_seconds: float = 1.0, max_retries: int = 5, retry_backoff_max: float = 300.0,
    ) -> None:
        self.store = store
        self.max_workers = max_workers
        self.max_retries = max_retries
        self.retry_backoff_max = retry_backoff_max
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
                                             "workers": self.max_workers})
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
                self._next[name] = schedule.next_slot(now - spec.delay_ms)
                continue
            slot = self._next[name]
            if slot + spec.delay_ms > now:
                continue
            missed = 0
            while (following := schedule.next_slot(slot)) + spec.delay_ms <= now:
                slot, missed = following, missed + 1
            if missed:
                log.warning("slots missed while paused; running the latest",
                            extra={"pipeline": name, "missed": missed})
            self._next[name] = schedule.next_slot(slot)
            previous = self._running.get(name)
            if previous is not None and not previous.done():
                log.warning("previous run still going; slot skipped",
                            extra={"pipeline": name, "slot": slot})
                continue
            self._running[name] = pool.submit(self._guarded, run_pipeline, spec, slot)

    def _guarded(self, run_pipeline: RunPipeline, spec: PipelineSpec, slot: int) -> object:
        """Run one slot; retry it while its error is retryable (the error class says so),
        with full-jitter backoff, until it succeeds, retries run out or the service stops."""
        fields: dict[str, object] = {"pipeline": spec.name, "slot": slot}
        for attempt in range(self.max_retries + 1):
            try:
                return run_pipeline(spec, slot)
            except OpenAnomalyError as exc:
                retry = is_retryable(exc) and attempt < self.max_retries
                (log.warning if retry else log.error)(
                    "run failed; will retry" if retry else "run failed; not retried",
                    extra={**fields, "error": str(exc), "kind": type(exc).__name__,
                           "retries": attempt})
                if not retry:
                    return None
            except Exception:
                # Keep the service alive for the other pipelines, with the traceback in the log.
                log.exception("run crashed", extra=fields)
                return None
            if self._stop.wait(full_jitter(attempt, 1.0, self.retry_backoff_max)):
                return None
        return None

    def _sleep_seconds(self) -> float:
        if not self._next:
            return self.tick_seconds
        soonest = min(self._next.values())
        return max(0.05, min(self.tick_seconds, (soonest - self.clock()) / 1000))
