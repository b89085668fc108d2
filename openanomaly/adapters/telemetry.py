"""Self-monitoring with prometheus_client: the telemetry ports' metrics, and a small HTTP
endpoint (/metrics, /healthz, /readyz) for processes without a web server of their own.

Names follow Prometheus' conventions: units in the name, ``_total`` counters, and labels
with bounded values only (pipeline and model names come from the configuration or the
store; series labels never become metric labels).

Processes that fork workers (Celery's prefork pool, gunicorn) use the library's
multiprocess mode: every process writes its values to files in one folder and the
endpoint adds them up. The library picks its mode when it is first imported, so this
module imports it only inside functions, after ``use_multiprocess`` had its say.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds, from a cheap query to a long batch of model calls.
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
            300.0)
_LAG = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
_LOAD = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_REQUEST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def use_multiprocess() -> Path:
    """Make this process and the ones it forks share metrics through files.

    Keeps a folder named by PROMETHEUS_MULTIPROC_DIR (emptied: values of an earlier run
    would be added to this one's), else makes a temporary one, removed at exit. Must run
    before prometheus_client is imported.
    """
    if "prometheus_client.values" in sys.modules and not os.environ.get(MULTIPROC_ENV):
        raise RuntimeError("prometheus_client was imported before multiprocess mode was set")
    named = os.environ.get(MULTIPROC_ENV)
    if named:
        folder = Path(named)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
        return folder
    folder = Path(tempfile.mkdtemp(prefix="openanomaly-metrics-"))
    os.environ[MULTIPROC_ENV] = str(folder)
    owner = os.getpid()

    import atexit

    # Only the process that made the folder removes it; forked children exit through here
    # too.
    def remove() -> None:
        if os.getpid() == owner:
            shutil.rmtree(folder, ignore_errors=True)

    atexit.register(remove)
    return folder


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def process_exited(pid: int) -> None:
    """Drop a finished process's live gauges (multiprocess mode); its counters stay."""
    if multiprocess():
        from prometheus_client import multiprocess as mp

        mp.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def exposition_registry() -> Any:
    """The registry an endpoint serves: every process's values in multiprocess mode, this
    process's metrics and its CPU and memory otherwise (``PrometheusTelemetry`` adds its
    families to it)."""
    from prometheus_client import CollectorRegistry, ProcessCollector, disable_created_metrics
    from prometheus_client import multiprocess as mp

    # A _created sample beside every counter doubles the series for nothing Prometheus
    # needs (it detects resets itself).
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry()
    if multiprocess():
        mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    ProcessCollector(registry=registry)
    return registry


class ModelTelemetryMetrics:
    """A model engine's load times and cache contents (the ModelTelemetry port)."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Gauge, Histogram

        self.load_seconds = Histogram("openanomaly_model_load_duration_seconds",
                                      "Time to load a model into this process.", ["model"],
                                      buckets=_LOAD, registry=registry)
        # Summed over the live processes: each pool process keeps its own cache.
        self.cache_models = Gauge("openanomaly_model_cache_models",
                                  "Models loaded in memory.", registry=registry,
                                  multiprocess_mode="livesum")
        self.cache_bytes = Gauge("openanomaly_model_cache_bytes",
                                 "Parameter bytes of the models loaded in memory.",
                                 registry=registry, multiprocess_mode="livesum")

    def observe_model_load(self, model: str, seconds: float) -> None:
        self.load_seconds.labels(model).observe(seconds)

    def observe_model_cache(self, models: int, size_bytes: int) -> None:
        self.cache_models.set(models)
        self.cache_bytes.set(size_bytes)


class PrometheusTelemetry:
    """Run, model and beat metrics. Under multiprocess mode every process makes its own and
    they are summed at the endpoint; otherwise pass the endpoint's registry."""

    def __init__(self, registry: Any | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = registry if registry is not None else (
            CollectorRegistry() if multiprocess() else exposition_registry())
        r = self.registry
        self.runs = Counter("openanomaly_runs_total", "Runs by pipeline and outcome (ok, "
                            "partial, stale, no_data, already_written, failed).",
                            ["pipeline", "outcome"], registry=r)
        self.run_seconds = Histogram("openanomaly_run_duration_seconds",
                                     "Duration of a run, end to end.", ["pipeline"],
                                     buckets=_SECONDS, registry=r)
        self.stage_seconds = Histogram(
            "openanomaly_run_stage_duration_seconds",
            "Duration of each stage of a run: query, history (calibration read-back), "
            "inference, scoring, write.", ["stage"], buckets=_SECONDS, registry=r)
        self.series = Counter("openanomaly_series_read_total", "Series read by runs.",
                              ["pipeline"], registry=r)
        self.samples = Counter("openanomaly_samples_written_total",
                               "Samples written by runs.", ["pipeline"], registry=r)
        self.errors = Counter("openanomaly_errors_total",
                              "Failures by component (tsdb, model, store, run) and kind.",
                              ["component", "kind"], registry=r)
        self.lag = Histogram("openanomaly_slot_lag_seconds", "How late scheduled runs "
                             "start against their slot plus delay.", ["pipeline"],
                             buckets=_LAG, registry=r)
        self.caught_up = Counter("openanomaly_slots_caught_up_total",
                                 "Missed slots run late.", ["pipeline"], registry=r)
        self.missed = Counter("openanomaly_slots_missed_total", "Missed slots older than "
                              "the catch-up horizon, never run.", ["pipeline"], registry=r)
        self.models = ModelTelemetryMetrics(r)
    # Telemetry (runs)
    def observe_run(self, pipeline: str, outcome: str, seconds: float,
                    stage_seconds: Mapping[str, float], series: int,
                    samples_written: int) -> None:
        self.runs.labels(pipeline, outcome).inc()
        self.run_seconds.labels(pipeline).observe(seconds)
        for stage, spent in stage_seconds.items():
            self.stage_seconds.labels(stage).observe(spent)
        self.series.labels(pipeline).inc(series)
        self.samples.labels(pipeline).inc(samples_written)

    def observe_error(self, component: str, kind: str) -> None:
        self.errors.labels(component, kind).inc()

    def observe_lag(self, pipeline: str, seconds: float) -> None:
        self.lag.labels(pipeline).observe(max(0.0, seconds))

    def observe_slots(self, pipeline: str, caught_up: int, missed: int) -> None:
        if caught_up:
            self.caught_up.labels(pipeline).inc(caught_up)
        if missed:
            self.missed.labels(pipeline).inc(missed)

    # ModelTelemetry
    def observe_model_load(self, model: str, seconds: float) -> None:
        self.models.observe_model_load(model, seconds)

    def observe_model_cache(self, models: int, size_bytes: int) -> None:
        self.models.observe_model_cache(models, size_bytes)

class BeatMetrics:
    """A beat's leadership, reconcile time and the queue it sees (the BeatTelemetry port),
    on ``registry`` (beat is one process)."""

    def __init__(self, registry: Any | None = None) -> None:
        from prometheus_client import Gauge, Histogram

        self.registry = registry if registry is not None else exposition_registry()
        r = self.registry
        self.leader = Gauge("openanomaly_beat_leader", "1 on the beat that leads (sends the "
                            "schedule), 0 on a standby.", registry=r,
                            multiprocess_mode="livemax")
        self.reconcile_seconds = Histogram(
            "openanomaly_beat_reconcile_duration_seconds",
            "Time the leading beat took to reconcile the schedule with the pipelines.",
            buckets=_SECONDS, registry=r)
        self.queue = Gauge("openanomaly_queue_messages", "Tasks waiting in the queue, as "
                           "the beat last saw it.", ["queue"], registry=r,
                           multiprocess_mode="livemax")

    def observe_leadership(self, leader: bool) -> None:
        self.leader.set(1 if leader else 0)

    def observe_reconcile(self, seconds: float) -> None:
        self.reconcile_seconds.observe(seconds)

    def observe_queue(self, queue: str, messages: int) -> None:
        self.queue.labels(queue).set(messages)


class HttpTelemetry:
    """Requests of an HTTP service by method, route template and status (never the raw
    path, whose values are unbounded)."""

    def __init__(self, prefix: str, registry: Any) -> None:
        from prometheus_client import Counter, Histogram

        self.requests = Counter(f"{prefix}requests_total", "Requests by method, route and "
                                "status.", ["method", "route", "status"], registry=registry)
        self.seconds = Histogram(f"{prefix}request_duration_seconds", "Time to answer a "
                                 "request.", ["method", "route"], buckets=_REQUEST,
                                 registry=registry)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.seconds.labels(method, route).observe(seconds)


def http_telemetry(prefix: str) -> tuple[HttpTelemetry, Any]:
    """Request metrics for this process, and the registry its /metrics serves. Under a
    forking server (gunicorn) each process counts into its own files and whichever answers
    a scrape serves the sum; in one process the counters live on the served registry."""
    from prometheus_client import CollectorRegistry

    exposed = exposition_registry()
    own = CollectorRegistry() if multiprocess() else exposed
    return HttpTelemetry(prefix, own), exposed


def exposition(registry: Any) -> tuple[bytes, str]:
    """The registry in the text format, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return  # scrapes every 15 s would drown the service's own log


class HealthServer:
    """/metrics (the registry), /healthz (the process answers) and /readyz (``ready``
    raises nothing) in a daemon thread."""

    def __init__(self, registry: Any, ready: Callable[[], None], host: str,
                 port: int) -> None:
        def app(environ: dict[str, Any], respond: Callable[..., Any]) -> list[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == "/metrics":
                body, content_type = exposition(registry)
                respond("200 OK", [("Content-Type", content_type)])
                return [body]
            if path == "/healthz":
                return _text(respond, "200 OK", "alive\n")
            if path == "/readyz":
                try:
                    ready()
                except Exception as exc:  # not ready: the answer says why
                    return _text(respond, "503 Service Unavailable",
                                 f"{type(exc).__name__}: {exc}\n")
                return _text(respond, "200 OK", "ready\n")
            return _text(respond, "404 Not Found", "try /metrics, /healthz or /readyz\n")

        self.server: WSGIServer = make_server(host, port, app, handler_class=_Quiet)
        self.port = self.server.server_port
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="metrics")

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("metrics endpoint listening", extra={
            "url": f"http://{self.server.server_name}:{self.port}/metrics"})
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _text(respond: Callable[..., Any], status: str, body: str) -> list[bytes]:
    respond(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [body.encode()]
