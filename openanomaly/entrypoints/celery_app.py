"""The Celery app: workers run each pipeline's scheduled slots from a Redis queue.

``celery -A openanomaly.entrypoints.celery_app worker`` reads the configuration named by
OPENANOMALY_CONFIG_FILE when Celery first needs it; ``openanomaly worker`` hands over the
configuration it already loaded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any, NoReturn

from celery import Celery, Task, signals
from celery.utils.time import get_exponential_backoff_interval

from openanomaly.adapters.redis_connection import redis_url, tls_options
from openanomaly.adapters.scheduler.redbeat_leader import LeaderScheduler
from openanomaly.adapters.scheduler.redbeat_sync import RedBeatReconciler
from openanomaly.bootstrap import (
    BeatMetrics,
    HealthServer,
    Worker,
    bootstrap_beat,
    bootstrap_worker,
    build_telemetry,
    endpoint_registry,
    health_server,
    process_exited,
    scheduler_readiness,
    use_multiprocess,
)
from openanomaly.config import AppConfig, load_config
from openanomaly.domain.errors import is_retryable
from openanomaly.domain.pipeline import Mode
from openanomaly.entrypoints.logging_setup import setup_logging
from openanomaly.services.shard_workflow import ShardTask
from openanomaly.services.slot_workflow import Delivery

log = logging.getLogger(__name__)

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


def celery_settings(config: AppConfig) -> dict[str, Any]:
    url = redis_url(config.redis)
    scheduler = config.scheduler
    tls = tls_options(config.redis)
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
        # Set on every task when it is created (after this configuration), so the retry
        # policy comes from the config, not from _TASK_OPTIONS.
        "task_annotations": {
            "*": {"retry_backoff_max": max(1, round(scheduler.retry_backoff_max)),
                  "max_retries": scheduler.max_retries},
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
    worker: Worker


_runtime: _Runtime | None = None


def runtime() -> Worker:
    """The adapters of this process, built on first use; prefork children each build
    their own (HTTP clients and models are not shared across fork)."""
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        _runtime = _Runtime(os.getpid(), bootstrap_worker(current_config(),
                                                          telemetry=build_telemetry()))
    return _runtime.worker


def _close_runtime(**_: Any) -> None:
    # A pool process that exits closes its HTTP clients and unloads its models; its live
    # gauges (the model cache) leave the worker's metrics with it.
    if _runtime is not None and _runtime.pid == os.getpid():
        _runtime.worker.close()
    process_exited(os.getpid())


signals.worker_process_shutdown.connect(_close_runtime, weak=False)

# The worker's metrics endpoint, served by the main process from every pool process's
# files (prometheus_client's multiprocess mode).
_endpoint: HealthServer | None = None


def _forget_endpoint(**_: Any) -> None:
    # A forked pool process inherits the endpoint's listening socket; only the main
    # process answers on it.
    if _endpoint is not None:
        _endpoint.server.socket.close()


signals.worker_process_init.connect(_forget_endpoint, weak=False)


def retry_or_raise(task: Task, error: Exception) -> NoReturn:
    """Retry the task with capped full-jitter backoff when the error says retrying can
    help (``retryable``); otherwise, or once retries run out, fail with the error."""
    if not is_retryable(error):
        raise error
    countdown = get_exponential_backoff_interval(
        factor=1, retries=task.request.retries, maximum=task.retry_backoff_max,
        full_jitter=True)
    raise task.retry(exc=error, countdown=countdown)


def execute(task: Task, pipeline: str, at_ms: int, mode: Mode | None) -> dict[str, Any]:
    delivery = Delivery(pipeline, int(at_ms), mode, str(task.request.id),
                        task.request.retries, task.max_retries or 0)
    try:
        return runtime().execute(delivery, _send_shard)
    except Exception as exc:
        retry_or_raise(task, exc)


def _send_shard(shard: ShardTask) -> object:
    return run_shard.apply_async(args=[
        shard.pipeline, shard.at_ms, None if shard.mode is None else str(shard.mode),
        shard.index, shard.count, shard.reader])


_TASK_OPTIONS: dict[str, Any] = {
    "bind": True,
    # retry_backoff_max and max_retries come from celery_settings' task_annotations: a
    # value here would win over the configured one.
}


def _run_anomaly_check(self: Task, pipeline: str, at_ms: int) -> dict[str, Any]:
    return execute(self, pipeline, at_ms, Mode.anomaly)


def _run_forecast(self: Task, pipeline: str, at_ms: int) -> dict[str, Any]:
    return execute(self, pipeline, at_ms, Mode.forecast)


def _run_pipeline(self: Task, pipeline: str, at_ms: int) -> dict[str, Any]:
    return execute(self, pipeline, at_ms, None)


def _run_shard(self: Task, pipeline: str, at_ms: int, mode: str | None, index: int,
               count: int, reader: str) -> dict[str, Any]:
    shard = ShardTask(pipeline, int(at_ms), None if mode is None else Mode(mode), int(index),
                      int(count), reader)
    try:
        return runtime().execute_shard(shard, str(self.request.id), self.request.retries,
                                       self.max_retries or 0)
    except Exception as exc:
        retry_or_raise(self, exc)


# Registered by call, not decorator syntax: Celery's decorators are untyped.
run_anomaly_check = app.task(name="openanomaly.run_anomaly_check", **_TASK_OPTIONS)(
    _run_anomaly_check)
run_forecast = app.task(name="openanomaly.run_forecast", **_TASK_OPTIONS)(_run_forecast)
run_pipeline = app.task(name="openanomaly.run_pipeline", **_TASK_OPTIONS)(_run_pipeline)
run_shard = app.task(name="openanomaly.run_shard", **_TASK_OPTIONS)(_run_shard)


def start_worker(config: AppConfig, concurrency: int | None, log_level: str) -> None:
    """Run a worker in this process until SIGTERM (warm shutdown) or SIGINT; its metrics,
    /healthz and /readyz on metrics.host:metrics.port."""
    global _endpoint
    use_config(config)
    use_multiprocess()
    _endpoint = health_server(config, endpoint_registry(), scheduler_readiness(config))
    # The pid keeps two workers on one machine apart in status and remote control.
    argv = ["worker", f"--loglevel={log_level}",
            f"--hostname=openanomaly-{os.getpid()}@{socket.gethostname()}"]
    if concurrency is not None:
        argv.append(f"--concurrency={concurrency}")
    log.info("worker starting", extra={"concurrency": concurrency,
                                       "broker": redis_url(config.redis.model_copy(
                                           update={"password": None}))})
    try:
        app.worker_main(argv)
    finally:
        if _endpoint is not None:
            _endpoint.close()


# --- dispatch: beat fires this on each pipeline's schedule --------------------------------

def _send_run(pipeline: str, slot_ms: int, countdown: float) -> object:
    return run_pipeline.apply_async(args=[pipeline, slot_ms], countdown=countdown or None)


def _dispatch(self: Task, pipeline: str) -> dict[str, Any]:
    return runtime().dispatch(pipeline, _send_run, str(self.request.id))


# Not retried: the next firing plans again from the ledger, so nothing is lost.
dispatch = app.task(name="openanomaly.dispatch", bind=True)(_dispatch)


# --- beat ----------------------------------------------------------------------------------

class BeatScheduler(LeaderScheduler):
    """The beat scheduler, set as ``beat_scheduler`` so plain ``celery beat`` uses it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reconcile_interval_s = current_config().scheduler.reconcile_interval

    def make_reconciler(self) -> RedBeatReconciler:
        return RedBeatReconciler(self.app, bootstrap_beat(current_config()))

    # Set by start_beat; plain `celery beat` reports nothing.
    telemetry: BeatMetrics | None = None


BEAT_SCHEDULER = f"{__name__}:BeatScheduler"


def beat_max_interval(config: AppConfig) -> float:
    # The leader must extend its lock well within the timeout, so it never sleeps longer.
    return max(1.0, config.scheduler.lock_timeout / 3)


def start_beat(config: AppConfig, log_level: str) -> None:
    """Run beat in this process until SIGTERM; leader or standby (see redbeat_leader).
    Its metrics, /healthz and /readyz on metrics.host:metrics.port."""
    use_config(config)
    BeatScheduler.telemetry = telemetry = BeatMetrics()
    endpoint = health_server(config, telemetry.registry, scheduler_readiness(config))
    # Celery's SIGTERM handler ends beat with SystemExit after saving the schedule.
    try:
        with contextlib.suppress(SystemExit):
            app.Beat(scheduler=BEAT_SCHEDULER, loglevel=log_level,
                     max_interval=beat_max_interval(config)).run()
    finally:
        if endpoint is not None:
            endpoint.close()
