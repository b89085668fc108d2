"""The model server's own metrics, in the Prometheus text exposition format."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_METRIC = "openanomaly_model_server_"


@dataclass
class _Histogram:
    cumulative: list[int] = field(default_factory=lambda: [0] * len(_SECONDS_BUCKETS))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        for index, bound in enumerate(_SECONDS_BUCKETS):
            if value <= bound:
                self.cumulative[index] += 1
        self.total += value
        self.count += 1


class Metrics:
    """Counters of the server; only the event loop thread updates them, so no lock."""

    def __init__(self, models: Iterable[str]) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()
        self.batches: Counter[str] = Counter({name: 0 for name in models})
        self.batched_requests: Counter[str] = Counter({name: 0 for name in self.batches})
        self.series: Counter[str] = Counter({name: 0 for name in self.batches})
        self.seconds: dict[str, _Histogram] = {name: _Histogram() for name in self.batches}

    def observe_batch(self, model: str, requests: int, series: int, seconds: float) -> None:
        self.batches[model] += 1
        self.batched_requests[model] += requests
        self.series[model] += series
        self.seconds.setdefault(model, _Histogram()).observe(seconds)

    def render(self) -> str:
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            lines.extend((f"# HELP {_METRIC}{name} {help_text}", f"# TYPE {_METRIC}{name} {kind}"))

        family("requests_total", "counter", "Forecast requests by model and HTTP status.")
        for (model, status), value in sorted(self.requests.items()):
            lines.append(f"{_METRIC}requests_total{_labels(model=model, status=status)} {value}")
        for name, counter, help_text in (
            ("batches_total", self.batches, "Engine calls, each serving one or more requests."),
            ("batched_requests_total", self.batched_requests,
             "Requests forecast through a batch (over batches_total: requests per call)."),
            ("series_total", self.series, "Series forecast."),
        ):
            family(name, "counter", help_text)
            for model, value in sorted(counter.items()):
                lines.append(f"{_METRIC}{name}{_labels(model=model)} {value}")
        family("forecast_seconds", "histogram", "Seconds per engine call (one batch).")
        for model, histogram in sorted(self.seconds.items()):
            for bound, value in zip(_SECONDS_BUCKETS, histogram.cumulative, strict=True):
                labels = _labels(model=model, le=f"{bound:g}")
                lines.append(f"{_METRIC}forecast_seconds_bucket{labels} {value}")
            labels = _labels(model=model, le="+Inf")
            lines.append(f"{_METRIC}forecast_seconds_bucket{labels} {histogram.count}")
            lines.append(f"{_METRIC}forecast_seconds_sum{_labels(model=model)} {histogram.total!r}")
            lines.append(f"{_METRIC}forecast_seconds_count{_labels(model=model)} {histogram.count}")
        return "\n".join(lines) + "\n"


def _labels(**labels: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{key}="{escape(value)}"' for key, value in labels.items()) + "}"
