"""The Celery app: workers run each pipeline's scheduled slots from a Redis queue.

``celery -A openanomaly.entrypoints.celery_app worker`` reads the configuration named by
OPENANOMALY_CONFIG_FILE when Celery first needs it; ``openanomaly worker`` hands over the
configuration it already loaded.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import redis
from celery import Celery, Task, signals
from celery.exceptions import SoftTimeLimitExceeded

from openanomaly.adapters.scheduler.redbeat_leader import LeaderScheduler
from openanomaly.adapters.scheduler.redbeat_sync import RedBeatReconciler
from openanomaly.adapters.scheduler.slot_ledger import SlotLedger
from openanomaly.bootstrap import App, build_app, build_store
from openanomaly.config import AppConfig, RedisSettings, load_config
from openanomaly.domain.errors import (
    ConfigError,
    ModelError,
    PipelineError,
    QueryRejected,
    TSDBError,
    UnknownModel,
    UnknownPipeline,
    WriteRejected,
)
from openanomaly.domain.pipeline import Mode, PipelineSpec
from openanomaly.domain.slots import CatchUp, plan_catch_up
from openanomaly.domain.timeutil import align_down
from openanomaly.entrypoints.logging_setup import setup_logging
from openanomaly.services import runs

log = logging.getLogger(__name__)

RETRYABLE = (TSDBError, ModelError)
# Failures of these kinds repeat identically on every retry: fix the pipeline instead.
FINAL = (ConfigError, PipelineError, QueryRejected, WriteRejected, UnknownModel,
         SoftTimeLimitExceeded)
MAX_RETRIES = 5
# A claim outlives the hard time limit by this much, so a live task never loses its slot
# while a killed one frees it soon after.
CLAIM_MARGIN_S = 60

_config: AppConfig | None = None


def use_config(config: AppConfig) -> None:
    """Use an already loaded configuration instead of reading OPENANOMALY_CONFIG_FILE."""
    global _config
    _config = config


def current_config() -> AppConfig:
    global _config
    if _config is None:
        _config = load_config()
    return _config


def redis_url(settings: RedisSettings) -> str:
    """The Redis URL with the password (kept out of the YAML URL) put into it."""
    parts = urlsplit(settings.url)
    scheme = "rediss" if settings.tls_ca_file and parts.scheme == "redis" else parts.scheme
    netloc = parts.netloc
    if settings.password is not None:
        host = netloc.rsplit("@", 1)[-1]
        user = parts.username or ""
        secret = quote(settings.password.get_secret_value(), safe="")
        netloc = f"{quote(user, safe='')}:{secret}@{host}"
    return urlunsplit((scheme, netloc, parts.path, parts.query, parts.fragment))


def _tls(settings: RedisSettings) -> dict[str, Any] | None:
    if not settings.tls_ca_file:
        return None
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": settings.tls_ca_file}


def redis_client(settings: RedisSettings) -> redis.Redis:
    url = redis_url(settings)
    if url.startswith("rediss:") and settings.tls_ca_file:
        return redis.Redis.from_url(url, ssl_ca_certs=settings.tls_ca_file)
    return redis.Redis.from_url(url)


def celery_settings(config: AppConfig) -> dict[str, Any]:
    url = redis_url(config.redis)
    scheduler = config.scheduler
    tls = _tls(config.redis)
    visibility = scheduler.visibility_timeout
    assert visibility is not None, "filled in by SchedulerSettings"
    settings: dict[str, Any] = {
        "broker_url": url,
        "result_backend": url,
        "redbeat_redis_url": url,
        # Set, even empty, so RedBeat stops reading the broker's transport options.
        "redbeat_redis_options": {},
        # A standby beat takes over once the leader stopped renewing its lock this long.
        "redbeat_lock_timeout": int(scheduler.lock_timeout),
        # Plain `celery -A openanomaly.entrypoints.celery_app beat` gets the same scheduler.
        "beat_scheduler": BEAT_SCHEDULER,
        "beat_max_loop_interval": beat_max_interval(config),
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # A task is acknowledged only once it ran, and given back if its process dies, so
        # a killed worker's slot is redelivered instead of lost.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Each process holds one task at a time; others stay on the queue for idle workers.
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": scheduler.task_soft_time_limit,
        "task_time_limit": scheduler.task_time_limit,
        # Redis redelivers an unacknowledged task after the visibility timeout. It exceeds
        # the longest a task may hold its message (a retry's countdown, then the hard
        # limit; SchedulerSettings checks it) or a running task would be handed to a
        # second worker.
        "broker_transport_options": {
            "visibility_timeout": int(visibility),
            # Every worker sweeps for messages past the visibility timeout (a dead worker's)
            # on a timer of unacked_restore_interval seconds, scanning only on every
            # unacked_restore_throttle-th tick. kombu's 10 s x 10 put a dead worker's task
            # back up to 100 s after its timeout; this ticks every second and scans every
            # visibility_timeout / 10 seconds, 1 to 10. (Older kombu ignores both options.)
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": max(1, min(10, int(visibility // 10))),
        },
        # Read by the autoretry of every task when the task is created (after this
        # configuration), so the cap comes from the config, not from _TASK_OPTIONS.
        "task_annotations": {
            "*": {"retry_backoff_max": max(1, round(scheduler.retry_backoff_max))},
        },
        "broker_connection_retry_on_startup": True,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "result_expires": 86_400,
        "timezone": "UTC",
        "enable_utc": True,
    }
    if tls is not None:
        settings.update(broker_use_ssl=tls, redis_backend_use_ssl=tls,
                        redbeat_redis_use_ssl=tls)
    return settings


app = Celery("openanomaly")
# Evaluated when Celery first reads its configuration, so importing this module needs no
# config file (tests, `openanomaly worker` calling use_config first).
app.add_defaults(lambda: celery_settings(current_config()))


def _setup_logging(loglevel: str | int | None = None, **_: Any) -> None:
    # Connecting this stops Celery from installing its own handlers: one log format.
    config = current_config()
    level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else loglevel
    setup_logging(str(level or config.logging.level).upper(), config.logging.format)


signals.setup_logging.connect(_setup_logging, weak=False)


@dataclass
class _Runtime:
    pid: int
    app: App
    ledger: SlotLedger


_runtime: _Runtime | None = None


def runtime() -> _Runtime:
    """The App and ledger of this process, built on first use; prefork children each
    build their own (HTTP clients and models are not shared across fork)."""
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        config = current_config()
        _runtime = _Runtime(os.getpid(), build_app(config),
                            SlotLedger(redis_client(config.redis)))
    return _runtime


def _claim_ttl_ms() -> int:
    return int((current_config().scheduler.task_time_limit + CLAIM_MARGIN_S) * 1000)


def execute(task: Task, pipeline: str, at_ms: int, mode: Mode | None) -> dict[str, Any]:
    """Run one slot of one pipeline unless it is done, claimed elsewhere or unknown."""
    rt = runtime()
    task_id = str(task.request.id)
    try:
        spec = rt.app.store.get_pipeline(pipeline)
    except UnknownPipeline:
        # A task queued before the pipeline was removed: retrying can never succeed.
        log.warning("unknown pipeline; stale task dropped",
                    extra={"pipeline": pipeline, "at": at_ms, "task_id": task_id})
        return {"status": "dropped", "pipeline": pipeline, "at_ms": at_ms}
    slot = align_down(int(at_ms), spec.step_ms)
    # Tasks of another mode than the pipeline's own keep their own bookkeeping.
    key = spec.name if mode is None or mode == spec.mode else f"{spec.name}/{mode}"
    fields = {"pipeline": spec.name, "slot": slot, "task_id": task_id,
              "mode": str(mode or spec.mode)}
    if rt.ledger.done(key, slot):
        log.info("slot already done; skipped", extra=fields)
        return {"status": "skipped", "reason": "done", "pipeline": spec.name, "at_ms": slot}
    if not rt.ledger.claim(key, slot, task_id, _claim_ttl_ms()):
        owner = rt.ledger.claimed_by(key, slot)
        # The same task id is this task redelivered after its worker died: take over.
        if owner != task_id:
            log.info("slot being run by another worker; skipped",
                     extra={**fields, "owner": owner})
            return {"status": "skipped", "reason": "claimed", "pipeline": spec.name,
                    "at_ms": slot}
    # How late the run starts against the time it was due (its slot plus the pipeline's
    # delay): the queueing delay an operator sizes the worker pool by.
    log.info("run started", extra={
        **fields, "lag_ms": int(time.time() * 1000) - (slot + spec.delay_ms),
        "retries": task.request.retries})
    completed = False
    try:
        result = runs.run_pipeline(spec, slot, rt.app.tsdb, rt.app.engine, mode)
        rt.ledger.complete(key, slot, task_id)
        completed = True
    except FINAL as exc:
        rt.ledger.record_error(key, slot, exc)
        log.error("run failed; not retried", extra={
            **fields, "error": str(exc), "kind": type(exc).__name__})
        raise
    except RETRYABLE as exc:
        rt.ledger.record_error(key, slot, exc)
        log.warning("run failed; will retry", extra={
            **fields, "error": str(exc), "kind": type(exc).__name__,
            "retries": task.request.retries, "max_retries": MAX_RETRIES})
        raise
    finally:
        if not completed:
            rt.ledger.release(key, slot, task_id)
    output = asdict(result)
    if isinstance(output["max_score"], float) and math.isnan(output["max_score"]):
        output["max_score"] = None
    return output


_TASK_OPTIONS: dict[str, Any] = {
    "bind": True,
    "autoretry_for": RETRYABLE,
    "dont_autoretry_for": FINAL,
    "retry_backoff": True,
    # retry_backoff_max (scheduler.retry_backoff_max) comes from celery_settings'
    # task_annotations: a value here would win over the configured one.
    "retry_jitter": True,
    "max_retries": MAX_RETRIES,
}


def _run_anomaly_check(self: Task, pipeline: str, at_ms: int) -> dict[str, Any]:
    return execute(self, pipeline, at_ms, Mode.anomaly)


def _run_forecast(self: Task, pipeline: str, at_ms: int) -> dict[str, Any]:
    return execute(self, pipeline, at_ms, Mode.forecast)


def _run_pipeline(self: Task, pipeline: str, at_ms: int) -> dict[str, Any]:
    return execute(self, pipeline, at_ms, None)


# Registered by call, not decorator syntax: Celery's decorators are untyped.
run_anomaly_check = app.task(name="openanomaly.run_anomaly_check", **_TASK_OPTIONS)(
    _run_anomaly_check)
run_forecast = app.task(name="openanomaly.run_forecast", **_TASK_OPTIONS)(_run_forecast)
run_pipeline = app.task(name="openanomaly.run_pipeline", **_TASK_OPTIONS)(_run_pipeline)


def start_worker(config: AppConfig, concurrency: int | None, loglevel: str) -> None:
    """Run a worker in this process until SIGTERM (warm shutdown) or SIGINT."""
    use_config(config)
    # The pid keeps two workers on one machine apart in status and remote control.
    argv = ["worker", f"--loglevel={loglevel}",
            f"--hostname=openanomaly-{os.getpid()}@{socket.gethostname()}"]
    if concurrency is not None:
        argv.append(f"--concurrency={concurrency}")
    log.info("worker starting", extra={"concurrency": concurrency,
                                       "broker": redis_url(config.redis.model_copy(
                                           update={"password": None}))})
    app.worker_main(argv)


# --- dispatch: beat fires this on each pipeline's schedule --------------------------------
# A RedBeat entry can only send fixed arguments, so the slot times are worked out here, from
# the ledger: every slot since the last completed one, within the catch-up horizon. A beat
# failover gap or a stretch without workers is then caught up by the next dispatch.

SendRun = Callable[[str, int, float], object]
"""Queues one run: pipeline, slot (ms) and countdown (s)."""


def _send_run(pipeline: str, slot_ms: int, countdown: float) -> object:
    return run_pipeline.apply_async(args=[pipeline, slot_ms], countdown=countdown or None)


def dispatch_due_slots(
    spec: PipelineSpec, ledger: SlotLedger, now_ms: int, horizon_ms: int,
    send: SendRun = _send_run,
) -> CatchUp:
    """Send run_pipeline for each slot due since the last completed one, oldest first."""
    plan = plan_catch_up(spec.schedule_spec, ledger.last_completed(spec.name), now_ms,
                         horizon_ms)
    fields = {"pipeline": spec.name, "now": now_ms}
    if plan.skipped:
        # Too old to be worth running: counted so an operator sees how much was lost.
        ledger.client.incrby(f"{ledger.prefix}:slots:{spec.name}:skipped", plan.skipped)
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


def _dispatch(self: Task, pipeline: str) -> dict[str, Any]:
    rt = runtime()
    try:
        spec = rt.app.store.get_pipeline(pipeline)
    except UnknownPipeline:
        # The entry outlived its pipeline until the next reconcile removes it.
        log.warning("unknown pipeline; dispatch dropped",
                    extra={"pipeline": pipeline, "task_id": str(self.request.id)})
        return {"status": "dropped", "pipeline": pipeline}
    horizon_ms = int(current_config().scheduler.catch_up_horizon * 1000)
    plan = dispatch_due_slots(spec, rt.ledger, int(time.time() * 1000), horizon_ms)
    return {"status": "ok", "pipeline": pipeline, "slots": plan.slots,
            "skipped": plan.skipped}


# Not retried: the next firing plans again from the ledger, so nothing is lost.
dispatch = app.task(name="openanomaly.dispatch", bind=True)(_dispatch)


# --- beat ----------------------------------------------------------------------------------

class BeatScheduler(LeaderScheduler):
    """The beat scheduler, set as ``beat_scheduler`` so plain ``celery beat`` uses it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reconcile_interval_s = current_config().scheduler.reconcile_interval

    def make_reconciler(self) -> RedBeatReconciler:
        return RedBeatReconciler(self.app, build_store(current_config()))


BEAT_SCHEDULER = f"{__name__}:BeatScheduler"


def beat_max_interval(config: AppConfig) -> float:
    # The leader must extend its lock well within the timeout, so it never sleeps longer.
    return max(1.0, config.scheduler.lock_timeout / 3)


def start_beat(config: AppConfig, loglevel: str) -> None:
    """Run beat in this process until SIGTERM; leader or standby (see redbeat_leader)."""
    use_config(config)
    # Celery's SIGTERM handler ends beat with SystemExit after saving the schedule.
    with contextlib.suppress(SystemExit):
        app.Beat(scheduler=BEAT_SCHEDULER, loglevel=loglevel,
                 max_interval=beat_max_interval(config)).run()
