"""The model server's own metrics (prometheus_client), beside its engine's model load times
and cache contents."""

from __future__ import annotations

from collections.abc import Iterable

from openanomaly.bootstrap import ModelTelemetryMetrics, exposition, exposition_registry

_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_PREFIX = "openanomaly_model_server_"


class Metrics:
    """Requests, batches and engine time of one server process. Model names come from the
    configuration: a request for another name counts as ``_unknown``."""

    def __init__(self, models: Iterable[str]) -> None:
        from prometheus_client import Counter, Histogram

        self.registry = exposition_registry()
        r = self.registry
        self.models = ModelTelemetryMetrics(r)
        """Given to the engine: how long models take to load, what its cache holds."""
        self.requests = Counter(f"{_PREFIX}requests_total",
                                "Forecast requests by model and HTTP status.",
                                ["model", "status"], registry=r)
        self.batches = Counter(f"{_PREFIX}batches_total",
                               "Engine calls, each serving one or more requests.", ["model"],
                               registry=r)
        self.batched_requests = Counter(
            f"{_PREFIX}batched_requests_total",
            "Requests forecast through a batch (over batches_total: requests per call).",
            ["model"], registry=r)
        self.series = Counter(f"{_PREFIX}series_total", "Series forecast.", ["model"],
                              registry=r)
        self.seconds = Histogram(f"{_PREFIX}forecast_duration_seconds",
                                 "Seconds per engine call (one batch).", ["model"],
                                 buckets=_SECONDS_BUCKETS, registry=r)
        for name in models:  # every configured model shows, at 0, before its first request
            for family in (self.batches, self.batched_requests, self.series, self.seconds):
                family.labels(name)

    def observe_request(self, model: str, status: int) -> None:
        self.requests.labels(model, str(status)).inc()

    def observe_batch(self, model: str, requests: int, series: int, seconds: float) -> None:
        self.batches.labels(model).inc()
        self.batched_requests.labels(model).inc(requests)
        self.series.labels(model).inc(series)
        self.seconds.labels(model).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type."""
        return exposition(self.registry)
