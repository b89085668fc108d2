"""The four ports. Services depend on these protocols only; adapters implement them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from openanomaly.domain.forecast import ForecastRequest, QuantileForecast
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.series import Series


class TSDBClient(Protocol):
    def query_range(self, query: str, start_ms: int, end_ms: int, step_ms: int) -> list[Series]:
        """Evaluate PromQL over [start, end] at ``step``; every label kept, gaps left out."""
        ...

    def write(self, series: Sequence[Series]) -> None:
        """Push samples with remote write. Raises TSDBError subclasses on failure."""
        ...


class ModelEngine(Protocol):
    def forecast(self, model: str, request: ForecastRequest) -> QuantileForecast:
        """Quantile forecasts for every series of the request, in one call."""
        ...


class ConfigStore(Protocol):
    def list_pipelines(self) -> list[PipelineSpec]:
        ...

    def get_pipeline(self, name: str) -> PipelineSpec:
        """Raises UnknownPipeline when no pipeline has that name."""
        ...

    def refresh(self) -> bool:
        """Pick up changes made since the last call; True when the pipelines changed.
        Lets a scheduler react at once instead of at its next periodic sync."""
        ...


RunPipeline = Callable[[PipelineSpec, int], object]
"""What a scheduler calls for each due slot: the pipeline and the slot time in ms."""


class Scheduler(Protocol):
    def run(self, run_pipeline: RunPipeline) -> None:
        """Run every enabled pipeline on its schedule until ``stop`` is called."""
        ...

    def stop(self) -> None:
        ...
