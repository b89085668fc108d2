"""Representative data for the dashboards and alert rules: a pipeline's real outputs and
the self-monitoring metrics of every OpenAnomaly process, written into a Prometheus.

The run metrics come from the service's own registry (adapters.telemetry), so renaming
one there breaks the dashboard tests. The scheduling, model cache, model server and API
metrics are declared here under the names of the operations issue's self-monitoring list,
until those processes export them through a registry the tests can import.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from openanomaly.adapters.telemetry import PrometheusTelemetry
from openanomaly.domain.series import Series
from openanomaly.services.runs import RunResult

SCRAPE_MS = 15_000
JOBS = ("openanomaly-api", "openanomaly-beat", "openanomaly-worker",
        "openanomaly-model-server")


class PlannedMetrics:
    """The other processes' metrics, with the labels the issue gives them."""

    def __init__(self) -> None:
        self.beat = CollectorRegistry()
        self.leader = Gauge("openanomaly_beat_leader", "1 on the leading beat.",
                            registry=self.beat)
        self.reconcile = Histogram("openanomaly_beat_reconcile_duration_seconds",
                                   "Reconcile time.", registry=self.beat)
        self.queue = Gauge("openanomaly_queue_messages", "Waiting messages.", ["queue"],
                           registry=self.beat)
        self.cache = CollectorRegistry()
        self.load = Histogram("openanomaly_model_load_duration_seconds", "Model load time.",
                              ["model"], registry=self.cache)
        self.cache_bytes = Gauge("openanomaly_model_cache_bytes", "Cached bytes.",
                                 registry=self.cache)
        self.cache_models = Gauge("openanomaly_model_cache_models", "Cached models.",
                                  registry=self.cache)
        self.server = CollectorRegistry()
        prefix = "openanomaly_model_server_"
        self.requests = Counter(f"{prefix}requests_total", "Requests.", ["model", "status"],
                                registry=self.server)
        self.batches = Counter(f"{prefix}batches_total", "Batches.", ["model"],
                               registry=self.server)
        self.batched = Counter(f"{prefix}batched_requests_total", "Batched requests.",
                               ["model"], registry=self.server)
        self.served = Counter(f"{prefix}series_total", "Series.", ["model"],
                              registry=self.server)
        self.forecast = Histogram(f"{prefix}forecast_duration_seconds", "Batch time.",
                                  ["model"], registry=self.server)
        self.api = CollectorRegistry()
        self.api_requests = Counter("openanomaly_api_requests_total", "Requests.",
                                    ["method", "route", "status"], registry=self.api)
        self.api_seconds = Histogram("openanomaly_api_request_duration_seconds", "Latency.",
                                     ["method", "route"], registry=self.api)

    def tick(self, rng: np.random.Generator) -> None:
        self.leader.set(1)
        self.reconcile.observe(rng.uniform(0.01, 0.2))
        self.queue.labels("celery").set(int(rng.integers(0, 5)))
        self.load.labels("fracast").observe(rng.uniform(0.1, 0.5))
        self.cache_bytes.set(350_000)
        self.cache_models.set(1)
        for _ in range(3):
            self.requests.labels("fracast", "200").inc()
        self.batches.labels("fracast").inc()
        self.batched.labels("fracast").inc(3)
        self.served.labels("fracast").inc(12)
        self.forecast.labels("fracast").observe(rng.uniform(0.01, 0.1))
        self.api_requests.labels("GET", "/api/pipelines", "200").inc(2)
        self.api_seconds.labels("GET", "/api/pipelines").observe(rng.uniform(0.005, 0.05))


def _samples(registry: CollectorRegistry) -> Iterable[tuple[str, dict[str, str], float]]:
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_created"):  # creation times, not data
                continue
            yield sample.name, dict(sample.labels), sample.value


def self_monitoring(run: RunResult, end_ms: int, minutes: int = 30,
                    seed: int = 0) -> list[Series]:
    """``minutes`` of scrapes ending at ``end_ms``: a worker running ``run``'s pipeline
    every scrape (and failing now and then), a leading beat, a model server, an API."""
    rng = np.random.default_rng(seed)
    telemetry = PrometheusTelemetry()
    planned = PlannedMetrics()
    process = CollectorRegistry()
    ProcessCollector(registry=process)
    by_job = {"openanomaly-worker": [telemetry.registry, planned.cache],
              "openanomaly-beat": [planned.beat], "openanomaly-model-server": [planned.server],
              "openanomaly-api": [planned.api]}
    points: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = defaultdict(list)
    ticks = minutes * 60_000 // SCRAPE_MS
    for tick in range(ticks):
        timestamp = end_ms - (ticks - 1 - tick) * SCRAPE_MS
        outcome = "failed" if tick % 10 == 9 else run.status
        telemetry.observe_run(run.pipeline, outcome, run.seconds, run.stage_seconds,
                              run.series, run.samples_written)
        if outcome == "failed":
            telemetry.observe_error("tsdb", "TSDBUnavailable")
        telemetry.observe_lag(run.pipeline, rng.uniform(0.0, 2.0))
        telemetry.observe_slots(run.pipeline, caught_up=tick % 7 == 0, missed=tick % 11 == 0)
        planned.tick(rng)
        for job, registries in by_job.items():
            instance = f"{job}:9464"
            points[_key("up", {"job": job, "instance": instance})].append((timestamp, 1.0))
            for registry in [*registries, process]:
                for name, labels, value in _samples(registry):
                    key = _key(name, {**labels, "job": job, "instance": instance})
                    points[key].append((timestamp, value))
    return [Series.of(dict(key), [t for t, _ in samples], [v for _, v in samples])
            for key, samples in points.items()]


def _key(name: str, labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"__name__": name, **labels}.items()))
