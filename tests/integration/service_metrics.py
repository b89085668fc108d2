"""Representative data for the dashboards and alert rules: a pipeline's real outputs and
the self-monitoring metrics of every OpenAnomaly process, written into a Prometheus.

Every metric comes from the class its process exports it with (adapters.telemetry and
the model server's metrics), so renaming one there breaks the dashboard tests.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
from prometheus_client import CollectorRegistry, ProcessCollector

from openanomaly.adapters.telemetry import BeatMetrics, HttpTelemetry, PrometheusTelemetry
from openanomaly.domain.series import Series
from openanomaly.entrypoints.model_server.metrics import Metrics
from openanomaly.services.runs import RunResult

SCRAPE_MS = 15_000
JOBS = ("openanomaly-api", "openanomaly-beat", "openanomaly-worker",
        "openanomaly-model-server")


class OtherProcesses:
    """The beat's, the model server's and the API's metrics, from their own classes."""

    def __init__(self) -> None:
        self.beat = BeatMetrics(CollectorRegistry())
        self.server = Metrics(["fracast"])
        self.api_registry = CollectorRegistry()
        self.api = HttpTelemetry("openanomaly_api_", self.api_registry)

    def tick(self, rng: np.random.Generator) -> None:
        self.beat.observe_leadership(True)
        self.beat.observe_reconcile(rng.uniform(0.01, 0.2))
        self.beat.observe_queue("celery", int(rng.integers(0, 5)))
        self.server.models.observe_model_load("fracast", rng.uniform(0.1, 0.5))
        self.server.models.observe_model_cache(1, 350_000)
        for _ in range(3):
            self.server.observe_request("fracast", 200)
        self.server.observe_batch("fracast", 3, 12, rng.uniform(0.01, 0.1))
        self.api.observe("GET", "api/pipelines", 200, rng.uniform(0.005, 0.05))


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
    telemetry = PrometheusTelemetry(CollectorRegistry())
    others = OtherProcesses()
    process = CollectorRegistry()
    ProcessCollector(registry=process)
    by_job = {"openanomaly-worker": [telemetry.registry],
              "openanomaly-beat": [others.beat.registry],
              "openanomaly-model-server": [others.server.registry],
              "openanomaly-api": [others.api_registry]}
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
        telemetry.observe_model_load("fracast", rng.uniform(0.1, 0.5))
        telemetry.observe_model_cache(1, 350_000)
        others.tick(rng)
        for job, registries in by_job.items():
            instance = f"{job}:9464"
            scrape = {_key("up", {"job": job, "instance": instance}): 1.0}
            # A registry that serves its process's CPU and memory already repeats these.
            for registry in [*registries, process]:
                for name, labels, value in _samples(registry):
                    scrape[_key(name, {**labels, "job": job, "instance": instance})] = value
            for key, value in scrape.items():
                points[key].append((timestamp, value))
    return [Series.of(dict(key), [t for t, _ in samples], [v for _, v in samples])
            for key, samples in points.items()]


def _key(name: str, labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"__name__": name, **labels}.items()))
