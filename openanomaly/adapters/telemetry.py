"""Self-monitoring with prometheus_client: the Telemetry port's metrics, and a small HTTP
endpoint (/metrics, /healthz, /readyz) for processes without a web server of their own.

Names follow Prometheus' conventions: units in the name, ``_total`` counters, and labels
with bounded values only (pipeline names come from the store; series labels never become
metric labels).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app

log = logging.getLogger(__name__)

# Seconds, from a cheap query to a long batch of model calls.
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
            300.0)
_LAG = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class PrometheusTelemetry:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
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


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return  # scrapes every 15 s would drown the service's own log


class HealthServer:
    """/metrics (the registry), /healthz (the process answers) and /readyz (``ready``
    raises nothing) in a daemon thread."""

    def __init__(self, registry: CollectorRegistry, ready: Callable[[], None],
                 host: str, port: int) -> None:
        metrics = make_wsgi_app(registry)

        def app(environ: dict[str, Any], respond: Callable[..., Any]) -> list[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == "/metrics":
                return list(metrics(environ, respond))
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
